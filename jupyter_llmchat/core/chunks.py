"""Reading a Chat Completions stream's chunks: the text delta of each, and what the stream says
besides (model, finish reason, usage, logprobs, tool calls). Chunks are the SDK's objects (or a
whole JSON completion's dicts), read by their fields only: no HTTP here.

Tool calls stream in pieces: the first delta of a call carries its ``index``, ``id`` and name,
later ones only the index and a fragment of the arguments' JSON. Calls are put together by index,
so parallel calls whose fragments interleave come out whole, in the order of their indices.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .messages import ToolRequest
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
    system_fingerprint: str | None = None  # the backend configuration that answered (for reproducibility)
    # index -> [id, name, argument fragments], as the deltas of the tool calls arrive
    partial_calls: dict[int, list[Any]] = field(default_factory=dict, repr=False)

    @property
    def tool_calls(self) -> list[ToolRequest]:
        """The tool calls the stream asked for, whole, in the order of their indices."""
        return [ToolRequest(call[0] or f"call_{index}", call[1], "".join(call[2]))
                for index, call in sorted(self.partial_calls.items())]

    def add_call_delta(self, index: int, id: str | None, name: str | None, arguments: str | None) -> None:
        """Fold one tool-call delta in (a new call, or a fragment of one already begun)."""
        call = self.partial_calls.get(index)
        if call is None:
            call = self.partial_calls[index] = ["", "", []]
        if id:
            call[0] = id
        if name:
            call[1] += name if call[1] != name else ""  # a name is sent whole, once (some servers repeat it)
        if arguments:
            call[2].append(arguments)


def absorb(chunk: Any, result: StreamResult) -> str | None:
    """Record a chunk's metadata in ``result`` and return its text delta, if any (chunks are read
    by their fields, so a server that leaves one out does not break the stream)."""
    usage = usage_of(getattr(chunk, "usage", None))
    if usage is not None:
        result.usage = usage
    model = getattr(chunk, "model", None)
    if model:
        result.model = model
    fingerprint = getattr(chunk, "system_fingerprint", None)
    if isinstance(fingerprint, str) and fingerprint:
        result.system_fingerprint = fingerprint
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
    if delta is None:
        return None
    refusal = getattr(delta, "refusal", None)
    if isinstance(refusal, str) and refusal:
        result.refusal = (result.refusal or "") + refusal
    calls = getattr(delta, "tool_calls", None)
    if calls:
        for position, call in enumerate(calls):
            absorb_call(call, result, position)
    text = getattr(delta, "content", None)
    return text if isinstance(text, str) else None


def absorb_call(call: Any, result: StreamResult, position: int = 0) -> None:
    """Fold one tool call (a stream delta, or a whole message's call, as an object or a dict) into
    ``result``; a call without an index takes its position in the list."""
    index = _field(call, "index")
    function = _field(call, "function")
    name = _field(function, "name") if function is not None else None
    arguments = _field(function, "arguments") if function is not None else None
    result.add_call_delta(index if isinstance(index, int) else position, _text(_field(call, "id")), _text(name),
                          _text(arguments))


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


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
    """One token's entry; its UTF-8 ``bytes`` kept when sent, so a character split over tokens
    (an emoji, CJK) can be shown whole (``notebook.logprobs_view``)."""
    entry: dict[str, Any] = {"token": item.token, "logprob": item.logprob,
                             "top_logprobs": [{"token": top.token, "logprob": top.logprob}
                                              for top in (item.top_logprobs or [])]}
    raw = getattr(item, "bytes", None)
    if isinstance(raw, list):
        entry["bytes"] = raw
    return entry
