"""Reading a Chat Completions stream's chunks: the text delta of each, and what the stream says
besides (model, finish reason, usage, logprobs). Chunks are the SDK's objects (or a whole JSON
completion's dicts), read by their fields only: no HTTP here."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .reply import Usage


@dataclass
class StreamResult:
    """What the stream said besides its text: filled in as chunks arrive."""

    model: str | None = None
    finish_reason: str | None = None
    usage: Usage | None = None
    logprobs: list[dict[str, Any]] | None = None
    retries: int = 0  # requests re-sent, by the SDK or by the drop-before-text loop
    refusal: str | None = None  # the model refused (Structured Outputs): its text, sent instead of content


def absorb(chunk: Any, result: StreamResult) -> str | None:
    """Record a chunk's metadata in ``result`` and return its text delta, if any (chunks are read
    by their fields, so a server that leaves one out does not break the stream)."""
    usage = usage_of(getattr(chunk, "usage", None))
    if usage is not None:
        result.usage = usage
    model = getattr(chunk, "model", None)
    if model:
        result.model = model
    choices = getattr(chunk, "choices", None)
    if not choices:
        return None
    choice = choices[0]
    finish = getattr(choice, "finish_reason", None)
    if finish:
        result.finish_reason = finish
    logprobs = getattr(choice, "logprobs", None)
    if logprobs is not None and getattr(logprobs, "content", None):
        if result.logprobs is None:
            result.logprobs = []
        result.logprobs.extend(_logprob_dict(item) for item in logprobs.content)
    delta = getattr(choice, "delta", None)
    refusal = getattr(delta, "refusal", None) if delta is not None else None
    if isinstance(refusal, str) and refusal:
        result.refusal = (result.refusal or "") + refusal
    text = getattr(delta, "content", None) if delta is not None else None
    return text if isinstance(text, str) else None


def usage_of(usage: Any) -> Usage | None:
    """Usage from a chunk's usage object (or a JSON body's usage dict); None when there is none."""
    if usage is None:
        return None
    details = _field(usage, "prompt_tokens_details")
    cached = _field(details, "cached_tokens") if details is not None else None
    return Usage(_field(usage, "prompt_tokens") or 0, _field(usage, "completion_tokens") or 0, cached or 0)


def _field(value: Any, name: str) -> Any:
    return value.get(name) if isinstance(value, dict) else getattr(value, name, None)


def _logprob_dict(item: Any) -> dict[str, Any]:
    return {"token": item.token, "logprob": item.logprob,
            "top_logprobs": [{"token": top.token, "logprob": top.logprob}
                             for top in (item.top_logprobs or [])]}
