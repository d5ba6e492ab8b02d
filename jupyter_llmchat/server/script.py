"""What the next request to /v1/chat/completions should do: a reply, a token rate or a fault.

The next valid request takes the head of the queue (an empty queue gives the default reply).
A ``Script`` is built from keyword arguments (``LoopbackServer.queue``), from JSON posted to
``/_loopback/queue`` by another process, or from a request's own ``"loopback"`` body field, and is
validated the same way in all three cases so a typo fails loudly instead of being ignored.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

# name -> what the fault does; disconnect, malformed and stream_error strike after the stream started.
FAULTS: dict[str, str] = {
    "rate_limit": "429 with retry-after / retry-after-ms headers, code rate_limit_exceeded",
    "server_error": "500 server_error",
    "unauthorized": "401 invalid_api_key",
    "context_length": "400 context_length_exceeded",
    "model_not_found": "404 model_not_found",
    "images_unsupported": "400 'Invalid content type. image_url is only supported by certain models.'",
    "disconnect": "send after_tokens content chunks, then drop the connection mid-body",
    "malformed": "send after_tokens content chunks, then a chunk that is not JSON",
    "stream_error": "send after_tokens content chunks, then an SSE error event (a 500 if not streamed)",
    "slow_first_byte": "sleep delay seconds before the headers, then a normal reply",
    # How OpenAI-compatible servers that are not OpenAI answer, as they really do.
    "context_length_litellm": "400, LiteLLM's wording: code \"400\", litellm.ContextWindowExceededError",
    "context_length_llamacpp": "400, llama.cpp's wording: type exceed_context_size_error, n_ctx",
    "context_length_vllm": "400, vLLM's bare error object: \"This model's maximum context length is ...\"",
    "model_not_found_ollama": "404, Ollama's wording: model \"x\" not found, try pulling it first",
    "empty_stream": "200 event stream with no text, no finish_reason and no [DONE], only llama.cpp's "
                    "'error:' line (what it sends when the prompt exceeds its context or an image fails)",
    "no_finish": "send after_tokens content chunks, then end the body cleanly: no finish_reason, no [DONE]",
    "no_done": "a whole stream with its finish_reason and usage, but no [DONE] at the end",
    "html_page": "200 with an HTML page (a base_url that points at a website, not at the API)",
    "json_body": "200 with a whole chat.completion JSON body although a stream was asked for",
    "no_usage": "a normal stream without the usage chunk, as servers that ignore stream_options send it",
    "split_surrogates": "each character outside the BMP sent as two chunks, the JSON escapes of its "
                        "UTF-16 halves (a server that cuts text by UTF-16 code units)",
    "lone_surrogate": "like split_surrogates, but the low half of the first such character never comes",
    # Structured answers (response_format json_object / json_schema), as they go wrong.
    "schema_invalid": "JSON that breaks the requested schema (its first property left out)",
    "refusal": "the model refuses: the text (reply=, or a stock refusal) comes in delta.refusal, no content",
    "length_cut": "the answer stops half way, finish_reason length (a JSON answer cut before it ends)",
}
FINISH_REASONS = ("stop", "length", "content_filter", "tool_calls")


@dataclass(frozen=True)
class Script:
    """One scripted response. Every field is optional; an empty Script is the default reply."""

    reply: str | None = None  # exact reply text
    tokens: int | None = None  # generated Markdown of exactly this many completion tokens
    rate: float | None = None  # tokens per second; None streams at full speed
    fault: str | None = None
    retry_after: float | None = None  # seconds, for fault="rate_limit" (default 1)
    after_tokens: int | None = None  # content chunks sent before a mid-stream fault (default 0)
    delay: float | None = None  # seconds before the headers (any script; slow_first_byte default 1)
    finish_reason: str | None = None  # forced finish_reason, e.g. "content_filter"
    times: int = 1  # how many consecutive requests this script answers
    # [{"name": ..., "arguments": {...} or "raw text", "id": optional}]: the reply asks for these calls
    # (several: parallel calls); finish_reason "tool_calls". See server/tools.py.
    tool_calls: list[dict[str, Any]] | None = None
    fragment: int | None = None  # characters per streamed delta of a call's arguments (default 4)

    def __post_init__(self) -> None:
        _check_type("reply", self.reply, str)
        for name in ("tokens", "after_tokens"):
            _check_type(name, getattr(self, name), int)
            if getattr(self, name) is not None and getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("rate", "retry_after", "delay"):
            _check_type(name, getattr(self, name), (int, float))
            if getattr(self, name) is not None and getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.rate == 0:
            raise ValueError("rate must be > 0 tokens/s (use None for full speed)")
        if self.reply is not None and self.tokens is not None:
            raise ValueError("give reply= (exact text) or tokens= (generated Markdown), not both")
        if self.fault is not None and self.fault not in FAULTS:
            raise ValueError(f"unknown fault {self.fault!r}; choose one of: {', '.join(FAULTS)}")
        if self.finish_reason is not None and self.finish_reason not in FINISH_REASONS:
            raise ValueError(f"unknown finish_reason {self.finish_reason!r}; choose one of: "
                             f"{', '.join(FINISH_REASONS)}")
        if isinstance(self.times, bool) or not isinstance(self.times, int) or self.times < 1:
            raise ValueError(f"times must be an integer >= 1, got {self.times!r}")
        _check_type("fragment", self.fragment, int)
        if self.fragment is not None and self.fragment < 1:
            raise ValueError(f"fragment must be >= 1, got {self.fragment}")
        if self.tool_calls is not None:
            _check_calls(self.tool_calls)

    @classmethod
    def from_mapping(cls, data: Any) -> Script:
        """Build from JSON (control API or a request's "loopback" field); unknown keys are errors."""
        if not isinstance(data, Mapping):
            raise ValueError(f"a loopback script must be a JSON object, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown loopback option(s) {', '.join(unknown)}; "
                             f"known: {', '.join(sorted(known))}")
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _check_calls(calls: Any) -> None:
    if not isinstance(calls, list) or not calls:
        raise ValueError("tool_calls must be a non-empty list of {\"name\": ..., \"arguments\": ...} objects")
    for call in calls:
        if not isinstance(call, dict) or not isinstance(call.get("name"), str):
            raise ValueError(f"each tool call needs a \"name\" string, got {call!r}")
        unknown = sorted(set(call) - {"name", "arguments", "id"})
        if unknown:
            raise ValueError(f"unknown tool call field(s) {', '.join(unknown)}; known: arguments, id, name")
        if not isinstance(call.get("arguments", {}), (dict, str)):
            raise ValueError("a tool call's arguments must be an object, or a string sent as it is")


def _check_type(name: str, value: Any, kind: type | tuple[type, ...]) -> None:
    # bool is an int subclass; True tokens is a mistake, not 1.
    if value is not None and (isinstance(value, bool) or not isinstance(value, kind)):
        raise ValueError(f"{name} has the wrong type: {type(value).__name__}")
