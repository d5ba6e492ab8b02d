"""Several models answer one question side by side: ``%%chat -m gpt-4o -m claude-sonnet-4-5 -m
ollama:llama3.2``, or ``compare([bot_a, bot_b], question)`` from Python.

In the magics each model answers in a session of its own, ``{session}/{model}`` (``default/gpt-4o``),
pinned to that model: its first use starts it as a copy of the session's conversation (system
message and turns), so a comparison continues where the conversation is; from then on each model
keeps its own thread (its own answers), which ``%%chat -s default/gpt-4o`` continues with that model
alone and ``--new`` starts afresh. The session itself is left as it was.

The answers stream concurrently (one thread per model, each an ordinary ``Chatbot.ask``) into one
cell output: a grid of columns, one per model, redrawn on the repaint policy of every streaming
view (a ``Repainter``: about ten times a second, not per token). Each column ends with its footer
(tokens, time, time to the first token, cost: the one footer's facts) or its one-line error.
Each column is display-safe: its Markdown becomes HTML through the panel's sanitizer
(``html.markdown_to_html``: raw HTML shown as text, an nh3 allow-list), its model name and footer
are escaped; the rest of the grid is our own markup. The exact answers stay in the replies (and,
in the magic, ``_chat``). Stop (the kernel's interrupt) stops every answer at once: each keeps its
partial text, marked, as a single answer does.
"""

from __future__ import annotations

import contextvars
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol

from ..core.errors import ChatError, one_line
from ..core.repaint import DEFAULT_INTERVAL, Repainter
from ..core.reply import Reply
from .footer import footer_facts
from .html import escape, markdown_to_html
from .markdown_partial import close_open
from .publish import Bundle, DisplayPublisher, IPythonPublisher, in_notebook_kernel, updates_shown

if TYPE_CHECKING:
    from ..core.chatbot import Chatbot
    from ..core.sessions import Sessions

__all__ = ["Column", "CompareHost", "CompareView", "ask_models", "compare", "model_sessions", "session_name"]

JOIN_SLICE = 0.05  # seconds between checks while waiting for the answers (a Ctrl-C lands within one)
GRID_STYLE = ("display: grid; grid-template-columns: repeat(auto-fit, minmax(240px, 1fr)); gap: 10px; "
              "align-items: start;")
COLUMN_STYLE = ("border: 1px solid var(--jp-border-color2, #e0e0e0); border-radius: 6px; padding: 4px 10px; "
                "min-width: 0; overflow-x: auto; overflow-wrap: anywhere;")
LABEL_STYLE = "font-size: 12px; font-weight: 600; color: var(--jp-ui-font-color1, #333); margin: 2px 0 4px;"
NOTE_STYLE = "font-size: 11px; color: var(--jp-ui-font-color2, #666); margin: 4px 0 2px;"
WARN_STYLE = "font-size: 12px; font-style: italic; color: #b35c00; margin: 4px 0 2px;"


@dataclass
class Column:
    """One model's column: the ``ReplySink`` its answer streams into, and how it ended."""

    view: CompareView
    label: str  # the model as asked ("ollama:llama3.2")
    parts: list[str] = field(default_factory=list)
    started: bool = False
    reply: Reply | None = None
    error: str | None = None  # a one-line error raised by ask (before or while sending)

    # -- ReplySink (called from the column's own thread) ------------------------------------------
    def start(self, model: str) -> None:
        self.started = True
        self.view.changed()

    def write(self, text: str) -> None:
        if text:
            self.parts.append(text)
            self.view.changed()

    def finish(self, reply: Reply) -> None:
        self.reply = reply
        self.view.changed()

    @property
    def text(self) -> str:
        return "".join(list(self.parts))


