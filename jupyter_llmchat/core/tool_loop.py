"""The tool loop: the model's calls run, their results go back, and the model goes on.

``Chatbot.ask(..., tools=...)`` streams one completion per round (its text to the sink, as any
answer). When a round ends asking for tool calls (several at once included), ``run_calls`` runs
them here, in the order the model gave them, one at a time (tools may share state), and their
results go back as "tool" messages for the next round, until the model answers in text or
``max_tool_rounds`` rounds of calls have run (the answer then ends with status "tool_calls",
which its notice says plainly). ``Turn`` keeps what the rounds produced: the messages to send
next and to record, the calls, usage and cost summed over every round.

A call that cannot run never reaches the user as a crash: an unknown tool, malformed or invalid
arguments, a function that raises, each becomes one line the model is told (``ToolCall.error``).

Consent: a Tool made with ``confirm=True`` asks before each call. The asking thread calls the
**approver**: ``approve=`` given to ``ask`` (or to the Chatbot), else the sink's (or observer's)
``approve_tool`` method, else ``terminal_approver`` (a y/N prompt when stdin is a terminal,
otherwise declined: a script has nobody to ask). An approver takes an ``Approval`` (the call, its
tool and checked arguments) and returns True to run the call; a declined call tells the model
"the user declined". An approver that waits (buttons in a cell or the panel) must return as soon
as ``approval.stopped`` is true: ``approval.wait(seconds)`` sleeps until then, for polling.

Stop: ``Chatbot.stop()`` or KeyboardInterrupt end the loop at once, while a round streams, while
a tool runs, or while an approval waits. A sync function runs in a helper thread, so the answer
returns at once; Python cannot stop a thread from outside, so that function runs on to its end
in the background and its result is dropped. An async function is cancelled (CancelledError is
raised inside it). Calls not yet run are not run. What was done stays in the history, so it
stays valid: each call asked for has its tool message.

Events for views (``ToolObserver``; each method optional, on the sink or on ``observer=``),
always called in the thread that runs ``ask``, in this order after a round that asked for calls::

    tool_started(call)      # the model asked for it: id, name, arguments (raw JSON text), round
    approve_tool(approval)  # only for confirm=True tools, when no approve= was given
    tool_finished(call)     # outcome, result or error, seconds, approved
    ...                     # the same for each of the round's other calls, in order
    round_started(number)   # then the next round is sent (number 2, 3, ...); its text follows

Every call the model asks for gets both events, also one that is never run (outcome "skipped":
the answer was stopped first, or max_tool_rounds was reached). The text of every round streams
through ``sink.write``; a round's text that follows an earlier round's is preceded by a blank
line, so ``Reply.text`` is exactly what was written.

In a kernel, the approver runs in the thread that asks. The chat panel asks from a thread of its
own, so the kernel stays free to deliver button clicks while ``approval.wait`` polls; a ``%%chat``
cell asks from the kernel's own thread, where a click's comm message is handled only between
cells, so an approver there must let the kernel process it while it waits (or ask with
``input()``, which the kernel serves while a cell runs).
"""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import select
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from . import errors
from .chunks import StreamResult
from .conversation import make_message
from .messages import Message, ToolRequest
from .reply import Status, ToolCall, Usage
from .stopping import WAIT_SLICE, Stopped, StopToken, run_stoppable
from .tokens import TokenCounter
from .tools import InvalidArguments, Tool, Toolbox, result_text

DEFAULT_MAX_TOOL_ROUNDS = 8
ROUND_SEPARATOR = "\n\n"  # between the text of two rounds, as written to the sink
DECLINED = "The user declined this call; it was not run."


class ToolObserver(Protocol):
    """What a view may implement (on its sink, or as ``observer=``) to show tool calls; every
    method is optional and is called in the thread that runs ``ask`` (see the module docstring)."""

    def round_started(self, number: int) -> None: ...

    def tool_started(self, call: ToolCall) -> None: ...

    def tool_finished(self, call: ToolCall) -> None: ...


