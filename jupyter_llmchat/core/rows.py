"""One row of ``Chatbot.map``: the request it makes and what came back.

Shared by the concurrent runner (``mapping``) and the Batch API runner (``batch``), so a row asked
either way is resumed, cached, priced and shown the same way. A row's ``key`` is the SHA-256 of its
request (model, messages, params, schema): the same row asked again is found by it, never paid twice.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Literal

from .reply import Usage

RowStatus = Literal["done", "failed", "pending"]


def request_key(model: str, messages: list[dict[str, Any]], params: dict[str, Any]) -> str:
    """SHA-256 hex of the request's canonical JSON: the row's identity for resuming and caching."""
    canonical = json.dumps({"model": model, "messages": messages, "params": params}, sort_keys=True,
                           ensure_ascii=False, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class RowRequest:
    """What one row asks: an independent question (no shared history)."""

    index: int  # position in the input, so results come back in input order
    model: str
    messages: list[dict[str, Any]]
    params: dict[str, Any] = field(default_factory=dict)  # response_format etc., as sent

    @property
    def key(self) -> str:
        return request_key(self.model, self.messages, self.params)


@dataclass
class RowResult:
    """What one row got: its text (and parsed value for a schema), or the one-line error that
    ended it; usage and cost as billed (batch prices for the Batch API)."""

    index: int
    key: str
    status: RowStatus = "pending"
    text: str | None = None
    parsed: Any = None
    error: str | None = None
    usage: Usage | None = None
    cost: float | None = None
    attempts: int = 0
