"""What one answer produced (Reply, Usage) and where its text goes while it streams (ReplySink,
LiveSink: the repaint policy every streaming view shares; default_sink: where ``ask`` streams
when given no sink)."""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TextIO, runtime_checkable

from .models import format_cost
from .repaint import DEFAULT_INTERVAL, Repainter

# complete: finish_reason "stop"; truncated: "length"; filtered: "content_filter";
# interrupted: the user stopped it (KeyboardInterrupt or Chatbot.stop()); failed: an error ended it;
# tool_calls: it ended asking for tool calls that were not run (max_tool_rounds reached, or no tools).
Status = Literal["complete", "truncated", "filtered", "interrupted", "failed", "tool_calls"]
ReplyStatus = Status
# What every view (cell footer, panel bubble and status line, plain text) says of an answer that is
# not a clean, complete one: one wording for all of them. "truncated" here is what is true whatever
# the request was; ``truncated_notice`` says which limit it was when the request is known.
STATUS_NOTICES: dict[str, str] = {
    "truncated": "answer truncated: it reached an output token limit (finish_reason=length)",
    "filtered": "answer stopped by the provider's content filter (finish_reason=content_filter)",
    "interrupted": "answer interrupted: partial text kept",
    "interrupted_empty": "answer interrupted before any text",  # interrupted, when nothing had arrived
    "failed": "request failed",
    "tool_calls": "answer ended with tool calls that were not run (finish_reason=tool_calls)",
}
# The status of an answer that ended with this finish_reason (any other: "complete").
STATUS_BY_FINISH: dict[str | None, Status] = {"length": "truncated", "content_filter": "filtered"}


# "truncated" when the request is known: the cap it set, or the limit it met without one (a model's
# own output limit, or a server's: its default cap, or its context window filling up).
TRUNCATED_AT_MAX_TOKENS = "answer truncated: it reached max_tokens={max_tokens:,} (finish_reason=length)"
TRUNCATED_BEFORE_MAX_TOKENS = ("answer truncated: it reached the model's or the server's output limit before "
                               "max_tokens={max_tokens:,} (finish_reason=length)")
TRUNCATED_WITHOUT_MAX_TOKENS = ("answer truncated: it reached the model's or the server's output limit; "
                                "max_tokens was not set (finish_reason=length)")


def sent_max_tokens(params: Mapping[str, Any]) -> int | None:
    """The answer cap a request's ``params`` set (``max_completion_tokens`` for reasoning models),
    None when it set none."""
    value = params.get("max_tokens", params.get("max_completion_tokens"))
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def truncated_notice(max_tokens: int | None, answered: int | None = None) -> str:
    """The notice of an answer cut at finish_reason=length by a request that set ``max_tokens``
    (None: set none). ``answered``, the answer's tokens when known: fewer than ``max_tokens`` means
    another limit cut it first."""
    if max_tokens is None:
        return TRUNCATED_WITHOUT_MAX_TOKENS
    if answered is not None and answered < max_tokens:
        return TRUNCATED_BEFORE_MAX_TOKENS.format(max_tokens=max_tokens)
    return TRUNCATED_AT_MAX_TOKENS.format(max_tokens=max_tokens)


def status_notice(status: str, error: str | None = None, *, params: Mapping[str, Any] | None = None,
                  answered: int | None = None, has_text: bool = True) -> str | None:
    """The line every view shows for an answer with ``status`` (None for a complete one).

    ``params``: the parameters the request sent, when known, so a truncated answer says which limit
    it reached (``truncated_notice``, with ``answered`` its tokens if known); without them the
    wording holds whatever the request was. ``has_text``: whether any answer text arrived (an
    interrupted answer with none keeps no partial text, and says so)."""
    if status == "interrupted" and not has_text:
        return STATUS_NOTICES["interrupted_empty"]
    if status == "truncated" and params is not None:
        return truncated_notice(sent_max_tokens(params), answered)
    notice = STATUS_NOTICES.get(status)
    if notice is not None and status in ("failed", "tool_calls") and error:
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

    def plus(self, other: Usage | None) -> Usage:
        """Both requests' counts together (an answer that took several tool rounds): counted
        locally if either was."""
        if other is None:
            return self
        counted = "counted" in (self.source, other.source)
        source: Literal["reported", "counted"] = "counted" if counted else "reported"
        return Usage(self.prompt_tokens + other.prompt_tokens, self.completion_tokens + other.completion_tokens,
                     self.cached_tokens + other.cached_tokens, source)


# What came of one tool call: ok (the function returned), error (it raised), invalid (unknown tool or
# arguments that fail the schema), declined (the user said no), stopped (the answer was stopped while it
# ran or waited for approval), skipped (never run: the answer ended first, or max_tool_rounds was reached).
ToolOutcome = Literal["pending", "ok", "error", "invalid", "declined", "stopped", "skipped"]


