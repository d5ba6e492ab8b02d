"""Chat Completions over any OpenAI-compatible endpoint: ChatClient and its ChatStream.

One retry policy, the SDK's: it re-sends on 408/409/429/5xx and on connection failures, with its
own backoff, honouring retry-after(-ms) within its own limit. The SDK returns as soon as the
headers arrive, so a stream that drops before its first text delta is the one failure it cannot
retry: that one is re-sent here, from the same budget, at once (the server had accepted the
request, so nothing asked us to wait). A question never costs more than ``max_retries + 1``
requests, whatever mix of failures it meets.

Stop means stop (see ``stopping``): the SDK call (sending, the wait for headers, the SDK's retry
sleeps, reading the stream) runs in a helper thread, and the thread that iterates a ChatStream
only waits for its deltas, so ``close()`` ends the iteration at once. A client built here also
cuts the abandoned request's connection (the server sees the hang-up) and refuses to send
anything more for it: the SDK may still wake from a retry sleep, but its next request is never
sent. A ready ``openai.OpenAI`` given as ``client=`` cannot be instrumented that way: ``close()``
still ends the iteration at once and closes the response, but a request the SDK is waiting on or
about to retry is left to the SDK (it may still reach the server once).

Failures of the endpoint or the connection become one-line ChatErrors that name the cause and
the fix (``endpoint_errors`` reads what any OpenAI-compatible server says); anything else raised
while streaming is a bug and propagates unchanged, never retried. The API key and any secret in
the base URL live only inside the SDK client: never in a repr or a message.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Literal, cast
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from .. import errors
from ..chunks import StreamResult, absorb, absorb_call, usage_of
from ..endpoint_errors import MISSING_KEY_FIX, explain, read_error
from ..messages import SurrogateJoiner
from ..params import check_seconds, check_whole
from ..redaction import hide_in_logs, redact_url, url_secrets
from ..stopping import DeadlineExceeded, Pump, StopToken
from .wire import CURRENT_WIRE, Abandoned, Wire, stoppable_http_client

if TYPE_CHECKING:
    from typing import TypeAlias

    import openai

    # What Chatbot(client=...) takes: a ChatClient, or a ready SDK client (OpenAI, AzureOpenAI) to wrap.
    AnyClient: TypeAlias = "ChatClient | openai.OpenAI"

DEFAULT_MAX_RETRIES = 3  # re-sends per question for clients built here (a given client keeps its own)
DEFAULT_TIMEOUT = 600.0  # seconds per read, for clients built here
DEFAULT_FIRST_BYTE_TIMEOUT = 60.0  # seconds from sending to the response headers, retries included
# Where a failure struck: while sending (the SDK has retried what it could), after the stream
# opened but before any text, or after the answer had started (the partial text is kept).
Stage = Literal["sending", "before_text", "after_text"]


def chat_client(client: AnyClient | None = None, **settings: Any) -> ChatClient:
    """The ChatClient for ``Chatbot(client=..., **settings)``: ``client`` itself if it is one (it
    owns every setting), else one wrapping the given SDK client, or built from ``settings``."""
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

    ``first_byte_timeout`` (default 60 s) is how long a question waits for the response to begin
    (its headers), retries included; ``timeout`` (default 600 s) bounds each read after that.
    """

    def __init__(self, *, api_key: str | None = None, base_url: str | None = None,
                 client: openai.OpenAI | None = None, azure_endpoint: str | None = None,
                 api_version: str | None = None, azure_deployment: str | None = None,
                 max_retries: int | None = None, timeout: float | None = None,
                 first_byte_timeout: float | None = None) -> None:
        if client is not None:
            _refuse_settings_beside({
                "api_key": api_key, "base_url": base_url, "azure_endpoint": azure_endpoint,
                "api_version": api_version, "azure_deployment": azure_deployment,
                "max_retries": max_retries, "timeout": timeout})
        check_whole("max_retries", max_retries, 0)
        check_seconds("timeout", timeout)
        check_seconds("first_byte_timeout", first_byte_timeout)
        self._api_key = api_key
        self._base_url = base_url
        self._azure = {"azure_endpoint": azure_endpoint, "api_version": api_version,
                       "azure_deployment": azure_deployment}
        self._sdk = client
        self._client_given = client is not None
        self._lock = threading.Lock()
        self._max_retries = DEFAULT_MAX_RETRIES if max_retries is None else max_retries
        self.timeout = DEFAULT_TIMEOUT if timeout is None else timeout
        self.first_byte_timeout = DEFAULT_FIRST_BYTE_TIMEOUT if first_byte_timeout is None else first_byte_timeout
        if client is not None:
            hide_in_logs(self._secrets())

    # -- configuration -------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        """Where requests go, as it may be shown (secrets in the URL replaced by ***)."""
        return redact_url(self._raw_base_url)

    @property
    def _raw_base_url(self) -> str:
        if self._sdk is not None:
            url = str(self._sdk.base_url).rstrip("/")
            query = getattr(self._sdk, "_custom_query", None)
            return f"{url}?{urlencode(query)}" if query and not self._is_azure else url
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
            hide_in_logs(self._secrets())
            endpoint = self._azure["azure_endpoint"]
            version, deployment = self._azure["api_version"] or None, self._azure["azure_deployment"] or None
            if not endpoint:  # the SDK reads AZURE_OPENAI_ENDPOINT
                return openai.AzureOpenAI(api_key=key, api_version=version, azure_deployment=deployment,
                                          max_retries=self._max_retries, timeout=self.timeout,
                                          http_client=stoppable_http_client())
            return openai.AzureOpenAI(api_key=key, azure_endpoint=endpoint, api_version=version,
                                      azure_deployment=deployment, max_retries=self._max_retries,
                                      timeout=self.timeout, http_client=stoppable_http_client())
        base_url = self._base_url or os.environ.get("OPENAI_BASE_URL") or None
        key = self._api_key or os.environ.get("OPENAI_API_KEY")
        if not key and not base_url:
            raise errors.MissingAPIKeyError(f"no API key and no base URL: {MISSING_KEY_FIX}")
        hide_in_logs(self._secrets())
        # A query in the base URL (a gateway's ?api-key=...) goes with every request: the SDK would
        # glue the path after it, so it is handed over as the default query instead.
        parts = urlsplit(base_url or "")
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        if query:
            base_url = urlunsplit(parts._replace(query=""))
        return openai.OpenAI(api_key=key or "not-needed", base_url=base_url, max_retries=self._max_retries,
                             timeout=self.timeout, http_client=stoppable_http_client(), default_query=query or None)

    def _secrets(self) -> list[str]:
        key = self._api_key or os.environ.get("OPENAI_API_KEY") or os.environ.get("AZURE_OPENAI_API_KEY")
        if self._sdk is not None and isinstance(getattr(self._sdk, "api_key", None), str):
            key = self._sdk.api_key
        found = url_secrets(self._raw_base_url)
        if key:
            found.append(key)
        # Longest first, so a secret that contains another is replaced whole.
        return sorted((secret for secret in found if len(secret) >= 4), key=len, reverse=True)

    def scrub(self, text: str) -> str:
        """``text`` with the API key and any secret of the base URL replaced by ***."""
        for secret in self._secrets():
            text = text.replace(secret, "***")
        return text

    def __repr__(self) -> str:
        return f"ChatClient(base_url={self.base_url!r}, key_source={self.key_source!r})"

    # -- requests ------------------------------------------------------------------------------
    def list_models(self) -> list[str]:
        """Model ids the endpoint serves (GET /models)."""
        import openai

        try:
            return sorted(model.id for model in self.sdk.models.list())
        except openai.APIStatusError as error:
            if error.status_code in (404, 405, 501):
                raise errors.BadRequestError(
                    f"{self.base_url} does not list its models (GET /models answered {error.status_code}): "
                    "ask with the model name its documentation gives", status=error.status_code) from None
            raise self.map_error(error, model=None, retries=_retries_taken(error)) from None
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
                  stage: Stage = "sending", path: str = "/chat/completions") -> errors.ChatError:
        """One ChatError, with a one-line message naming cause and fix, for an SDK or stream failure
        (``path``: the route asked, for the embeddings client's errors)."""
        import openai

        tried = f" after {retries} retr{'y' if retries == 1 else 'ies'}" if retries else ""
        where = self.base_url
        if isinstance(error, errors.ChatError):
            return error
        if stage == "after_text":
            return errors.StreamError(f"the stream from {where} broke after the answer started "
                                      f"({self.scrub(_cause(error))}); the partial answer is kept, marked")
        if isinstance(error, openai.APIStatusError):
            response = read_error(error.status_code, error.body, error.response.headers)
            return explain(replace(response, message=self.scrub(response.message)), where=where, model=model,
                           tried=tried, path=path)
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
            said = read_error(200, error.body, text=_cause(error))
            return errors.StreamError(f"the stream from {where} reported an error before any text "
                                      f"({self.scrub(said.message)}); ask again later", code=said.code)
        return errors.StreamError(f"the stream from {where} failed: {self.scrub(_cause(error))}")


