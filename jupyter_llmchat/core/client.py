"""The only module that talks HTTP: streams Chat Completions through the openai SDK.

One retry policy, the SDK's: it re-sends on 408/409/429/5xx and on connection failures, with its
own backoff, honouring retry-after(-ms) within its own limit. The SDK returns as soon as the
headers arrive, so a stream that drops before its first text delta is the one failure it cannot
retry: that one is re-sent here, from the same budget, at once (the server had accepted the
request, so nothing asked us to wait). A question never costs more than ``max_retries + 1``
requests, whatever mix of failures it meets.

Failures of the endpoint or the connection become one-line ChatErrors that name the cause and
the fix; anything else raised while streaming is a bug and propagates unchanged, never retried.
The API key lives only inside the SDK client: never in a repr or a message.
"""

from __future__ import annotations

import email.utils
import json
import os
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, cast

from . import errors
from .reply import Usage

if TYPE_CHECKING:
    from typing import TypeAlias

    import openai

    # What Chatbot(client=...) takes: a ChatClient, or a ready SDK client (OpenAI, AzureOpenAI) to wrap.
    AnyClient: TypeAlias = "ChatClient | openai.OpenAI"

DEFAULT_MAX_RETRIES = 3  # re-sends per question for clients built here (a given client keeps its own)
DEFAULT_TIMEOUT = 600.0  # seconds, for clients built here
# OpenAI's codes for an image it could not use. A model without vision answers 400 with no code and
# param "messages.[i].content.[j].type" ("Invalid content type. image_url is only supported by ...").
IMAGE_ERROR_CODES = ("invalid_image", "invalid_image_format", "invalid_image_url", "image_parse_error")
_CONTENT_TYPE_PARAM = re.compile(r"^messages\.?\[\d+\]\.content\.?\[\d+\]\.type$")
MISSING_KEY_FIX = ("set OPENAI_API_KEY, pass api_key=, or point OPENAI_BASE_URL (base_url=) "
                   "at a local OpenAI-compatible server")
# Where a failure struck: while sending (the SDK has retried what it could), after the stream
# opened but before any text, or after the answer had started (the partial text is kept).
Stage = Literal["sending", "before_text", "after_text"]


@dataclass
class StreamResult:
    """What the stream said besides its text: filled in as chunks arrive."""

    model: str | None = None
    finish_reason: str | None = None
    usage: Usage | None = None
    logprobs: list[dict[str, Any]] | None = None
    retries: int = 0  # requests re-sent, by the SDK or by the drop-before-text loop


def chat_client(client: AnyClient | None = None, **settings: Any) -> ChatClient:
    """The ChatClient for ``Chatbot(client=..., **settings)``: ``client`` itself if it is one,
    else one wrapping the given SDK client, or built from ``settings`` when none is given."""
    if isinstance(client, ChatClient):
        _refuse_settings_beside(settings)
        return client
    return ChatClient(client=client, **settings)


def _refuse_settings_beside(settings: dict[str, Any]) -> None:
    """A ready client owns its key, address, retries and timeout: silently ignoring ours would
    leave the caller believing they apply."""
    given = [f"{name}=" for name, value in settings.items() if value is not None]
    if given:
        them = "it" if len(given) == 1 else "them"
        raise errors.ConfigurationError(
            f"{', '.join(given)} cannot apply to a ready client=: set {them} on the client itself, e.g. "
            "openai.OpenAI(base_url=..., max_retries=2), or leave client= out")


def import_sdk() -> None:
    """Import the openai SDK now, so the first request does not wait for it (the slow part of warm_up)."""
    import openai  # noqa: F401 - the import is the work


