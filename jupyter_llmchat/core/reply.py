"""What one answer produced (Reply, Usage) and where its text goes while it streams (ReplySink)."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TextIO, runtime_checkable

# complete: finish_reason "stop"; truncated: "length"; filtered: "content_filter";
# interrupted: the user stopped it (KeyboardInterrupt or Chatbot.stop()); failed: an error ended it.
Status = Literal["complete", "truncated", "filtered", "interrupted", "failed"]
ReplyStatus = Status
# What every view (cell footer, panel bubble and status line, plain text) says of an answer that is
# not a clean, complete one: one wording for all of them.
STATUS_NOTICES: dict[str, str] = {
    "truncated": "answer truncated: it reached max_tokens (finish_reason=length)",
    "filtered": "answer stopped by the provider's content filter (finish_reason=content_filter)",
    "interrupted": "answer interrupted: partial text kept",
    "failed": "request failed",
}


def status_notice(status: str, error: str | None = None) -> str | None:
    """The line every view shows for an answer with ``status`` (None for a complete one)."""
    notice = STATUS_NOTICES.get(status)
    if notice is not None and status == "failed" and error:
        return f"{notice}: {error}"
    return notice


@dataclass(frozen=True)
class Usage:
    """Token counts as the endpoint reported them (stream_options.include_usage), or, when it
    reported none, as we counted them ourselves from the prompt sent and the text received."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0  # prompt_tokens_details.cached_tokens; part of prompt_tokens
    source: Literal["reported", "counted"] = "reported"  # "counted": ours, the endpoint sent no usage

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @property
    def counted_locally(self) -> bool:
        """True when these are our own counts (the endpoint reported no usage): views say so."""
        return self.source == "counted"


@dataclass
class Reply:
    """The result of ``Chatbot.ask``: full text plus everything needed for a footer or a ledger."""

    text: str
    model: str
    status: ReplyStatus = "complete"
    finish_reason: str | None = None
    usage: Usage | None = None
    cost: float | None = None  # USD, from the model table; None when the model's price is unknown
    time_to_first_token: float | None = None  # seconds from sending to the first text delta
    total_time: float = 0.0  # seconds from sending to the end of the stream
    logprobs: list[dict[str, Any]] | None = None  # one dict per token: token, logprob, top_logprobs
    error: str | None = None  # the one-line error when status == "failed"
    from_cache: bool = False  # replayed from the response cache, no HTTP request made
    request: dict[str, Any] = field(default_factory=dict, repr=False)  # model + params sent (no key)

    @property
    def notice(self) -> str | None:
        """A short line to show the user when the answer is not a clean, complete one."""
        return status_notice(self.status, self.error)


@runtime_checkable
class ReplySink(Protocol):
    """Receives an answer while it streams. Called from the thread that runs ``ask``.

    ``start`` once when the request is sent, ``write`` for each text delta in order, ``finish``
    exactly once at the end whatever happened (complete, truncated, interrupted or failed).
    """

    def start(self, model: str) -> None: ...

    def write(self, text: str) -> None: ...

    def finish(self, reply: Reply) -> None: ...


class PrintSink:
    """Plain streamed text for scripts and terminals: no escape codes.

    Flushed at most every ``flush_interval`` seconds (and at the end): in a kernel each flush is
    an IOPub message, and one per token would flood the channel on a fast stream.
    """

    def __init__(self, stream: TextIO | None = None, *, flush_interval: float = 0.05) -> None:
        self._stream = stream
        self.flush_interval = flush_interval
        self._flushed = float("-inf")  # the first write flushes, whatever the clock reads

    @property
    def stream(self) -> TextIO:
        return self._stream if self._stream is not None else sys.stdout

    def start(self, model: str) -> None:
        pass

    def write(self, text: str) -> None:
        self.stream.write(text)
        now = time.monotonic()
        if now - self._flushed >= self.flush_interval:
            self.stream.flush()
            self._flushed = now

    def finish(self, reply: Reply) -> None:
        out = self.stream
        if reply.text and not reply.text.endswith("\n"):
            out.write("\n")
        if reply.notice and reply.status != "failed":
            out.write(f"[{reply.notice}]\n")
        out.flush()


class NullSink:
    """Discards the stream (benchmarks, callers that only want the returned Reply)."""

    def start(self, model: str) -> None:
        pass

    def write(self, text: str) -> None:
        pass

    def finish(self, reply: Reply) -> None:
        pass