class CompareView:
    """The grid of columns in one output, repainted in place on one ``Repainter``.

    ``start`` shows the columns waiting; the columns' writes repaint it (from their threads, under
    the repainter's lock); ``finish`` shows the final state exactly once. Where updates do not reach
    the screen (terminal IPython, an ipywidgets ``Output``) only the final state is shown.
    """

    def __init__(self, labels: Sequence[str], *, footer: bool = True, interval: float = DEFAULT_INTERVAL,
                 publisher: DisplayPublisher | None = None, live: bool | None = None) -> None:
        self.columns = [Column(self, label) for label in labels]
        self.footer = footer
        self._publisher = publisher
        self._live = live
        self._id = f"llmchat-compare-{uuid.uuid4().hex[:10]}"
        self._shown: Bundle | None = None
        self._repainter = Repainter(self._paint, interval=interval)
        self._finished = False

    def start(self) -> None:
        with self._repainter.lock:
            if self.live:
                self._show(self.bundle())
        self._repainter.start()

    def changed(self) -> None:
        if self.live:
            self._repainter.changed()

    def finish(self) -> None:
        """Stop repainting and show every column's final state (once)."""
        self._repainter.stop()
        with self._repainter.lock:
            if self._finished:
                return
            self._finished = True
            final = self.bundle()
            if self.live or in_notebook_kernel() or self._publisher is not None:
                self._show(final)
            else:  # terminal IPython: the answers as text
                print(final["text/plain"])

    @property
    def live(self) -> bool:
        if self._live is None:
            self._live = (self._publisher is not None or in_notebook_kernel()) and updates_shown(self._publisher_())
        return self._live

    # -- what is shown -----------------------------------------------------------------------------
    def bundle(self) -> Bundle:
        """The grid as our HTML, and every answer as plain text for front ends without HTML."""
        columns = "".join(self._column_html(column) for column in self.columns)
        plain = "\n\n".join(self._column_text(column) for column in self.columns)
        return {"text/html": f'<div class="llmchat-compare" style="{GRID_STYLE}">{columns}</div>',
                "text/plain": plain}

    def _column_html(self, column: Column) -> str:
        text = column.text
        reply = column.reply
        body = markdown_to_html(text if reply is not None else close_open(text)) if text else ""
        notes = ""
        if reply is not None:
            notice = reply.notice
            if notice:
                notes += f'<div class="llmchat-notice" style="{WARN_STYLE}">⚠ {escape(notice)}</div>'
            if self.footer and _described(reply):
                facts = " · ".join(footer_facts(reply, first_token=True))
                notes += f'<div class="llmchat-footer" style="{NOTE_STYLE}">{escape(facts)}</div>'
        elif column.error is not None:
            notes = f'<div class="llmchat-notice" style="{WARN_STYLE}">⚠ {escape(column.error)}</div>'
        elif not text:
            state = "answering…" if column.started else "waiting…"
            notes = f'<div style="{NOTE_STYLE}"><i>{state}</i></div>'
        return (f'<div class="llmchat-column" style="{COLUMN_STYLE}">'
                f'<div class="llmchat-column-model" style="{LABEL_STYLE}">{escape(column.label)}</div>'
                f'<div class="llmchat-column-answer">{body}</div>{notes}</div>')

    def _column_text(self, column: Column) -> str:
        lines = [f"── {column.label} ──"]
        if column.text:
            lines.append(column.text)
        reply = column.reply
        if reply is not None:
            if reply.notice:
                lines.append(f"[{reply.notice}]")
            if self.footer and _described(reply):
                lines.append("[" + " · ".join(footer_facts(reply, first_token=True)) + "]")
        elif column.error is not None:
            lines.append(f"[{column.error}]")
        return "\n".join(lines)

    def _paint(self) -> None:
        if not self._finished:
            self._show(self.bundle())

    def _show(self, data: Bundle) -> None:
        if data != self._shown:
            created = self._shown is not None
            self._shown = data
            self._publisher_().show(self._id, data, update=created)

    def _publisher_(self) -> DisplayPublisher:
        if self._publisher is None:
            self._publisher = IPythonPublisher()
        return self._publisher


def compare(bots: Sequence[Chatbot], question: str, *, labels: Sequence[str] | None = None,
            footer: bool = True, publisher: DisplayPublisher | None = None,
            interval: float = DEFAULT_INTERVAL, **ask: Any) -> list[Column]:
    """Ask every bot ``question`` at once, the answers side by side in one output; the columns
    (each with its ``reply``, or the ``error`` that stopped it before it began) in order.

    ``labels``: the column headings (default: each bot's model). ``ask``: what each ``ask`` gets
    (images, history, temperature, ...). KeyboardInterrupt stops every answer; each keeps its text.
    """
    view = CompareView(labels or [bot.model for bot in bots], footer=footer, interval=interval,
                       publisher=publisher)
    done = [threading.Event() for _ in bots]
    threads = [_thread(partial(_answer, bot, column, question, ask, ended))
               for bot, column, ended in zip(bots, view.columns, done)]
    view.start()
    try:
        for thread in threads:
            thread.start()
        _wait(done)
    except KeyboardInterrupt:
        for bot in bots:
            bot.stop()  # every answer ends within a moment, its partial text kept and marked
        _wait(done)
    finally:
        view.finish()
    return view.columns