class ChatClient:
    """An OpenAI-compatible endpoint: OpenAI, Azure OpenAI, or any local server.

    ``api_key`` / ``base_url`` default to OPENAI_API_KEY / OPENAI_BASE_URL as the SDK reads them.
    A base URL without a key gets a placeholder key (local servers ignore it). Azure: give
    ``azure_endpoint`` (or AZURE_OPENAI_ENDPOINT), ``api_version`` and ``azure_deployment``.

    ``max_retries`` (default 3) is how many times one question may be re-sent, whatever failed.
    A ready SDK client given as ``client=`` keeps its own: its ``max_retries`` is the budget
    (``openai.OpenAI(max_retries=N)``, or ``sdk.with_options(max_retries=N)`` for a copy), and
    giving ``max_retries=`` (or a key, URL or timeout) beside it is an error.
    """

    def __init__(self, *, api_key: str | None = None, base_url: str | None = None,
                 client: openai.OpenAI | None = None, azure_endpoint: str | None = None,
                 api_version: str | None = None, azure_deployment: str | None = None,
                 max_retries: int | None = None, timeout: float | None = None) -> None:
        if client is not None:
            _refuse_settings_beside({
                "api_key": api_key, "base_url": base_url, "azure_endpoint": azure_endpoint,
                "api_version": api_version, "azure_deployment": azure_deployment,
                "max_retries": max_retries, "timeout": timeout})
        if max_retries is not None and (isinstance(max_retries, bool) or not isinstance(max_retries, int)
                                        or max_retries < 0):
            raise errors.ConfigurationError(f"max_retries must be a whole number >= 0, got {max_retries!r}")
        self._api_key = api_key
        self._base_url = base_url
        self._azure = {"azure_endpoint": azure_endpoint, "api_version": api_version,
                       "azure_deployment": azure_deployment}
        self._sdk = client
        self._client_given = client is not None
        self._lock = threading.Lock()
        self._max_retries = DEFAULT_MAX_RETRIES if max_retries is None else max_retries
        self.timeout = DEFAULT_TIMEOUT if timeout is None else timeout

    # -- configuration -------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        if self._sdk is not None:
            return str(self._sdk.base_url).rstrip("/")
        if self._is_azure:
            return self._azure["azure_endpoint"] or os.environ.get("AZURE_OPENAI_ENDPOINT", "")
        return self._base_url or os.environ.get("OPENAI_BASE_URL") or "https://api.openai.com/v1"

    @property
    def _is_azure(self) -> bool:
        return any(self._azure.values())

    @property
    def max_retries(self) -> int:
        """How many times one question may be re-sent: the SDK client's own setting."""
        return self._sdk.max_retries if self._sdk is not None else self._max_retries

    @property
    def key_source(self) -> str:
        """Where the key comes from, for `%chat config` (never the key itself)."""
        if self._client_given:
            return "client="
        if self._api_key:
            return "api_key="
        env = "AZURE_OPENAI_API_KEY" if self._is_azure else "OPENAI_API_KEY"
        if os.environ.get(env):
            return env
        if self._base_url or os.environ.get("OPENAI_BASE_URL"):
            return "none (local server)"
        return "missing"

    def configured(self) -> bool:
        """True when there is something to talk to (a key, a base URL, or a ready client)."""
        return self.key_source != "missing"

    @property
    def sdk(self) -> openai.OpenAI:
        """The SDK client, built once on first use (one connection pool for every request)."""
        with self._lock:
            if self._sdk is None:
                self._sdk = self._build_sdk()
            return self._sdk

    def _build_sdk(self) -> openai.OpenAI:
        import openai

        if self._is_azure:
            key = self._api_key or os.environ.get("AZURE_OPENAI_API_KEY")
            if not key:
                raise errors.MissingAPIKeyError(
                    "no Azure OpenAI key: set AZURE_OPENAI_API_KEY or pass api_key=")
            endpoint = self._azure["azure_endpoint"]
            version, deployment = self._azure["api_version"] or None, self._azure["azure_deployment"] or None
            if not endpoint:  # the SDK reads AZURE_OPENAI_ENDPOINT
                return openai.AzureOpenAI(api_key=key, api_version=version, azure_deployment=deployment,
                                          max_retries=self._max_retries, timeout=self.timeout)
            return openai.AzureOpenAI(api_key=key, azure_endpoint=endpoint, api_version=version,
                                      azure_deployment=deployment, max_retries=self._max_retries,
                                      timeout=self.timeout)
        base_url = self._base_url or os.environ.get("OPENAI_BASE_URL") or None
        key = self._api_key or os.environ.get("OPENAI_API_KEY")
        if not key and not base_url:
            raise errors.MissingAPIKeyError(f"no API key and no base URL: {MISSING_KEY_FIX}")
        return openai.OpenAI(api_key=key or "not-needed", base_url=base_url, max_retries=self._max_retries,
                             timeout=self.timeout)

    def scrub(self, text: str) -> str:
        """``text`` with the API key (if it appears) replaced by ***."""
        key = self._api_key or os.environ.get("OPENAI_API_KEY") or os.environ.get("AZURE_OPENAI_API_KEY")
        if self._sdk is not None and isinstance(getattr(self._sdk, "api_key", None), str):
            key = self._sdk.api_key
        return text.replace(key, "***") if key and len(key) >= 4 else text

    def __repr__(self) -> str:
        return f"ChatClient(base_url={self.base_url!r}, key_source={self.key_source!r})"

    # -- requests ------------------------------------------------------------------------------
    def list_models(self) -> list[str]:
        """Model ids the endpoint serves (GET /models)."""
        import openai

        try:
            return sorted(model.id for model in self.sdk.models.list())
        except openai.APIError as error:
            raise self.map_error(error, model=None, retries=_retries_taken(error)) from None

    def stream(self, model: str, messages: list[dict[str, Any]], params: dict[str, Any]) -> ChatStream:
        """Start streaming a completion; iterate the result for text deltas."""
        return ChatStream(self, model, messages, params)

    def _open(self, model: str, messages: list[dict[str, Any]], params: dict[str, Any], *,
              max_retries: int) -> Any:
        """Send the request; the SDK retries it up to ``max_retries`` times and returns at the headers."""
        sdk = self.sdk
        if max_retries != sdk.max_retries:
            sdk = sdk.with_options(max_retries=max_retries)  # a copy sharing the connection pool
        # Our message dicts are the API's message params; the SDK spells those as TypedDicts.
        return sdk.chat.completions.create(
            model=model, messages=cast("list[Any]", messages), stream=True,
            stream_options={"include_usage": True}, **params)

    def map_error(self, error: Exception, *, model: str | None, retries: int = 0,
                  stage: Stage = "sending") -> errors.ChatError:
        """One ChatError, with a one-line message naming cause and fix, for an SDK or stream failure."""
        import openai

        tried = f" after {retries} retr{'y' if retries == 1 else 'ies'}" if retries else ""
        where = self.base_url
        if isinstance(error, errors.ChatError):
            return error
        if stage == "after_text":
            return errors.StreamError(f"the stream from {where} broke after the answer started "
                                      f"({self.scrub(_cause(error))}); the partial answer is kept, marked")
        if isinstance(error, openai.APIStatusError):
            return self._map_status(error, model, tried)
        if isinstance(error, openai.APIConnectionError) and stage == "before_text":
            return errors.StreamError(f"the stream from {where} dropped before any text{tried} "
                                      f"({self.scrub(_cause(error))}); ask again, or check the server")
        if isinstance(error, openai.APITimeoutError):
            return errors.EndpointConnectionError(
                f"timed out{tried} waiting for {where}: check that the server is up, or raise timeout=")
        if isinstance(error, openai.APIConnectionError):
            return errors.EndpointConnectionError(
                f"could not reach {where}{tried} ({self.scrub(_cause(error))}): check OPENAI_BASE_URL / "
                "base_url= and that the server is running")
        if isinstance(error, json.JSONDecodeError):
            return errors.StreamError(f"the stream from {where} sent malformed data before any text "
                                      f"({_cause(error)}): check that base_url= is an OpenAI-compatible "
                                      "endpoint")
        if isinstance(error, openai.APIError):  # an error event in the stream
            code = _error_code(error)
            return errors.StreamError(f"the stream from {where} reported an error before any text "
                                      f"({self.scrub(_cause(error))}); ask again later", code=code)
        return errors.StreamError(f"the stream from {where} failed: {self.scrub(_cause(error))}")

    def _map_status(self, error: openai.APIStatusError, model: str | None, tried: str) -> errors.ChatError:
        where = self.base_url
        status, code = error.status_code, _error_code(error)
        detail = self.scrub(errors.one_line(_error_message(error)))
        if status in (401, 403):
            return errors.AuthenticationError(
                f"authentication failed ({status}) at {where}: the API key was rejected or lacks "
                f"access; {MISSING_KEY_FIX}", status=status, code=code)
        if status == 404 or code == "model_not_found":
            return errors.ModelNotFoundError(
                f"model {model!r} is not available at {where} ({status}): check the name "
                "(Chatbot.client.list_models() lists what it serves) or the Azure deployment",
                status=status, code=code)
        if status == 429:
            if code == "insufficient_quota":
                return errors.RateLimitError(
                    f"quota exhausted (429 insufficient_quota) at {where}: check the account's "
                    "plan and billing", status=status, code=code)
            after = _asked_wait(error.response.headers)
            wait = f"; the server asks to wait {round(after, 2):g} s" if after else ""
            return errors.RateLimitError(
                f"rate limited (429){tried} at {where}{wait}: wait and ask again, or lower the "
                "request rate", status=status, code=code)
        if status >= 500:
            return errors.ServerError(
                f"server error ({status}){tried} at {where}: {detail or 'no details'}; try again "
                "later", status=status, code=code)
        if code == "context_length_exceeded":
            return errors.ContextLengthError(
                f"the endpoint says the prompt exceeds the model's context window ({detail}); set "
                "context_window= to the model's real window so trimming uses it",
                status=status, code=code)
        image_problem = _image_rejection(error, status, code, detail, model, where)
        if image_problem:
            return errors.BadRequestError(image_problem, status=status, code=code)
        return errors.BadRequestError(f"request rejected ({status}{', ' + code if code else ''}): "
                                      f"{detail}", status=status, code=code)


