"""The conversation: a pinned system message and a deque of turns, trimmed to a token budget.

A turn is a user message and everything after it until the next user message: the answer, and
with tools the assistant messages that asked for calls and the "tool" messages holding their
results. Trimming keeps or drops whole turns, so a tool message is never sent without the
assistant message that called it (OpenAI rejects such an orphan with a 400).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator

from .errors import PromptTooLongError
from .messages import ImageRef, Message, MessageStatus, Role, ToolRequest, clean_text
from .reply import Usage
from .tokens import TokenCounter

# Listener events: ("append", message), ("clear", None), ("system", system message or None).
Listener = Callable[[str, "Message | None"], None]


class Conversation:
    """History kept in ``deque(maxlen=max_history)``; the system message lives apart, never trimmed.

    Every message is counted once, when it is made, so choosing what fits costs one pass over
    the turns that are kept, not a re-encoding of the history. The system message is counted
    when it is first needed, so making a conversation loads no vocabulary.
    """

    def __init__(self, counter: TokenCounter, *, system: str | None = None,
                 max_history: int | None = None) -> None:
        self.counter = counter
        self.messages: deque[Message] = deque(maxlen=max_history)
        self.listeners: list[Listener] = []
        self._system_text: str | None = None
        self._system: Message | None = None  # counted on first use
        self.system = system

    @property
    def max_history(self) -> int | None:
        return self.messages.maxlen

    @property
    def system(self) -> str | None:
        return self._system_text

    @system.setter
    def system(self, text: str | None) -> None:
        self._system_text = clean_text(text) if text else None
        self._system = None
        if self.listeners:
            self._notify("system", self.system_message)

    @property
    def system_message(self) -> Message | None:
        if self._system is None and self._system_text:
            self._system = self.make("system", self._system_text)
        return self._system

    def make(self, role: Role, text: str, *, images: Iterable[ImageRef] = (), name: str | None = None,
             status: MessageStatus = "complete", model: str | None = None, usage: Usage | None = None,
             tool_calls: Iterable[ToolRequest] = (), tool_call_id: str | None = None) -> Message:
        """A message counted with this conversation's counter (its text cleaned: ``clean_text``)."""
        return make_message(self.counter, role, text, images=images, name=name, status=status, model=model,
                            usage=usage, tool_calls=tool_calls, tool_call_id=tool_call_id)

    def draft(self, role: Role, text: str, *, images: Iterable[ImageRef] = ()) -> Message:
        """A message whose ``tokens`` is an upper bound (``TokenCounter.bound_message``), made
        without loading a vocabulary; ``make`` gives the exact count."""
        images = tuple(images)
        text = clean_text(text)
        bound = self.counter.bound_message(role, text, images=[image.size_triple() for image in images])
        return Message(role, text, bound, images)

    def system_draft(self) -> Message | None:
        """The system message, counted if that is free, else with an upper bound (see ``draft``)."""
        if self._system is not None or not self._system_text or self.counter.ready:
            return self.system_message
        return self.draft("system", self._system_text)

    def append(self, message: Message) -> None:
        self.messages.append(message)
        self._notify("append", message)

    def clear(self) -> None:
        self.messages.clear()
        self._notify("clear", None)

    def recount(self, counter: TokenCounter) -> None:
        """Switch to another model's counter (another encoding or image rule): count everything again."""
        self.counter = counter
        self._system = None  # counted again on first use
        self.messages = deque((m.with_tokens(count_message(counter, m)) for m in self.messages),
                              maxlen=self.messages.maxlen)

    def turns(self) -> Iterator[list[Message]]:
        """Turns from newest to oldest; a turn is a user message and the replies that answered it.

        Assistant messages with no user message before them (left by ``max_history`` eviction)
        are orphans and are not yielded.
        """
        turn: list[Message] = []
        for message in reversed(self.messages):
            turn.append(message)
            if message.role == "user":
                turn.reverse()
                yield turn
                turn = []

    def window(self, question: Message, budget: int, *, history: bool = True,
               system: Message | bool | None = True,
               fixes: Callable[[int], str] | None = None, reserved: int = 0) -> list[Message]:
        """The messages to send: system, then the newest whole turns that fit, then ``question``.

        ``budget`` is the most prompt tokens allowed, ``reserved`` of them taken by what is sent
        beside the messages (tool definitions). Raises PromptTooLongError, before anything is
        sent, if the system message and the question alone do not fit; ``fixes(needed)`` says what
        would help (default: the general list).
        """
        system_message = self.system_message if system is True else (system or None)
        needed = (self.counter.reply_priming + question.tokens + (system_message.tokens if system_message else 0)
                  + reserved)
        if needed > budget:
            system_part = f"system {system_message.tokens:,} + " if system_message else ""
            system_part += f"tool definitions {reserved:,} + " if reserved else ""
            advice = fixes(needed) if fixes else ("shorten it, lower max_tokens, or raise prompt_token_limit / "
                                                  "context_window")
            raise PromptTooLongError(
                f"the question needs {needed:,} prompt tokens ({system_part}question {question.tokens:,} "
                f"+ {self.counter.reply_priming} reply priming) but the budget is {budget:,}; {advice}",
                needed=needed, budget=budget)
        kept: list[list[Message]] = []
        if history:
            room = budget - needed
            for turn in self.turns():
                cost = sum(message.tokens for message in turn)
                if cost > room:
                    break  # oldest turns go first: stop at the first that does not fit
                room -= cost
                kept.append(turn)
        window = [system_message] if system_message else []
        for turn in reversed(kept):
            window.extend(turn)
        window.append(question)
        return window

    def prompt_tokens(self, window: list[Message]) -> int:
        return self.counter.reply_priming + sum(message.tokens for message in window)

    def append_turn(self, messages: Iterable[Message]) -> None:
        """Append a whole turn (a question and its answer, with tool calls and results)."""
        for message in messages:
            self.append(message)

    def _notify(self, event: str, message: Message | None) -> None:
        for listener in list(self.listeners):
            listener(event, message)

    def __len__(self) -> int:
        return len(self.messages)

    def __repr__(self) -> str:
        return (f"Conversation({len(self.messages)} messages, system={self._system_text is not None}, "
                f"max_history={self.max_history})")


