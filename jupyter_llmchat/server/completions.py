"""Chat Completions semantics: validate a request, plan the reply, and encode it as OpenAI does.

Everything here is pure (no sockets): ``plan_reply`` turns a request body and a ``Script`` into a
``Plan`` (text deltas, token ids, finish reason, usage), and the ``*_bytes``/``completion_body``
helpers produce the exact wire format of the OpenAI Chat Completions API, streamed or not.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import json
import re
import threading
import time
import uuid
import zlib
from array import array
from collections import defaultdict, deque
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Iterable

from ..models import model_info
from ..tokens import count_prompt_tokens, get_encoding
from .markdown import disclosure, generate_markdown
from .script import Script

SYSTEM_FINGERPRINT = "fp_loopback"
ROLES = ("system", "developer", "user", "assistant", "tool", "function")
CACHE_MIN_TOKENS = 1024  # OpenAI caches prompts of at least 1024 tokens ...
CACHE_INCREMENT = 128  # ... in 128-token steps of the common prefix
_ALTERNATIVES = [b" the", b" a", b",", b".", b" and", b"\n", b" of", b" to", b" is", b" in",
                 b" it", b" that", b" for", b" on", b" with", b" as", b" be", b" at", b" by", b" or"]


class RequestError(Exception):
    """An OpenAI-style error response: status, one-line message, type, code, param, headers."""

    def __init__(self, status: int, message: str, *, type: str = "invalid_request_error",
                 code: str | None = None, param: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.code, self.param = status, message, type, code, param
        self.headers = headers or {}

    def body(self) -> bytes:
        return json.dumps({"error": {"message": self.message, "type": self.type,
                                     "param": self.param, "code": self.code}}).encode()


def fault_error(script: Script, body: Any) -> RequestError | None:
    """The error response a status fault stands for, or None for stream faults / no fault."""
    fault = script.fault
    model = str(body.get("model")) if isinstance(body, dict) else "?"
    if fault == "rate_limit":
        wait = 1.0 if script.retry_after is None else float(script.retry_after)
        return RequestError(
            429, f"Rate limit reached for {model} in organization org-loopback on requests per min "
            f"(RPM): Limit 3, Used 3, Requested 1. Please try again in {wait:g}s.",
            type="requests", code="rate_limit_exceeded",
            headers={"retry-after": str(max(int(-(-wait // 1)), 0)),
                     "retry-after-ms": str(int(wait * 1000))})
    if fault == "server_error":
        return RequestError(500, "The server had an error while processing your request. Sorry about that!",
                            type="server_error")
    if fault == "unauthorized":
        return unauthorized()
    if fault == "context_length":
        window = model_info(model).context_window
        return context_length_error(window, window + 1)
    if fault == "model_not_found":
        return model_not_found(model)
    if fault == "images_unsupported":
        messages = body.get("messages") if isinstance(body, dict) else None
        return images_unsupported(_first_image(messages) if isinstance(messages, list) else (0, 0))
    return None


def images_unsupported(where: tuple[int, int]) -> RequestError:
    """What OpenAI answers when a model without vision gets an image part (no error code)."""
    return RequestError(400, "Invalid content type. image_url is only supported by certain models.",
                        param=f"messages.[{where[0]}].content.[{where[1]}].type")


def _first_image(messages: list[Any]) -> tuple[int, int]:
    for i, message in enumerate(messages):
        content = message.get("content") if isinstance(message, dict) else None
        for j, part in enumerate(content if isinstance(content, list) else []):
            if isinstance(part, dict) and part.get("type") == "image_url":
                return i, j
    return 0, 0


def unauthorized() -> RequestError:
    # Never echo any part of the key back: the house rule is that keys are never printed.
    return RequestError(401, "Incorrect API key provided. You can find your API key at "
                        "https://platform.openai.com/account/api-keys.", code="invalid_api_key")


def model_not_found(model: str) -> RequestError:
    return RequestError(404, f"The model `{model}` does not exist or you do not have access to it.",
                        code="model_not_found")


def context_length_error(window: int, prompt_tokens: int) -> RequestError:
    return RequestError(400, f"This model's maximum context length is {window} tokens. However, your "
                        f"messages resulted in {prompt_tokens} tokens. Please reduce the length of "
                        "the messages.", param="messages", code="context_length_exceeded")


def validate_request(body: Any, served_models: Iterable[str], *, strict: bool = True) -> None:
    """Reject what OpenAI rejects, with its wording: missing fields, bad roles, broken images."""
    if not isinstance(body, dict):
        raise RequestError(400, "The request body must be a JSON object.")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise RequestError(400, "you must provide a model parameter", param="model")
    if model not in served_models:
        raise model_not_found(model)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise RequestError(400, "Missing required parameter: 'messages'.", param="messages",
                           code="missing_required_parameter")
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            raise RequestError(400, f"Invalid value for 'messages[{i}].role': expected one of "
                               f"{', '.join(ROLES)}.", param=f"messages[{i}].role", code="invalid_value")
        content = message.get("content")
        if isinstance(content, list):
            for j, part in enumerate(content):
                _validate_part(part, f"messages[{i}].content[{j}]")
        elif content is not None and not isinstance(content, str):
            raise RequestError(400, f"Invalid type for 'messages[{i}].content': expected a string or "
                               "an array of content parts.", param=f"messages[{i}].content",
                               code="invalid_type")
    for name in ("max_tokens", "max_completion_tokens"):
        value = body.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise RequestError(400, f"Invalid '{name}': integer below minimum value. Expected a value "
                               f">= 1, but got {value!r} instead.", param=name, code="integer_below_min_value")
    info = model_info(model)
    if strict and info.known and not info.vision and _has_image(messages):
        raise images_unsupported(_first_image(messages))
    if strict and body.get("max_tokens") is not None and info.reasoning:
        raise RequestError(400, "Unsupported parameter: 'max_tokens' is not supported with this model. "
                           "Use 'max_completion_tokens' instead.", param="max_tokens",
                           code="unsupported_parameter")


def _has_image(messages: list[Any]) -> bool:
    return any(isinstance(m.get("content"), list) and any(p.get("type") == "image_url" for p in m["content"])
               for m in messages)


def _validate_part(part: Any, where: str) -> None:
    kind = part.get("type") if isinstance(part, dict) else None
    if kind == "text":
        if not isinstance(part.get("text"), str):
            raise RequestError(400, f"Invalid type for '{where}.text': expected a string.",
                               param=f"{where}.text", code="invalid_type")
        return
    if kind != "image_url":
        raise RequestError(400, f"Invalid value for '{where}.type': expected 'text' or 'image_url'.",
                           param=f"{where}.type", code="invalid_value")
    image = part.get("image_url")
    url = image.get("url") if isinstance(image, dict) else None
    if not isinstance(url, str) or not url:
        raise RequestError(400, f"Missing required parameter: '{where}.image_url.url'.",
                           param=f"{where}.image_url.url", code="missing_required_parameter")
    if image.get("detail", "auto") not in ("auto", "low", "high"):
        raise RequestError(400, f"Invalid value for '{where}.image_url.detail': expected 'auto', 'low' "
                           "or 'high'.", param=f"{where}.image_url.detail", code="invalid_value")
    if url.startswith("data:"):
        header, _, payload = url.partition(",")
        try:
            if not header.endswith(";base64") or not payload:
                raise ValueError
            base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError):
            raise RequestError(400, f"Invalid image data URL in '{where}.image_url.url': expected "
                               "data:image/<type>;base64,<valid base64>.",
                               param=f"{where}.image_url.url", code="invalid_image_url") from None
    elif not url.startswith(("http://", "https://")):
        raise RequestError(400, f"Invalid image URL in '{where}.image_url.url': expected an http(s) "
                           "URL or a base64 data URL.", param=f"{where}.image_url.url",
                           code="invalid_image_url")


def message_text(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if part.get("type") == "text")
    return content or ""


def last_question(messages: list[dict[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            return message_text(message)
    return message_text(messages[-1])


class PromptCache:
    """Simulates OpenAI prompt caching: the longest token prefix shared with an earlier prompt."""

    def __init__(self, keep: int = 16) -> None:
        self._lock = threading.Lock()
        # arrays, not lists: 8 bytes a token instead of ~36, for long-context benchmarks
        self._seen: dict[str, deque[array[int]]] = defaultdict(lambda: deque(maxlen=keep))

    def cached_tokens(self, model: str, messages: list[dict[str, Any]], prompt_tokens: int) -> int:
        """Cached tokens for this prompt (0 below 1024), and remember it for later requests."""
        sequence = _prompt_sequence(messages, model)
        with self._lock:
            seen = self._seen[model]
            common = max((_common_prefix(sequence, old) for old in seen), default=0)
            seen.append(sequence)
        if prompt_tokens < CACHE_MIN_TOKENS or common < CACHE_MIN_TOKENS:
            return 0
        return min(common - common % CACHE_INCREMENT, prompt_tokens)

    def clear(self) -> None:
        with self._lock:
            self._seen.clear()


def _prompt_sequence(messages: list[dict[str, Any]], model: str) -> array[int]:
    """The prompt as token ids, with the 3 per-message overhead tokens as negative markers."""
    encode = _encoder(model_info(model).encoding)
    sequence: array[int] = array("q")
    for message in messages:
        sequence.extend((-1, -2, -3))
        sequence.extend(encode(str(message.get("role"))))
        content = message.get("content")
        for part in content if isinstance(content, list) else [{"type": "text", "text": content or ""}]:
            if part.get("type") == "text":
                sequence.extend(encode(part.get("text", "")))
            else:  # an image is one marker derived from its URL: equal images share a prefix
                sequence.append(-4 - zlib.crc32(json.dumps(part, sort_keys=True).encode()))
    return sequence


def _common_prefix(a: array[int], b: array[int]) -> int:
    n = min(len(a), len(b))
    if a[:n] == b[:n]:
        return n
    lo, hi = 0, n  # binary search on slice equality: C-speed compares instead of a Python loop
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo


@lru_cache(maxsize=None)
def _encoder(encoding_name: str):
    encoding = get_encoding(encoding_name)
    if encoding is None:  # no vocabulary at all: words and spaces stand in for tokens
        return lambda text: [zlib.crc32(piece.encode()) for piece in _pieces(text)]
    return lambda text: encoding.encode(text, disallowed_special=())


def _pieces(text: str) -> list[str]:
    return re.findall(r"\s*\S+|\s+", text)


def token_bytes(text: str, encoding_name: str) -> list[bytes]:
    """The reply split into its tokens' bytes with the model's encoding."""
    encoding = get_encoding(encoding_name)
    if encoding is None:
        return [piece.encode() for piece in _pieces(text)]
    return encoding.decode_tokens_bytes(encoding.encode(text, disallowed_special=()))


@dataclass
class Plan:
    """A reply ready to send: deltas (text, token indices) over ``tokens``, plus usage."""

    model: str
    text: str
    tokens: list[bytes]
    deltas: list[tuple[str, range]]
    finish_reason: str
    prompt_tokens: int
    cached_tokens: int
    top_logprobs: int | None  # None: logprobs not requested
    id: str = field(default_factory=lambda: "chatcmpl-" + uuid.uuid4().hex[:24])
    created: int = field(default_factory=lambda: int(time.time()))

    @property
    def completion_tokens(self) -> int:
        return len(self.tokens)

    def usage(self) -> dict[str, Any]:
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                "total_tokens": self.prompt_tokens + self.completion_tokens,
                "prompt_tokens_details": {"cached_tokens": self.cached_tokens, "audio_tokens": 0},
                "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                              "accepted_prediction_tokens": 0,
                                              "rejected_prediction_tokens": 0}}

    def logprobs(self, indices: Iterable[int]) -> dict[str, Any] | None:
        if self.top_logprobs is None:
            return None
        return {"content": [_logprob(self.tokens[i], i, self.top_logprobs) for i in indices],
                "refusal": None}


def plan_reply(body: dict[str, Any], script: Script, *, prompt_tokens: int, cached_tokens: int,
               default_tokens: int) -> Plan:
    """Decide the reply text and cut it into deltas, honouring max_tokens and the script."""
    model = body["model"]
    encoding = model_info(model).encoding
    question = last_question(body["messages"])
    if script.reply is not None:
        text = script.reply
    elif script.tokens is not None:
        text = _generated(question, script.tokens, encoding, opening=False)
    else:
        text = _generated(question, default_tokens, encoding, opening=True)
    tokens = token_bytes(text, encoding)
    if script.tokens is not None:
        tokens = tokens[: script.tokens]  # exactly the requested count
    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    truncated = limit is not None and len(tokens) > limit
    if truncated:
        tokens = tokens[:limit]
    deltas = split_deltas(tokens)
    finish = script.finish_reason or ("length" if truncated else "stop")
    top = None
    if body.get("logprobs"):
        top = body.get("top_logprobs") or 0
    return Plan(model, "".join(text for text, _ in deltas), tokens, deltas, finish,
                prompt_tokens, cached_tokens, top)


@lru_cache(maxsize=64)
def _generated(question: str, tokens: int, encoding_name: str, *, opening: bool) -> str:
    encode = _encoder(encoding_name)
    return generate_markdown(question, tokens, lambda text: len(encode(text)),
                             opening=disclosure(question) if opening else None)


def split_deltas(tokens: list[bytes]) -> list[tuple[str, range]]:
    """One delta per token, merging tokens whose bytes end mid-character so each delta is valid text."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    deltas: list[tuple[str, range]] = []
    start = 0
    for i, chunk in enumerate(tokens):
        text = decoder.decode(chunk)
        if text:
            deltas.append((text, range(start, i + 1)))
            start = i + 1
    if start < len(tokens):  # a cut in the middle of a character (max_tokens): show U+FFFD
        deltas.append((decoder.decode(b"", final=True), range(start, len(tokens))))
    return deltas


