"""The only module that talks HTTP: streams Chat Completions through the openai SDK.

Retries (429, 5xx, connection failures) happen here, only before the first text arrives, with
exponential backoff that honours retry-after. SDK exceptions become one-line ChatErrors that name
the cause and the fix. The API key lives only inside the SDK client: never in a repr or a message.
"""

from __future__ import annotations

import email.utils
import os
import random
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import errors
from .reply import Usage

if TYPE_CHECKING:
    import openai

MAX_RETRY_AFTER = 60.0  # seconds; a longer retry-after is reported instead of waited for
BACKOFF_BASE = 0.5
BACKOFF_CAP = 8.0
# OpenAI's codes for an image it could not use. A model without vision answers 400 with no code and
# param "messages.[i].content.[j].type" ("Invalid content type. image_url is only supported by ...").
IMAGE_ERROR_CODES = ("invalid_image", "invalid_image_format", "invalid_image_url", "image_parse_error")
_CONTENT_TYPE_PARAM = re.compile(r"^messages\.?\[\d+\]\.content\.?\[\d+\]\.type$")
MISSING_KEY_FIX = ("set OPENAI_API_KEY, pass api_key=, or point OPENAI_BASE_URL (base_url=) "
                   "at a local OpenAI-compatible server")


@dataclass
class StreamResult:
    """What the stream said besides its text: filled in as chunks arrive."""

    model: str | None = None
    finish_reason: str | None = None
    usage: Usage | None = None
    logprobs: list[dict[str, Any]] | None = None
    retries: int = 0