def _described(reply: Reply) -> bool:
    """Whether a column's footer describes an answer: not for one that failed before any text (its
    notice, with the error, is all there is to say), as the cell's footer."""
    return not (reply.status == "failed" and not reply.text)


def _thread(work: Callable[[], None]) -> threading.Thread:
    # In the caller's context: ipykernel routes what the thread shows to the cell that asked.
    context = contextvars.copy_context()
    return threading.Thread(target=context.run, args=(work,), name="llmchat-compare", daemon=True)


def _answer(bot: Chatbot, column: Column, question: str, ask: dict[str, Any], ended: threading.Event) -> None:
    try:
        bot.ask(question, sink=column, **ask)
    except ChatError as error:
        column.error = str(error)
    except Exception as bug:  # a bug shows in its column; the other answers go on
        column.error = one_line(f"{type(bug).__name__}: {bug}")
    finally:
        ended.set()
        column.view.changed()


def _wait(done: Sequence[threading.Event]) -> None:
    """Wait for every answer. Events, not ``Thread.join``: a join that a Ctrl-C interrupts can leave
    its thread taken for ended while it still runs (CPython before 3.13), and the answer unshown."""
    for ended in done:
        while not ended.wait(JOIN_SLICE):
            pass


# -- the magics' side: a session per model ------------------------------------------------------------
class CompareHost(Protocol):
    """What comparing needs of the magics (a Protocol: this module does not import them)."""

    @property
    def sessions(self) -> Sessions: ...

    def session(self, name: str = ..., *, create: bool = True) -> Chatbot: ...

    def pin(self, session: str, **values: Any) -> None: ...


def session_name(session: str, model: str) -> str:
    """The session a model answers in when compared: ``default/gpt-4o``."""
    return f"{session}/{model}"


def model_sessions(host: CompareHost, session: str, models: Sequence[str], *, copy: bool = True) -> list[Chatbot]:
    """Each model's session, pinned to its model; one made now starts as a copy of ``session``'s
    conversation (its system message and turns) unless ``copy`` is False."""
    base = host.sessions.get(session) if session in host.sessions else None
    bots = []
    for model in models:
        name = session_name(session, model)
        made = name not in host.sessions
        if made and copy and base is not None:
            host.pin(name, model=model, system=base.system)
        else:
            host.pin(name, model=model)
        bot = host.session(name)
        if made and copy and base is not None and base.history:
            conversation = bot.conversation
            for message in base.history:
                conversation.append(message)  # recorded in the new session's store as it is added
            conversation.recount(conversation.counter)  # counted as this model counts
        bots.append(bot)
    return bots


def ask_models(host: CompareHost, models: Sequence[str], question: str, *, session: str, new: bool = False,
               history: bool = True, dry_run: bool = False, footer: bool = True, **ask: Any) -> dict[str, Any]:
    """``%%chat -m a -m b``: every model's answer side by side, each in its own session (see the module
    docstring); what ``_chat`` holds: model -> answer text (None for one that failed before its first
    text), or with ``dry_run`` model -> its ``estimate`` (printed, nothing sent)."""
    if dry_run:  # no session is made: one not made yet would start as a copy of ``session``
        estimates = {}
        for model in models:
            name = session_name(session, model)
            if name in host.sessions:
                estimates[model] = host.session(name).estimate(question, history=history and not new, **ask)
            else:
                estimates[model] = host.session(session).estimate(question, model=model, history=history and not new,
                                                                   **ask)
        print("\n\n".join(str(estimate) for estimate in estimates.values()))
        return estimates
    bots = model_sessions(host, session, models, copy=not new)
    if new:
        for bot in bots:
            bot.reset()
    columns = compare(bots, question, labels=models, footer=footer, history=history, **ask)
    return {column.label: column.reply.text if column.reply is not None and column.reply.text else None
            for column in columns}