class ChatStream:
    """Iterates text deltas of one completion; ``close()`` (any thread) ends it at once.

    Failures of the endpoint or the connection are raised as ChatErrors; anything else (a bug)
    propagates as it is. After ``close()`` the iteration just ends: ``stopped`` tells.
    """

    def __init__(self, client: ChatClient, model: str, messages: list[dict[str, Any]],
                 params: dict[str, Any]) -> None:
        self.client = client
        self.model = model
        self.messages = messages
        self.params = params
        self.result = StreamResult()
        self._sdk_stream: Any = None
        self._closed = False
        self.got_text = False

    @property
    def stopped(self) -> bool:
        """True when ``close()`` ended the answer before the endpoint did."""
        return self._closed and self.result.finish_reason is None

    def close(self) -> None:
        """Close the HTTP response now; safe to call from another thread or twice. (While the SDK
        waits to retry, it takes effect when that wait ends: the SDK's sleep cannot be cut short.)"""
        self._closed = True
        self._release()

    def _release(self) -> None:
        stream = self._sdk_stream
        if stream is not None:
            try:
                stream.close()
            except Exception:
                pass  # closing a response another thread is reading may fail; it is closed either way

    def __iter__(self) -> Iterator[str]:
        try:
            yield from self._deltas()
        finally:
            self._release()

    def _deltas(self) -> Iterator[str]:
        import openai

        try:
            first, chunks = self._open_until_text()
            if first is None:
                return
            self.got_text = True
            yield first
            absorb = self._absorb
            for chunk in chunks:
                text = absorb(chunk)
                if text:
                    yield text
        except Exception as error:
            if self._closed:
                return  # close() cut the connection: what the cut raised is not a failure
            if isinstance(error, (openai.APIError, json.JSONDecodeError)):
                stage: Stage = "after_text" if self.got_text else "before_text"
                raise self.client.map_error(error, model=self.model, retries=self.result.retries,
                                            stage=stage) from None
            raise

    def _open_until_text(self) -> tuple[str | None, Iterator[Any]]:
        """Send the request until a first text delta is in hand (None: the stream had no text).

        The SDK retries failed requests itself; only a stream that drops before any text is re-sent
        here, from what is left of the same budget.
        """
        import openai

        budget = self.client.max_retries
        while not self._closed:
            try:
                self._sdk_stream = self.client._open(self.model, self.messages, self.params,
                                                     max_retries=budget - self.result.retries)
            except openai.APIError as error:  # the SDK gave up, or the failure was not one to retry
                self.result.retries += _retries_taken(error)
                raise self.client.map_error(error, model=self.model, retries=self.result.retries) from None
            self.result.retries += _retries_taken(self._sdk_stream)
            if self._closed:  # stopped while the request was being sent
                break
            chunks = iter(self._sdk_stream)
            try:
                for chunk in chunks:
                    text = self._absorb(chunk)
                    if text:
                        return text, chunks
                return None, chunks
            except openai.APIConnectionError:  # dropped (or timed out) before any text
                if self._closed or self.result.retries >= budget:
                    raise
                self._release()
                self.result = StreamResult(retries=self.result.retries + 1)  # nothing of the lost one
        return None, iter(())

    def _absorb(self, chunk: Any) -> str | None:
        """Record a chunk's metadata and return its text delta, if any."""
        if chunk.usage is not None:
            usage = chunk.usage
            details = getattr(usage, "prompt_tokens_details", None)
            self.result.usage = Usage(usage.prompt_tokens or 0, usage.completion_tokens or 0,
                                      (getattr(details, "cached_tokens", None) or 0) if details else 0)
        if chunk.model:
            self.result.model = chunk.model
        if not chunk.choices:
            return None
        choice = chunk.choices[0]
        if choice.finish_reason:
            self.result.finish_reason = choice.finish_reason
        if choice.logprobs is not None and choice.logprobs.content:
            if self.result.logprobs is None:
                self.result.logprobs = []
            self.result.logprobs.extend(_logprob_dict(item) for item in choice.logprobs.content)
        return choice.delta.content if choice.delta is not None else None


