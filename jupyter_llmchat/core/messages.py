"""Messages of a conversation, the content parts the Chat Completions API takes, and the one rule
for text that cannot be encoded: surrogate halves are joined into their character, and what is
still lone becomes U+FFFD, before anything is sent or recorded.

Tool calls are messages like any other: an assistant message may carry ``tool_calls`` (the calls
the model asked for, as ToolRequests), and each call's result is a message of role "tool" whose
``tool_call_id`` names the call it answers.
"""

from __future__ import annotations

import re
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal, NamedTuple

from .reply import Status, Usage

Role = Literal["system", "user", "assistant", "tool"]
MessageStatus = Status  # an assistant message keeps the status of the reply that wrote it
_SURROGATE = re.compile("[\ud800-\udfff]")
_HIGH_SURROGATES = ("\ud800", "\udbff")


def clean_text(text: str) -> str:
    """``text`` with each surrogate pair joined into its character and lone surrogates as U+FFFD.

    A lone surrogate (from a JSON ``"\\ud83d"``, a bad decode, a pair split across two stream
    chunks) cannot be encoded as UTF-8: left in place it fails the request, the store, the display.
    """
    if _SURROGATE.search(text) is None:
        return text
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


class SurrogateJoiner:
    """Cleans streamed text delta by delta: a high surrogate that ends a delta waits for the low
    half that may start the next one, so a pair split across two chunks becomes its character."""

    def __init__(self) -> None:
        self._held = ""

    def feed(self, delta: str) -> str:
        """The clean text of ``delta`` (a trailing high surrogate is held back)."""
        if self._held:
            delta, self._held = self._held + delta, ""
        if _SURROGATE.search(delta) is None:
            return delta
        if _HIGH_SURROGATES[0] <= delta[-1] <= _HIGH_SURROGATES[1]:
            delta, self._held = delta[:-1], delta[-1]
        return clean_text(delta)

    def flush(self) -> str:
        """What is still held at the end of the stream: a lone half, as U+FFFD."""
        held, self._held = self._held, ""
        return clean_text(held)


@dataclass(frozen=True)
class ImageRef:
    """An image as sent: an http(s) URL or a base64 data URL, with its size when known."""

    url: str
    detail: str = "auto"  # low | high | auto
    width: int | None = None
    height: int | None = None
    mime: str | None = None  # for data URLs
    source: str | None = None  # where it came from (path, URL, "figure", ...), for transcripts

    def to_part(self) -> dict[str, Any]:
        return {"type": "image_url", "image_url": {"url": self.url, "detail": self.detail}}

    def size_triple(self) -> tuple[int | None, int | None, str]:
        return self.width, self.height, self.detail


class ToolRequest(NamedTuple):
    """A tool call as an assistant message carries it: the call's id, the tool's name and the
    arguments, the JSON text exactly as the model wrote it (kept as text: it may be malformed)."""

    id: str
    name: str
    arguments: str

    def to_api(self) -> dict[str, Any]:
        return {"id": self.id, "type": "function", "function": {"name": self.name, "arguments": self.arguments}}


@dataclass(frozen=True)
class Message:
    """One message with its token count, computed once when the message is made."""

    role: Role
    text: str
    tokens: int
    images: tuple[ImageRef, ...] = ()
    name: str | None = None
    status: MessageStatus = "complete"
    model: str | None = None  # the model that wrote an assistant message
    usage: Usage | None = None
    created: float = field(default_factory=time.time)
    tool_calls: tuple[ToolRequest, ...] = ()  # an assistant message: the calls it asked for
    tool_call_id: str | None = None  # a "tool" message: the call whose result it holds

    @property
    def partial(self) -> bool:
        """True for an answer that did not finish (interrupted or broken stream)."""
        return self.status in ("interrupted", "failed")

    def to_api(self) -> dict[str, Any]:
        """The message as the Chat Completions API takes it."""
        message: dict[str, Any] = {"role": self.role}
        if self.images:
            parts: list[dict[str, Any]] = [{"type": "text", "text": self.text}] if self.text else []
            message["content"] = parts + [image.to_part() for image in self.images]
        else:
            message["content"] = self.text
        if self.name:
            message["name"] = self.name
        if self.tool_calls:
            message["content"] = self.text or None  # the API's own shape for a message of calls only
            message["tool_calls"] = [call.to_api() for call in self.tool_calls]
        if self.tool_call_id is not None:
            message["tool_call_id"] = self.tool_call_id
        return message

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (images and tool calls included) for transcripts and stores."""
        data = asdict(self)
        data["images"] = [asdict(image) for image in self.images]
        data["tool_calls"] = [call._asdict() for call in self.tool_calls]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Message:
        data = dict(data)
        data["images"] = tuple(ImageRef(**image) for image in data.get("images") or ())
        data["tool_calls"] = tuple(ToolRequest(**call) if isinstance(call, dict) else ToolRequest(*call)
                                   for call in data.get("tool_calls") or ())
        if data.get("usage") is not None and not isinstance(data["usage"], Usage):
            data["usage"] = Usage(**data["usage"])
        return cls(**data)

    def with_tokens(self, tokens: int) -> Message:
        return replace(self, tokens=tokens)