@dataclass
class Approval:
    """One confirm=True call waiting for the user's consent: what an approver is given.

    ``stopped`` turns true when the answer is stopped (Stop, ``Chatbot.stop()``): an approver
    that waits must then return at once (what it returns no longer matters). An approver that
    declines for a reason other than the user's no (nobody could be asked) says why in ``note``.
    """

    call: ToolCall
    tool: Tool
    arguments: dict[str, Any]  # checked against the schema: what the function will get
    token: StopToken = field(repr=False)
    note: str | None = None

    @property
    def stopped(self) -> bool:
        return self.token.stopped

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds`` (less if the answer is stopped); True when it is stopped."""
        event = threading.Event()
        self.token.on_stop(event.set)
        try:
            return event.wait(seconds) or self.token.stopped
        finally:
            self.token.forget(event.set)


Approver = Callable[[Approval], bool]


def terminal_approver(approval: Approval) -> bool:
    """The default approver: ask on the terminal (y/N); where stdin is not a terminal (a script,
    a kernel) nobody can be asked, so the call is declined, and the model is told why."""
    stdin = sys.stdin
    if stdin is None or not _is_terminal(stdin):
        approval.note = ("it needs the user's approval and nobody could be asked (no approve= given and no "
                         "terminal)")
        return False
    sys.stdout.write(f"\nAllow the model to call {approval.call.name}({arguments_preview(approval.call)})? [y/N] ")
    sys.stdout.flush()
    line = _read_line(stdin, approval)
    return line.strip().lower() in ("y", "yes")


def _is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


def _read_line(stdin: Any, approval: Approval) -> str:
    """A line from the terminal, given up on (empty) as soon as the answer is stopped."""
    try:
        fd = stdin.fileno()
    except (AttributeError, ValueError, OSError):
        fd = None
    if fd is None or os.name == "nt":
        return str(stdin.readline())  # no select() on Windows consoles: Ctrl-C still interrupts
    while not approval.stopped:
        ready, _, _ = select.select([fd], [], [], WAIT_SLICE)
        if ready:
            return str(stdin.readline())
    return ""


class ToolEvents:
    """Calls the ToolObserver methods each target has (the sink, the observer), in order."""

    def __init__(self, *targets: Any) -> None:
        self._targets = [target for target in targets if target is not None]

    def round_started(self, number: int) -> None:
        self._tell("round_started", number)

    def tool_started(self, call: ToolCall) -> None:
        self._tell("tool_started", call)

    def tool_finished(self, call: ToolCall) -> None:
        self._tell("tool_finished", call)

    def approver(self) -> Approver | None:
        """The first ``approve_tool`` method among the targets."""
        for target in self._targets:
            method = getattr(target, "approve_tool", None)
            if callable(method):
                return method
        return None

    def _tell(self, name: str, value: Any) -> None:
        for target in self._targets:
            method = getattr(target, name, None)
            if callable(method):
                method(value)


@dataclass
class ToolLoop:
    """How one question runs its tools: which tools, who approves, who is told, how many rounds."""

    toolbox: Toolbox
    approve: Approver
    events: ToolEvents
    max_rounds: int = DEFAULT_MAX_TOOL_ROUNDS


class Turn:
    """What an answer's rounds produced: the messages after the question (assistant messages, with
    the calls they asked for, and tool results), the calls, and usage and cost summed over every
    round. Messages are counted exactly with ``counter`` as they are made."""

    def __init__(self, counter: TokenCounter | None, model: str) -> None:
        self.counter = counter
        self.model = model
        self.messages: list[Message] = []
        self.calls: list[ToolCall] = []
        self.rounds = 0
        self.cached_rounds = 0  # rounds replayed from the response cache
        self.usage: Usage | None = None
        self.cost: float | None = 0.0  # None once a round's price is unknown
        self.logprobs: list[dict[str, Any]] | None = None  # every round's, in order
        self.first_text: float | None = None  # seconds from sending to the first text delta
        self.wrote = False  # text was written to the sink (a later round's text gets a separator)
        self.text_parts: list[str] = []
        self.to_cache: list[tuple[dict[str, Any], Any]] = []  # (request sent, its Reply) per round, saved at the end

    @property
    def text(self) -> str:
        return "".join(self.text_parts)

    @property
    def tokens(self) -> int:
        """Prompt tokens the messages after the question add to the next round."""
        return sum(message.tokens for message in self.messages)

    def api_messages(self) -> list[dict[str, Any]]:
        return [message.to_api() for message in self.messages]

    def add_round(self, usage: Usage | None, cost: float | None, *, from_cache: bool = False,
                  result: StreamResult | None = None) -> None:
        """Count a finished (or ended) round: its usage and cost join the sums."""
        self.rounds += 1
        self.cached_rounds += from_cache
        self.usage = usage if self.usage is None else self.usage.plus(usage)
        self.cost = None if cost is None or self.cost is None else self.cost + cost
        if result is not None and result.logprobs:
            self.logprobs = (self.logprobs or []) + result.logprobs

    def add_asking(self, text: str, requests: Sequence[ToolRequest], *, model: str | None,
                   usage: Usage | None) -> None:
        """Keep a round's assistant message that asked for ``requests``."""
        self.messages.append(self._make("assistant", text, model=model, usage=usage, tool_calls=requests))

    def add_result(self, call: ToolCall) -> None:
        """Keep a finished call and its tool message (the result, or what the model is told instead)."""
        self.calls.append(call)
        self.messages.append(self._make("tool", call.result or "", tool_call_id=call.id))

    def note_unrun(self, requests: Sequence[ToolRequest], why: str) -> None:
        """Keep calls the answer ends without (the history keeps no trace of them: no messages)."""
        for request in requests:
            call = ToolCall(request.id, request.name, request.arguments, round=self.rounds)
            _skip(call, why)
            self.calls.append(call)

    def answer(self, text: str, status: Status, *, model: str | None, usage: Usage | None) -> Message:
        """The final assistant message (not kept here: recorded with the question)."""
        return self._make("assistant", text, status=status, model=model, usage=usage)

    def _make(self, role: Any, text: str, **fields: Any) -> Message:
        if self.counter is None:  # a PreparedRequest always has one; kept for type's sake
            return Message(role, text, 0, **fields)
        return make_message(self.counter, role, text, **fields)