class ChatClient:
    """An OpenAI-compatible endpoint: OpenAI, Azure OpenAI, or any local server.

    ``api_key`` / ``base_url`` default to OPENAI_API_KEY / OPENAI_BASE_URL as the SDK reads them.
    A base URL without a key gets a placeholder key (local servers ignore it). Azure: give
    ``azure_endpoint`` (or AZURE_OPENAI_ENDPOINT), ``api_version`` and ``azure_deployment``.
    """

    def __init__(self, *, api_key: str | None = None, base_url: str | None = None,
                 client: openai.OpenAI | None = None, azure_endpoint: str | None = None,
                 api_version: str | None = None, azure_deployment: str | None = None,
                 max_retries: int = 3, timeout: float = 600.0,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self._api_key = api_key
        self._base_url = base_url
        self._azure = {"azure_endpoint": azure_endpoint, "api_version": api_version,
                       "azure_deployment": azure_deployment}
        self._sdk = client
        self._client_given = client is not None
        self._lock = threading.Lock()
        self.max_retries = max_retries
        self.timeout = timeout
        self.sleep = sleep

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
            return openai.AzureOpenAI(api_key=key, max_retries=0, timeout=self.timeout,
                                      **{k: v for k, v in self._azure.items() if v})
        base_url = self._base_url or os.environ.get("OPENAI_BASE_URL") or None
        key = self._api_key or os.environ.get("OPENAI_API_KEY")
        if not key and not base_url:
            raise errors.MissingAPIKeyError(f"no API key and no base URL: {MISSING_KEY_FIX}")
        return openai.OpenAI(api_key=key or "not-needed", base_url=base_url, max_retries=0,
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
        try:
            return sorted(model.id for model in self.sdk.models.list())
        except errors.ChatError:
            raise
        except Exception as error:
            raise self.map_error(error, model=None) from None

    def stream(self, model: str, messages: list[dict[str, Any]], params: dict[str, Any]) -> ChatStream:
        """Start streaming a completion; iterate the result for text deltas."""
        return ChatStream(self, model, messages, params)

    def _open(self, model: str, messages: list[dict[str, Any]], params: dict[str, Any]) -> Any:
        return self.sdk.chat.completions.create(
            model=model, messages=messages, stream=True,
            stream_options={"include_usage": True}, **params)

    def retry_delay(self, error: Exception, attempt: int) -> float | None:
        """Seconds to wait before retrying after ``error``, or None if it is not retryable."""
        import openai

        if isinstance(error, (openai.APIConnectionError, _TransportError)):
            return _backoff(attempt)
        if isinstance(error, openai.APIStatusError):
            if error.status_code == 429 and _error_code(error) == "insufficient_quota":
                return None
            if error.status_code == 429 or error.status_code >= 500:
                after = _retry_after(error.response.headers)
                return _backoff(attempt) if after is None else after
        return None

    def map_error(self, error: Exception, *, model: str | None, retries: int = 0,
                  mid_stream: bool = False) -> errors.ChatError:
        """One ChatError, with a one-line message naming cause and fix, for an SDK or stream error.

        ``mid_stream``: text had already arrived, so whatever broke, broke the stream itself.
        """
        import openai

        tried = f" after {retries} retr{'y' if retries == 1 else 'ies'}" if retries else ""
        where = self.base_url
        if isinstance(error, errors.ChatError):
            return error
        if mid_stream:
            cause = errors.one_line(str(error.__cause__ or error) or repr(error))
            return errors.StreamError(f"the stream from {where} broke after the answer started "
                                      f"({self.scrub(cause)}); the partial answer is kept, marked")
        if isinstance(error, openai.APIStatusError):
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
                after = _retry_after(error.response.headers)
                wait = f"; the server asks to wait {after:.0f} s" if after else ""
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
        if isinstance(error, openai.APITimeoutError):
            return errors.EndpointConnectionError(
                f"timed out{tried} waiting for {where}: check that the server is up, or raise timeout=")
        if isinstance(error, openai.APIConnectionError):
            cause = errors.one_line(str(error.__cause__ or error))
            return errors.EndpointConnectionError(
                f"could not reach {where}{tried} ({self.scrub(cause)}): check OPENAI_BASE_URL / "
                "base_url= and that the server is running")
        return errors.StreamError(f"the stream from {where} broke: {self.scrub(errors.one_line(repr(error)))}")


class _TransportError(Exception):
    """The connection broke before any text arrived (retryable)."""


class ChatStream:
    """Iterates text deltas of one completion; ``close()`` (any thread) ends it at once."""

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

    def close(self) -> None:
        """Close the HTTP response now; safe to call from another thread or twice."""
        self._closed = True
        stream = self._sdk_stream
        if stream is not None:
            try:
                stream.close()
            except Exception:
                pass

    def __iter__(self) -> Iterator[str]:
        try:
            yield from self._deltas()
        finally:
            self.close()

    def _deltas(self) -> Iterator[str]:
        first, chunks = self._open_until_text()
        if first:
            yield first
        absorb = self._absorb
        for chunk in chunks:
            text = absorb(chunk)
            if text:
                yield text

    def _open_until_text(self) -> tuple[str | None, Iterator[Any]]:
        """Open the stream, retrying retryable failures until a first text delta is in hand."""
        attempt = 0
        while not self._closed:
            try:
                self._sdk_stream = self.client._open(self.model, self.messages, self.params)
                if self._closed:  # stopped while the request was being sent
                    self.close()
                chunks = iter(self._sdk_stream)
                for chunk in chunks:
                    text = self._absorb(chunk)
                    if text:
                        self.got_text = True
                        return text, chunks
                return None, iter(())
            except Exception as error:
                if self._closed:
                    raise
                if not _is_sdk_error(error):
                    error = _TransportError(repr(error))
                delay = self.client.retry_delay(error, attempt)
                if delay is None or attempt >= self.client.max_retries or delay > MAX_RETRY_AFTER:
                    raise self.client.map_error(error, model=self.model, retries=attempt) from None
                attempt += 1
                self.result.retries = attempt
                self.client.sleep(delay)
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


def _is_sdk_error(error: Exception) -> bool:
    import openai

    return isinstance(error, (openai.OpenAIError, errors.ChatError))


def _backoff(attempt: int) -> float:
    return min(BACKOFF_CAP, BACKOFF_BASE * 2 ** attempt) * random.uniform(0.75, 1.25)


def _retry_after(headers: Any) -> float | None:
    """Seconds from retry-after-ms / retry-after (seconds or an HTTP date), as the SDK reads them."""
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