@dataclass
class ToolCall:
    """One tool call the model asked for, and what came of it (``Reply.calls``).

    ``arguments`` is the JSON text exactly as the model sent it (it may be malformed); ``result``
    is the text sent back to the model (for a failed call: the one-line error it was told);
    ``error`` is that one line when the call did not return normally. ``seconds`` is the time
    the function ran (None when it did not run). ``round`` numbers the request that asked for it.
    """

    id: str
    name: str
    arguments: str
    round: int = 1
    outcome: ToolOutcome = "pending"
    result: str | None = None
    error: str | None = None
    seconds: float | None = None
    approved: bool | None = None  # None: the tool needs no confirmation

    @property
    def parsed_arguments(self) -> dict[str, Any] | None:
        """The arguments as a dict, or None when they are not a JSON object."""
        try:
            value = json.loads(self.arguments or "{}")
        except ValueError:
            return None
        return value if isinstance(value, dict) else None


REPR_TEXT = 60  # characters of the answer a Reply's repr shows
_PLAIN_NAME = re.compile(r"[\w.:/@+-]{1,80}", re.ASCII)  # a model name the repr shows bare; others repr-escaped


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
    error: str | None = None  # the one-line error when status == "failed" (or why "tool_calls")
    from_cache: bool = False  # replayed from the response cache, no HTTP request made
    demo: bool = False  # written by the offline demo server, not by a model: it costs nothing
    batch: bool = False  # answered through the Batch API: billed at its price (models.BATCH_PRICE_SHARE)
    request: dict[str, Any] = field(default_factory=dict, repr=False)  # model + params sent (no key)
    # The tool calls made, in order, over every round; usage and cost above are summed over them.
    calls: list[ToolCall] = field(default_factory=list)
    rounds: int = 1  # requests the answer took: one, plus one after each round of tool calls
    # ask(schema=...): the validated object (a model or dataclass instance; a dict for a TypedDict
    # or a JSON Schema), None when there is none; refusal: the model's refusal text (no answer).
    parsed: Any = None
    refusal: str | None = None
    # Turns of the history left out of the prompt to fit the window (see ``Chatbot.prepare``); the
    # endpoint's system_fingerprint and the seed sent, which say whether an answer can be reproduced.
    trimmed_turns: int = 0
    system_fingerprint: str | None = None
    seed: int | None = None

    @property
    def notice(self) -> str | None:
        """A short line to show the user when the answer is not a clean, complete one."""
        if self.refusal is not None and self.status == "complete":
            return f"the model refused to answer: {' '.join(self.refusal.split())}"
        params = self.request.get("params")
        answered = None
        if self.usage is not None and self.usage.source == "reported" and self.rounds == 1:
            answered = self.usage.completion_tokens  # the endpoint's own count of the one request's answer
        return status_notice(self.status, self.error, params=params if isinstance(params, Mapping) else None,
                             answered=answered, has_text=bool(self.text))

    def __repr__(self) -> str:
        """Short, for a notebook cell that ends with ``bot.ask(...)``: model, status, tokens, cost
        and the start of the text, every piece from the endpoint repr-escaped (never the request,
        so never anything of the key)."""
        model = self.model if _PLAIN_NAME.fullmatch(self.model) else repr(self.model)
        facts = [f"{model} {self.status}"]
        if self.usage is not None:
            facts.append(f"{self.usage.completion_tokens:,} tokens")
        if self.from_cache:
            facts.append("from cache")
        elif self.cost is not None:
            facts.append(format_cost(self.cost))
        if self.calls:
            facts.append(f"{len(self.calls)} tool call{'s' if len(self.calls) != 1 else ''}")
        if self.parsed is not None:
            facts.append(f"parsed {type(self.parsed).__name__}")
        shown = self.text if self.refusal is None else self.refusal
        text = repr(shown[:REPR_TEXT]) + ("…" if len(shown) > REPR_TEXT else "")  # the cut outside the quotes
        return f"<Reply {', '.join(facts)}: {'refusal ' if self.refusal is not None else ''}{text}>"


@runtime_checkable
class ReplySink(Protocol):
    """Receives an answer while it streams. Called from the thread that runs ``ask``.

    ``start`` once when the request is sent, ``write`` for each text delta in order, ``finish``
    exactly once at the end whatever happened (complete, truncated, interrupted or failed).
    """

    def start(self, model: str) -> None: ...

    def write(self, text: str) -> None: ...

    def finish(self, reply: Reply) -> None: ...