def run_calls(loop: ToolLoop, turn: Turn, requests: Sequence[ToolRequest], token: StopToken) -> None:
    """Run one round's calls in order; each ends as a ToolCall in ``turn`` with its tool message.

    A stop (``token``) or KeyboardInterrupt ends the round at once: the call under way ends
    "stopped", the rest "skipped", and KeyboardInterrupt is raised again for the caller.
    """
    interrupted: KeyboardInterrupt | None = None
    for request in requests:
        call = ToolCall(request.id, request.name, request.arguments, round=turn.rounds)
        loop.events.tool_started(call)
        if interrupted is not None or token.stopped:
            _skip(call, "the user stopped the answer before this call ran")
            turn.add_result(call)
            loop.events.tool_finished(call)
            continue
        try:
            _run_one(loop, call, token)
        except KeyboardInterrupt as interrupt:
            token.stop()
            interrupted = interrupt
            if call.result is None:
                _stopped(call)
        finally:
            turn.add_result(call)
        loop.events.tool_finished(call)
    if interrupted is not None:
        raise interrupted


def skip_calls(turn: Turn, requests: Sequence[ToolRequest], why: str, events: ToolEvents | None = None) -> None:
    """Record ``requests`` as not run (the answer ends without running them), each with its tool
    message, so the history stays valid; views hear of each as of any call."""
    for request in requests:
        call = ToolCall(request.id, request.name, request.arguments, round=turn.rounds)
        if events is not None:
            events.tool_started(call)
        _skip(call, why)
        turn.add_result(call)
        if events is not None:
            events.tool_finished(call)


def _run_one(loop: ToolLoop, call: ToolCall, token: StopToken) -> None:
    made = loop.toolbox.get(call.name)
    if made is None:
        known = ", ".join(loop.toolbox.names) or "none"
        _fail(call, "invalid", f"there is no tool named {call.name!r}; the tools are: {known}")
        return
    try:
        arguments = made.parse(call.arguments)
    except InvalidArguments as problem:
        _fail(call, "invalid", str(problem))
        return
    if made.confirm:
        approval = Approval(call, made, arguments, token)
        try:
            approved = bool(loop.approve(approval))
        except KeyboardInterrupt:
            _stopped(call, "while it waited for the user's approval")
            raise
        if token.stopped:
            _stopped(call, "while it waited for the user's approval")
            return
        call.approved = approved
        if not approved:
            call.outcome, call.error = "declined", approval.note or "the user declined"
            call.result = DECLINED if approval.note is None else f"Not run: {approval.note}."
            return
    started = time.perf_counter()
    try:
        value = run_stoppable(lambda: _execute(made, arguments, token), token, name="llmchat-tool")
    except (Stopped, KeyboardInterrupt) as ended:  # stop(), or Ctrl-C while the asking thread waited
        call.seconds = time.perf_counter() - started
        _stopped(call, "while it ran" + ("; it was cancelled" if made.is_async else
                                         "; the function runs on in the background, its result dropped"))
        if isinstance(ended, KeyboardInterrupt):
            raise
        return
    except Exception as raised:  # the function's own failure: the model is told, the user sees the call
        call.seconds = time.perf_counter() - started
        _fail(call, "error", errors.one_line(f"{type(raised).__name__}: {raised}"))
        return
    call.seconds = time.perf_counter() - started
    call.outcome = "ok"
    call.result = result_text(value, made.max_result_chars)


def _execute(made: Tool, arguments: dict[str, Any], token: StopToken) -> Any:
    """Call the function (in a helper thread); an async one runs in its own event loop here and
    is cancelled when the answer is stopped."""
    value = made.invoke(arguments)
    if not inspect.isawaitable(value):
        return value
    loop = asyncio.new_event_loop()
    try:
        task = loop.create_task(_awaited(value))

        def cancel() -> None:
            loop.call_soon_threadsafe(task.cancel)

        token.on_stop(cancel)
        try:
            return loop.run_until_complete(task)
        finally:
            token.forget(cancel)
    finally:
        loop.close()


async def _awaited(value: Any) -> Any:
    return await value


def _fail(call: ToolCall, outcome: Any, error: str) -> None:
    call.outcome, call.error, call.result = outcome, error, f"Error: {error}"


def _stopped(call: ToolCall, when: str = "while it ran") -> None:
    call.outcome, call.error = "stopped", f"stopped by the user {when}"
    call.result = f"Stopped: the user stopped the answer {when}."


def _skip(call: ToolCall, why: str) -> None:
    call.outcome, call.error, call.result = "skipped", why, f"Not run: {why}."


def arguments_preview(call: ToolCall, limit: int = 200) -> str:
    """The call's arguments on one line, pretty when they are JSON (for views and prompts)."""
    parsed = call.parsed_arguments
    text = json.dumps(parsed, ensure_ascii=False) if parsed is not None else call.arguments
    return errors.one_line(text, limit)