class ChatStream:
    """Iterates text deltas of one completion; ``close()`` (any thread) ends it at once.

    The request is sent and read in a helper thread (``stopping.Pump``), so the iterating thread
    never blocks on the network: ``close()`` ends the iteration at once whatever the request is
    doing, and a response that has not begun within ``first_byte_timeout`` ends it with a
    ChatError. Failures of the endpoint or the connection are raised as ChatErrors; anything else
    (a bug) propagates as it is. After ``close()`` the iteration just ends: ``stopped`` tells.
    """

    def __init__(self, client: ChatClient, model: str, messages: list[dict[str, Any]],
                 params: dict[str, Any]) -> None:
        self.client = client
        self.model = model
        self.messages = messages
        self.params = params
        self.result = StreamResult()
        self._sdk_stream: Any = None
        self._token = StopToken()  # close() stops it: the pump returns and the wire is cut
        self._wire = Wire()
        self._token.on_stop(self._wire.cut)
        self._token.on_stop(self._release)
        self._finished = False
        self.got_text = False

    @property
    def stopped(self) -> bool:
        """True when ``close()`` ended the answer before the endpoint did."""
        return self._token.stopped and not self._finished

    def close(self) -> None:
        """End the answer now, from any thread, safely twice: the iteration returns at once, the
        connection is cut and the request is never sent again (see the module docstring)."""
        self._token.stop()

    def _release(self) -> None:
        stream = self._sdk_stream
        if stream is not None:
            try:
                stream.close()
            except Exception:
                pass  # closing a response another thread is reading may fail; it is closed either way

    def __iter__(self) -> Iterator[str]:
        pump = Pump(self._produce, self._token, name="llmchat-request",
                    first_within=self.client.first_byte_timeout)
        try:
            for delta in pump:
                if delta:
                    yield delta
            self._finished = pump.finished
        except DeadlineExceeded:
            self.close()
            timeout = self.client.first_byte_timeout
            raise errors.EndpointConnectionError(
                f"no response from {self.client.base_url} within {timeout:g} s (first_byte_timeout): the "
                "server may be down, overloaded or still loading the model; check it, or raise "
                "first_byte_timeout=") from None

    # -- in the helper thread --------------------------------------------------------------------
    def _produce(self) -> Iterator[str]:
        """Send, then yield "" once the response has begun and each text delta after it."""
        import openai

        CURRENT_WIRE.set(self._wire)
        joiner = SurrogateJoiner()
        try:
            for delta in self._deltas():
                text = joiner.feed(delta) if delta else delta
                if text or not delta:
                    yield text
            tail = joiner.flush()
            if tail:
                yield tail
            self._check_ending()
        except Abandoned:
            return  # the iterating thread has left
        except Exception as error:
            if self._token.stopped:
                return  # close() cut the connection: what the cut raised is not a failure
            if isinstance(error, (openai.APIError, json.JSONDecodeError)):
                stage: Stage = "after_text" if self.got_text else "before_text"
                raise self.client.map_error(error, model=self.model, retries=self.result.retries,
                                            stage=stage) from None
            raise
        finally:
            self._wire.release()  # the connection goes back to the pool intact
            self._release()

    def _deltas(self) -> Iterator[str]:
        """Open the stream (the SDK retries failed requests itself; only a stream that drops before
        any text is re-sent here, from what is left of the same budget), then yield its deltas."""
        import openai

        budget = self.client.max_retries
        while not self._token.stopped:
            try:
                self._sdk_stream = self.client._open(self.model, self.messages, self.params,
                                                     max_retries=budget - self.result.retries)
            except openai.APIError as error:  # the SDK gave up, or the failure was not one to retry
                self.result.retries += _retries_taken(error)
                raise self.client.map_error(error, model=self.model, retries=self.result.retries) from None
            self.result.retries += _retries_taken(self._sdk_stream)
            yield ""  # the response has begun: the first-byte deadline is met
            body = self._not_a_stream(self._sdk_stream.response)
            if body is not None:
                yield from self._whole_answer(body)
                return
            chunks = iter(self._sdk_stream)
            try:
                for chunk in chunks:
                    text = absorb(chunk, self.result)
                    if text:
                        self.got_text = True
                        yield text
                        break
                else:
                    return
            except openai.APIConnectionError:  # dropped (or timed out) before any text
                if self._token.stopped or self.result.retries >= budget:
                    raise
                self._release()
                self.result = StreamResult(retries=self.result.retries + 1)  # nothing of the lost one
                continue
            for chunk in chunks:
                text = absorb(chunk, self.result)
                if text:
                    yield text
            return

    def _not_a_stream(self, response: Any) -> dict[str, Any] | None:
        """A body that is not an event stream: the JSON of a server that ignored ``stream``
        (returned), or a web page (raised: base_url points at a site, not at the API)."""
        kind = response.headers.get("content-type", "").split(";")[0].strip().lower()
        where = self.client.base_url
        if kind in ("text/html", "application/xhtml+xml"):
            raise errors.StreamError(
                f"{where} answered {response.status_code} with a web page ({kind}), not a stream of "
                "completions: base_url= must be the API's root (often ending in /v1), not a website",
                status=response.status_code)
        if kind != "application/json":
            return None
        raw = response.read()
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        if not isinstance(body, dict) or not isinstance(body.get("choices"), list):
            said = read_error(response.status_code, body, text=raw.decode("utf-8", "replace"))
            raise errors.StreamError(
                f"{where} answered {response.status_code} with JSON that is not a completion "
                f"({self.client.scrub(said.message) or 'empty'}): check that base_url= is an "
                "OpenAI-compatible endpoint", status=response.status_code)
        return body

    def _whole_answer(self, body: dict[str, Any]) -> Iterator[str]:
        """The answer of a server that sent it whole (it ignored ``stream``): one delta."""
        self.result.model = body.get("model") or None
        choices = body.get("choices") or [{}]
        choice = choices[0] if isinstance(choices[0], dict) else {}
        self.result.finish_reason = choice.get("finish_reason")
        self.result.usage = usage_of(body.get("usage"))
        message = choice.get("message") or {}
        text = message.get("content") if isinstance(message, dict) else None
        refusal = message.get("refusal") if isinstance(message, dict) else None
        self.result.refusal = refusal if isinstance(refusal, str) and refusal else None
        calls = message.get("tool_calls") if isinstance(message, dict) else None
        for position, call in enumerate(calls if isinstance(calls, list) else []):
            absorb_call(call, self.result, position)
        if isinstance(text, str) and text:
            self.got_text = True
            yield text

    def _check_ending(self) -> None:
        """A stream that ends without saying how (no finish_reason) did not end as it should."""
        if self.result.finish_reason is not None or self._token.stopped:
            return
        where = self.client.base_url
        if not self.got_text:
            raise errors.StreamError(
                f"the stream from {where} ended without any text or finish_reason: the server failed on the "
                "prompt (llama.cpp does this when the prompt exceeds its context or it cannot read an "
                "image); check the server's log, or set context_window= to its real window")
        raise errors.StreamError(f"the stream from {where} ended before the answer finished (no "
                                 "finish_reason); the partial answer is kept, marked")


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