class LiveSink:
    """What every streaming view shares: deltas collected, and one ``Repainter`` deciding when to show them.

    ``write`` only appends the delta and tells the repainter; the repainter calls ``_paint`` (at
    most once per ``interval``, and once more after the writer stalls, so what is shown never lags
    behind by much more than an interval). Subclasses say what is shown: ``_show_start``,
    ``_paint`` and ``_show_final``, all under the repainter's lock. ``finish`` stops repainting and
    shows the final state exactly once. A sink is a context manager: leaving the ``with`` block
    (or ``close()``) stops the repainter's thread even when ``finish`` never ran.
    """

    def __init__(self, *, interval: float = DEFAULT_INTERVAL, trailing: bool = True,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._repainter = Repainter(self._paint, interval=interval, trailing=trailing, clock=clock)
        self._parts: list[str] = []  # written, not yet collected (write() never takes the lock)
        self._text = ""  # collected so far
        self._finished = False

    def __enter__(self) -> LiveSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self, model: str) -> None:
        with self._repainter.lock:
            if not self._finished:
                self._show_start(model)
        self._repainter.start()

    def write(self, text: str) -> None:
        if text:
            now = self._clock()
            self._arrived(text, now)
            self._parts.append(text)
            self._repainter.changed(now)

    def finish(self, reply: Reply) -> None:
        self._repainter.stop()
        with self._repainter.lock:  # a repaint in the helper thread must not land after this
            if self._finished:
                return
            self._finished = True
            self._collect()
            self._show_final(reply)

    def close(self) -> None:
        """Stop repainting and the helper thread (the final display is ``finish``'s job). Idempotent."""
        self._repainter.stop()

    @property
    def text(self) -> str:
        """Everything written so far."""
        with self._repainter.lock:
            self._collect()
            return self._text

    def _collect(self) -> str:
        """Move what ``write`` left into ``_text``; return the part that was new."""
        n = len(self._parts)
        if not n:
            return ""
        new = "".join(self._parts[:n])
        del self._parts[:n]
        self._text += new
        return new

    # -- what a view shows (under the repainter's lock) -----------------------------------------
    def _arrived(self, text: str, now: float) -> None:
        """A delta arrived at ``now`` (called in the writer's thread, before it is queued)."""

    def _show_start(self, model: str) -> None:
        """The request is on its way to ``model``."""

    def _paint(self) -> bool | float | None:
        """Show what has arrived; see ``Repainter.flush`` for what the result means."""
        raise NotImplementedError

    def _show_final(self, reply: Reply) -> None:
        """Show the finished answer (``_text`` holds everything written)."""
        raise NotImplementedError


class PrintSink(LiveSink):
    """Plain streamed text for scripts, terminals and ``-f text``: no escape codes.

    The text is written and flushed on the repaint policy of every view (at most every
    ``interval`` seconds, and once more when the stream stalls, and at the end): in a kernel each
    flush is an IOPub message, and one per token would flood the channel on a fast stream.
    """

    def __init__(self, stream: TextIO | None = None, *, interval: float = DEFAULT_INTERVAL,
                 trailing: bool = True, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(interval=interval, trailing=trailing, clock=clock)
        self._stream = stream
        self._written = 0  # characters of ``_text`` written to the stream

    @property
    def stream(self) -> TextIO:
        return self._stream if self._stream is not None else sys.stdout

    def _paint(self) -> None:
        self._collect()
        if self._written < len(self._text):
            self.stream.write(self._text[self._written:])
            self._written = len(self._text)
            self.stream.flush()

    def _show_final(self, reply: Reply) -> None:
        out = self.stream
        out.write(self._text[self._written:])
        self._written = len(self._text)
        if reply.text and not reply.text.endswith("\n"):
            out.write("\n")
        if reply.notice and reply.status != "failed":
            out.write(f"[{reply.notice}]\n")
        out.flush()


class NullSink:
    """Discards the stream (benchmarks, callers that only want the returned Reply)."""

    def __enter__(self) -> NullSink:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def start(self, model: str) -> None:
        pass

    def write(self, text: str) -> None:
        pass

    def finish(self, reply: Reply) -> None:
        pass

    def close(self) -> None:
        pass


# Where Chatbot.ask streams when it is given no sink. The core knows plain text only; the top-level
# package installs a hook that returns the notebook's live Markdown sink inside a Jupyter kernel
# (and None elsewhere), so the core itself never imports IPython.
_default_sink_hook: Callable[[], ReplySink | None] | None = None


def set_default_sink_hook(hook: Callable[[], ReplySink | None] | None) -> None:
    """Install ``hook`` (None removes it): called for each ``ask`` without a sink, it returns the
    sink to use, or None for plain text (``PrintSink``)."""
    global _default_sink_hook
    _default_sink_hook = hook


def default_sink() -> ReplySink:
    """The sink for an ``ask`` given none: the hook's (live Markdown in a notebook), else plain text."""
    hook = _default_sink_hook
    sink = hook() if hook is not None else None
    return sink if sink is not None else PrintSink()
