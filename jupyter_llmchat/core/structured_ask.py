"""``Chatbot.ask(question, schema=...)``: the answer as a validated object, with one repair round.

The question goes out with the ``response_format`` of ``structured.response_format_for`` (strict
``json_schema``, or JSON mode with the schema added to the system message). A complete answer is
parsed into ``Reply.parsed``. One that does not validate gets one repair round: the validation
error is sent back and the model answers again (both rounds are ordinary asks: recorded in the
history when ``history`` is on, each in the ledger); if that answer fails too,
``StructuredAnswerError`` says why and holds the raw text. An answer cut at a token limit or stopped
by the content filter is never parsed (``StructuredAnswerError`` with reason "truncated" or
"filtered"); a refusal comes back as ``Reply.refusal`` with nothing parsed; a stopped answer as
"interrupted", as any answer.

The sink sees one answer: ``start`` once, the text of each round as it streams (a note between
rounds), and ``finish`` once, with the final Reply (its ``parsed`` set, usage and cost summed over
the rounds), so a view can show the object.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, Protocol

from .errors import ConfigurationError, StructuredAnswerError, one_line
from .models import model_info
from .reply import Reply, ReplySink, Usage, default_sink
from .structured import answer_schema, parse_answer, response_format_for, schema_instruction

__all__ = ["Rounds", "ask_structured", "check_answer"]

EXCERPT = 80  # characters of the raw answer quoted in the final error


class Asker(Protocol):
    """What ``ask_structured`` needs of a Chatbot (a Protocol: this module does not import chatbot)."""

    context_window: int | None

    @property
    def model(self) -> str: ...

    @property
    def system(self) -> str | None: ...

    def ask(self, question: str, *, images: Sequence[Any] = (), sink: ReplySink | None = None,
            history: bool = True, **overrides: Any) -> Reply: ...


def ask_structured(bot: Asker, question: str, schema: Any, *, images: Sequence[Any] = (),
                   sink: ReplySink | None = None, history: bool = True, **overrides: Any) -> Reply:
    """``bot.ask(question)`` answered as ``schema`` (see the module docstring)."""
    spec = answer_schema(schema)  # a bad schema is one line, before anything is sent
    if overrides.get("response_format") is not None:
        raise ConfigurationError("schema= sets response_format itself: leave response_format out")
    info = model_info(overrides.get("model") or bot.model, context_window=bot.context_window)
    params, strict = response_format_for(spec, info)
    asked = {**overrides, **params}
    if not strict:  # JSON mode: the model learns the schema from the system message
        asked["system"] = _with_instruction(schema_instruction(spec), overrides.get("system", True), bot.system)
    rounds = Rounds(sink if sink is not None else default_sink())
    replies: list[Reply] = []
    final: Reply | None = None

    def ask_checked(text: str, with_images: Sequence[Any]) -> StructuredAnswerError | None:
        """One round: ask and parse; the validation error when the answer does not match (any
        other failure raises)."""
        replies.append(bot.ask(text, images=with_images, sink=rounds, history=history, **asked))
        try:
            check_answer(replies[-1], spec)
        except StructuredAnswerError as invalid:
            if invalid.reason != "invalid":
                raise
            return invalid
        return None

    try:
        invalid = ask_checked(question, images)
        if invalid is not None:
            rounds.note(f"the answer did not match {spec.name} ({invalid}); asking once more")
            repair, repair_images = _repair_question(question, replies[-1].text, str(invalid), images, history)
            again = ask_checked(repair, repair_images)
            if again is not None:
                excerpt = one_line(again.text, EXCERPT)
                raise StructuredAnswerError(
                    one_line(f"{again} (after one repair round; the raw answer is in .text: {excerpt!r})", 400),
                    text=again.text) from None
        final = _combined(replies)
        return final
    except StructuredAnswerError as failed:
        final = failed.reply = _combined(replies)
        raise
    finally:
        if final is None and rounds.last is not None:  # an ask raised: show what came
            final = _combined([*replies, *([rounds.last] if all(r is not rounds.last for r in replies) else [])])
        if final is not None:
            rounds.end(final)


def check_answer(reply: Reply, schema: Any) -> None:
    """Set ``reply.parsed`` from a complete answer; a refusal or a stopped answer stays unparsed;
    an answer cut short, filtered or invalid raises StructuredAnswerError (with ``reply`` attached)."""
    if reply.refusal is not None or reply.status == "interrupted":
        return
    if reply.status != "complete":  # truncated: the notice names the limit (max_tokens, or another)
        raise StructuredAnswerError(f"nothing was parsed: {reply.notice or reply.status}", text=reply.text,
                                    reason=reply.status, reply=reply)
    try:
        reply.parsed = parse_answer(reply.text, schema)
    except StructuredAnswerError as invalid:
        invalid.reply = reply
        raise


class Rounds:
    """The sink of every round, shown as one answer: ``start`` reaches the real sink once, each
    round's text is written to it, and a round's ``finish`` is held until ``end`` gives the final Reply."""

    def __init__(self, sink: ReplySink) -> None:
        self.sink = sink
        self.last: Reply | None = None  # the Reply of the latest round
        self._started = False
        self._ended = False

    def __getattr__(self, name: str) -> Any:
        # What else the real sink offers (a cell's tool-call view and approval buttons) stays offered.
        if name == "sink":  # not set yet: no recursion
            raise AttributeError(name)
        return getattr(self.sink, name)

    def start(self, model: str) -> None:
        if not self._started:
            self._started = True
            self.sink.start(model)

    def write(self, text: str) -> None:
        self.sink.write(text)

    def finish(self, reply: Reply) -> None:
        self.last = reply

    def note(self, text: str) -> None:
        """A line between rounds, in the stream (views show the final answer alone once it ends)."""
        self.sink.write(f"\n\n[{text}]\n\n")

    def end(self, reply: Reply) -> None:
        """Finish the real sink with the final Reply, once."""
        if self._ended:
            return
        self._ended = True
        if not self._started:
            self.start(reply.model)
        self.sink.finish(reply)


def _with_instruction(instruction: str, system: Any, default: str | None) -> str:
    """The system message for JSON mode: the one this question uses, then the schema instruction."""
    base = default if system is True else (system if isinstance(system, str) else None)
    return f"{base}\n\n{instruction}" if base else instruction


def _repair_question(question: str, answer: str, error: str, images: Sequence[Any],
                     history: bool) -> tuple[str, Sequence[Any]]:
    """What the repair round asks. With the history on, the first answer is in it; without, the
    question and the answer are quoted (and the images sent again)."""
    ask_again = f"That answer is not valid: {error}. Reply with only the corrected JSON object."
    if history:
        return ask_again, ()
    return f"The question was:\n{question}\n\nYour answer was:\n{answer}\n\n{ask_again}", images


def _combined(replies: list[Reply]) -> Reply:
    """The final Reply of several rounds: the last one, with usage, cost and time summed over all."""
    last = replies[-1]
    if len(replies) == 1:
        return last
    usages = [r.usage for r in replies if r.usage is not None]
    usage = Usage(sum(u.prompt_tokens for u in usages), sum(u.completion_tokens for u in usages),
                  sum(u.cached_tokens for u in usages),
                  "counted" if any(u.source == "counted" for u in usages) else "reported") if usages else None
    costs = [r.cost for r in replies]
    cost = None if any(c is None for c in costs) else sum(c for c in costs if c is not None)
    return dataclasses.replace(
        last, usage=usage, cost=cost, total_time=sum(r.total_time for r in replies),
        time_to_first_token=replies[0].time_to_first_token, rounds=sum(r.rounds for r in replies),
        request={**last.request, "repair_rounds": len(replies) - 1})