def _logprob(token: bytes, index: int, top: int) -> dict[str, Any]:
    def entry(raw: bytes, value: float) -> dict[str, Any]:
        return {"token": raw.decode("utf-8", errors="backslashreplace"), "logprob": value,
                "bytes": list(raw)}

    # Deterministic fake values: the chosen token is always the most likely one.
    chosen = -round((zlib.crc32(token + index.to_bytes(8, "little")) % 2000) / 1000, 4)
    alternatives = [raw for raw in _ALTERNATIVES if raw != token][: max(top - 1, 0)]
    tops = [entry(token, chosen)] if top else []
    tops += [entry(raw, round(chosen - 1.5 - k, 4)) for k, raw in enumerate(alternatives)]
    return {**entry(token, chosen), "top_logprobs": tops}


def completion_body(plan: Plan) -> bytes:
    """A non-streamed chat.completion object."""
    return _dumps({
        "id": plan.id, "object": "chat.completion", "created": plan.created, "model": plan.model,
        "system_fingerprint": SYSTEM_FINGERPRINT, "service_tier": "default",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": plan.text,
                                             "refusal": None, "annotations": []},
                     "logprobs": plan.logprobs(range(len(plan.tokens))),
                     "finish_reason": plan.finish_reason}],
        "usage": plan.usage(),
    }).encode()


