"""Messages of a conversation and the content parts the Chat Completions API takes."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

from .reply import Status, Usage

Role = Literal["system", "user", "assistant"]
MessageStatus = Status  # an assistant message keeps the status of the reply that wrote it


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
        return message

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (images included) for transcripts and stores."""
        data = asdict(self)
        data["images"] = [asdict(image) for image in self.images]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Message:
        data = dict(data)
        data["images"] = tuple(ImageRef(**image) for image in data.get("images") or ())
        if data.get("usage") is not None and not isinstance(data["usage"], Usage):
            data["usage"] = Usage(**data["usage"])
        return cls(**data)

    def with_tokens(self, tokens: int) -> Message:
        return replace(self, tokens=tokens)