def _logprob_dict(item: Any) -> dict[str, Any]:
    return {"token": item.token, "logprob": item.logprob,
            "top_logprobs": [{"token": top.token, "logprob": top.logprob}
                             for top in (item.top_logprobs or [])]}


def _retries_taken(sent: Any) -> int:
    """How many times the SDK re-sent a request: it numbers each attempt in a header, and both
    its errors (``.request``) and its streams (``.response.request``) carry the last one sent."""
    request = getattr(sent, "request", None) or getattr(getattr(sent, "response", None), "request", None)
    headers = getattr(request, "headers", None) or {}
    try:
        return int(headers.get("x-stainless-retry-count", 0))
    except (TypeError, ValueError):
        return 0


def _cause(error: BaseException) -> str:
    """What went wrong, in words, for a message: the underlying cause, not a class repr."""
    if isinstance(error, json.JSONDecodeError):
        return errors.one_line(f"a chunk that is not JSON: {error.msg} at character {error.pos}")
    text = str(error.__cause__ or error) or type(error).__name__
    return errors.one_line(text)


def _asked_wait(headers: Any) -> float | None:
    """Seconds a 429 asks to wait (retry-after-ms, or retry-after as seconds or a date), for the
    message only: the SDK decides whether and how long to wait."""
    try:
        if headers.get("retry-after-ms"):
            return float(headers["retry-after-ms"]) / 1000
        value = headers.get("retry-after")
        if value is None:
            return None
        try:
            return max(float(value), 0.0)
        except ValueError:
            date = email.utils.parsedate_to_datetime(value)
            return max(date.timestamp() - time.time(), 0.0)
    except (TypeError, ValueError):
        return None