class ChunkEncoder:
    """SSE events of a streamed reply, each ``data: {json}\\n\\n``, built from a shared prefix."""

    def __init__(self, plan: Plan, *, include_usage: bool) -> None:
        self.plan = plan
        self.include_usage = include_usage
        head = {"id": plan.id, "object": "chat.completion.chunk", "created": plan.created,
                "model": plan.model, "system_fingerprint": SYSTEM_FINGERPRINT, "service_tier": "default"}
        # compact JSON, as the API sends it
        self._head = "data: " + _dumps(head)[:-1] + ',"choices":[{"index":0,'
        self._tail = "}\n\n" if not include_usage else ',"usage":null}\n\n'

    def _event(self, delta: str, logprobs: str, finish: str) -> bytes:
        return f'{self._head}"delta":{delta},"logprobs":{logprobs},"finish_reason":{finish}}}]{self._tail}'.encode()

    def first(self) -> bytes:
        return self._event('{"role":"assistant","content":"","refusal":null}', "null", "null")

    def content(self) -> list[bytes]:
        """One event per delta, precomputed so a full-speed stream is only socket writes."""
        plan = self.plan
        return [self._event('{"content":' + _dumps(text) + "}", _dumps(plan.logprobs(indices)), "null")
                for text, indices in plan.deltas]

    def last(self) -> bytes:
        event = self._event("{}", "null", json.dumps(self.plan.finish_reason))
        if self.include_usage:
            usage = {"id": self.plan.id, "object": "chat.completion.chunk", "created": self.plan.created,
                     "model": self.plan.model, "system_fingerprint": SYSTEM_FINGERPRINT,
                     "service_tier": "default", "choices": [], "usage": self.plan.usage()}
            event += b"data: " + _dumps(usage).encode() + b"\n\n"
        return event + b"data: [DONE]\n\n"


MALFORMED_EVENT = b"data: {not json\n\n"
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
