"""Many requests at once (``Chatbot.map``): an event loop of its own and one AsyncOpenAI client.

The loop runs in a helper thread: a notebook's kernel already runs an event loop in its main
thread (``asyncio.run`` would refuse), and the main thread stays free to record answers, show
progress and hear KeyboardInterrupt. One AsyncOpenAI client, made from the ChatClient's own
SDK client (same key, address, Azure settings, headers and query), serves every request of the
run: one connection pool. It is closed with the loop, so nothing outlives the run.

Requests are not streamed (a row's answer is only used whole) and the SDK does not retry them
(``max_retries=0``): the map's runner retries each row itself, so it sees every 429 and can adapt
its concurrency. A failed request is an ``AttemptFailed`` saying whether asking again may help
and how long the server asked to wait; ``ChatClient.map_error(failed.cause)`` words it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar, cast

from .. import errors
from ..chunks import usage_of
from ..endpoint_errors import read_error
from ..messages import clean_text
from ..redaction import redact_url
from ..reply import Usage

if TYPE_CHECKING:
    import openai

    from .chat import Stage

T = TypeVar("T")
RETRY_STATUSES = (408, 409, 429)  # and every 5xx: what the SDK itself would retry
JOIN_TIMEOUT = 2.0  # seconds to wait for the loop's thread when the run ends


@dataclass(frozen=True)
class Completion:
    """One whole answer: its text (or the refusal), how it ended, and its usage."""

    text: str
    finish_reason: str | None
    refusal: str | None
    usage: Usage | None
    model: str | None


class AttemptFailed(Exception):
    """One request failed. ``cause`` is the SDK's exception (or a ChatError); ``retryable`` says
    whether asking again may help; ``throttled`` marks a 429 that asks us to slow down (not an
    exhausted quota), ``retry_after`` the seconds it asked to wait; ``reachable`` is False when no
    connection could be made at all (the endpoint is down or the address is wrong). ``stage`` is
    "before_text" when the answer had begun to arrive (a body cut mid-way, or not JSON)."""

    def __init__(self, cause: BaseException, *, retryable: bool, status: int | None = None,
                 throttled: bool = False, retry_after: float | None = None, reachable: bool = True,
                 stage: Stage = "sending") -> None:
        super().__init__(str(cause))
        self.cause = cause
        self.retryable = retryable
        self.status = status
        self.throttled = throttled
        self.retry_after = retry_after
        self.reachable = reachable
        self.stage = stage


class AsyncChat:
    """An event loop in a helper thread and one AsyncOpenAI client for it; a context manager
    (leaving it closes the client, stops the loop and ends the thread).

    ``sdk`` is the ChatClient's synchronous SDK client (``ChatClient.sdk``): its settings are copied.
    """

    def __init__(self, sdk: openai.OpenAI, *, name: str = "llmchat-map") -> None:
        self._sync_sdk = sdk
        self._name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._sdk: Any = None
        self.base_url = redact_url(str(sdk.base_url).rstrip("/"))

    def __enter__(self) -> AsyncChat:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        """Start the loop's thread and make the client (no connection is opened yet)."""
        if self._loop is not None:
            return
        loop = asyncio.new_event_loop()
        self._sdk = async_sdk_like(self._sync_sdk)
        self._loop = loop
        self._thread = threading.Thread(target=_serve, args=(loop,), name=self._name, daemon=True)
        self._thread.start()

    def submit(self, work: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Run ``work`` on the loop; its result (or exception) arrives in the returned future."""
        if self._loop is None:
            work.close()  # never to run: said so, not left to warn that it was never awaited
            raise RuntimeError("AsyncChat is not started")
        return asyncio.run_coroutine_threadsafe(work, self._loop)

    def call_soon(self, callback: Callable[[], object]) -> None:
        """Call ``callback`` in the loop's thread (from any thread): how a stop reaches the run."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(callback)

    def close(self) -> None:
        """Close the client and its connections, stop the loop, end the thread. Safe twice."""
        loop, thread, sdk = self._loop, self._thread, self._sdk
        self._loop = self._thread = self._sdk = None
        if loop is None:
            return
        if sdk is not None and not loop.is_closed():
            try:
                asyncio.run_coroutine_threadsafe(sdk.close(), loop).result(timeout=JOIN_TIMEOUT)
            except Exception:
                pass  # a connection that will not close cleanly is dropped with the loop
        loop.call_soon_threadsafe(loop.stop)
        if thread is not None:
            thread.join(JOIN_TIMEOUT)
        if not loop.is_running():
            loop.close()

    async def complete(self, model: str, messages: list[dict[str, Any]], params: dict[str, Any]) -> Completion:
        """Send one request and return its whole answer, or raise AttemptFailed."""
        import httpx2
        import openai

        try:
            body = await self._sdk.chat.completions.create(
                model=model, messages=cast("list[Any]", messages), **params)
        except openai.APIStatusError as error:
            raise _status_failure(error) from None
        except openai.APITimeoutError as error:
            raise AttemptFailed(error, retryable=True) from None
        except openai.APIConnectionError as error:  # refused, or a body cut mid-way
            if isinstance(error.__cause__, httpx2.ConnectError):
                raise AttemptFailed(error, retryable=True, reachable=False) from None
            raise AttemptFailed(error, retryable=True, stage="before_text") from None
        except json.JSONDecodeError as error:  # a body that is not JSON: a glitch, worth another try
            raise AttemptFailed(error, retryable=True, stage="before_text") from None
        return self._completion(body)

    def _completion(self, body: Any) -> Completion:
        choices = getattr(body, "choices", None)
        if not isinstance(choices, list):
            kind = "a web page" if isinstance(body, str) and body.lstrip()[:1] == "<" else "something else"
            raise AttemptFailed(errors.BadRequestError(
                f"{self.base_url} answered with {kind}, not a chat completion: base_url= must be the API's "
                "root (often ending in /v1), not a website"), retryable=False)
        usage = usage_of(getattr(body, "usage", None))
        if not choices:
            return Completion("", None, None, usage, getattr(body, "model", None))
        choice = choices[0]
        message = getattr(choice, "message", None)
        text = getattr(message, "content", None)
        refusal = getattr(message, "refusal", None)
        return Completion(clean_text(text) if isinstance(text, str) else "", getattr(choice, "finish_reason", None),
                          refusal if isinstance(refusal, str) and refusal else None, usage,
                          getattr(body, "model", None) or None)


def _status_failure(error: openai.APIStatusError) -> AttemptFailed:
    """What an error status means for the row: the SDK's own retry rules (x-should-retry honoured)."""
    status = error.status_code
    headers = error.response.headers
    said = read_error(status, error.body, headers)
    quota = said.code == "insufficient_quota"
    retryable = (status in RETRY_STATUSES or status >= 500) and not quota
    should = headers.get("x-should-retry")
    if should in ("true", "false"):
        retryable = should == "true"
    return AttemptFailed(error, retryable=retryable, status=status, throttled=status == 429 and not quota,
                         retry_after=said.retry_after)


def async_sdk_like(sdk: openai.OpenAI) -> openai.AsyncOpenAI:
    """An AsyncOpenAI (or AsyncAzureOpenAI) with ``sdk``'s key, address, headers, query and timeout,
    and no retries of its own."""
    import openai

    headers = dict(getattr(sdk, "_custom_headers", None) or {})
    query = dict(getattr(sdk, "_custom_query", None) or {})
    common: dict[str, Any] = {"api_key": sdk.api_key or None, "organization": sdk.organization,
                              "project": sdk.project, "timeout": sdk.timeout, "max_retries": 0,
                              "default_headers": headers or None}
    if isinstance(sdk, openai.AzureOpenAI):
        version = getattr(sdk, "_api_version", None) or query.get("api-version")
        query.pop("api-version", None)  # the Azure client adds it itself
        return openai.AsyncAzureOpenAI(
            base_url=str(sdk.base_url), api_version=version, default_query=query or None,
            azure_ad_token=getattr(sdk, "_azure_ad_token", None),
            azure_ad_token_provider=getattr(sdk, "_azure_ad_token_provider", None), **common)
    return openai.AsyncOpenAI(base_url=str(sdk.base_url), default_query=query or None, **common)


def _serve(loop: asyncio.AbstractEventLoop) -> None:
    asyncio.set_event_loop(loop)
    try:
        loop.run_forever()
    finally:
        _cancel_leftovers(loop)


def _cancel_leftovers(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel what is still pending when the loop stops, so no task is left half-done unheard."""
    tasks = [task for task in asyncio.all_tasks(loop) if not task.done()]
    for task in tasks:
        task.cancel()
    if tasks:
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