def _error_body(error: Any) -> dict[str, Any]:
    body = getattr(error, "body", None)
    if isinstance(body, dict):
        return body.get("error", body) if isinstance(body.get("error", body), dict) else body
    return {}


def _image_rejection(error: Any, status: int, code: str | None, detail: str, model: str | None,
                     where: str) -> str | None:
    """The one-line explanation of a 400 about images (no vision, bad image, unreachable URL), if it is one."""
    if code is None and _CONTENT_TYPE_PARAM.match(str(_error_body(error).get("param") or "")):
        return (f"model {model!r} at {where} does not take images ({status}: {detail}); ask a vision "
                "model (e.g. model=\"gpt-4o-mini\") or leave the images out")
    if code == "invalid_image_url":
        return (f"the endpoint could not fetch or read an image URL ({status} {code}: {detail}); give a "
                "public http(s) URL of a PNG, JPEG, WEBP or GIF, or the file itself")
    if code in IMAGE_ERROR_CODES:
        return (f"the endpoint rejected an image ({status} {code}: {detail}); it takes PNG, JPEG, WEBP or "
                "non-animated GIF up to 20 MB: give the file, bytes or figure and it is converted and scaled")
    return None


def _error_code(error: Any) -> str | None:
    return getattr(error, "code", None) or _error_body(error).get("code")


def _error_message(error: Any) -> str:
    return str(_error_body(error).get("message") or getattr(error, "message", "") or error)