def make_message(counter: TokenCounter, role: Role, text: str, *, images: Iterable[ImageRef] = (),
                 name: str | None = None, status: MessageStatus = "complete", model: str | None = None,
                 usage: Usage | None = None, tool_calls: Iterable[ToolRequest] = (),
                 tool_call_id: str | None = None) -> Message:
    """A message counted exactly with ``counter``, its text cleaned (``clean_text``)."""
    message = Message(role, clean_text(text), 0, tuple(images), name, status, model, usage,
                      tool_calls=tuple(tool_calls), tool_call_id=tool_call_id)
    return message.with_tokens(count_message(counter, message))


def count_message(counter: TokenCounter, message: Message) -> int:
    """The tokens ``message`` adds to a prompt: role, text, name, images, tool calls, the id of
    the call a tool message answers (counted like a name)."""
    tokens = counter.count_message(message.role, message.text, name=message.name or message.tool_call_id,
                                   images=[image.size_triple() for image in message.images])
    if message.tool_calls:
        tokens += counter.count_calls(message.tool_calls)
    return tokens


def drop_oldest_turns(window: list[Message], tokens: int) -> list[Message] | None:
    """``window`` (system, history turns, question) without its oldest whole turns, as few as free
    ``tokens``; None when dropping every turn of the history would not free enough."""
    start = 1 if window and window[0].role == "system" else 0
    end = len(window) - 1  # the question stays
    freed = 0
    cut = start
    while freed < tokens:
        if cut >= end:
            return None
        freed += window[cut].tokens
        cut += 1
        while cut < end and window[cut].role != "user":  # the rest of that turn goes with it
            freed += window[cut].tokens
            cut += 1
    return window[:start] + window[cut:]
