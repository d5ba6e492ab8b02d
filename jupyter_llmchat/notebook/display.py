"""Stream an answer into a Jupyter cell as live Markdown that stays cheap for any answer length.

The reference recipe, ``DisplayHandle.update(Markdown(answer_so_far))`` per token, resends the
whole answer on every token: IOPub bytes and front-end work grow with the square of its length.
``MarkdownDisplaySink`` instead repaints on time (the ``Repainter`` of every ``LiveSink``; the
first text at once) and freezes finished blocks into outputs of their own (``freezing.FreezePolicy``,
the panel's policy too), so only the live tail is resent.

What is on screen only ever grows while the answer streams: a freeze cuts where the live output
has shown nothing yet, so the frozen output gains text never shown and the next output starts
with text never shown; nothing moves from one output to another (a move shows a block twice, or
not at all, until both messages have arrived), and outputs are never merged. At the end:
- with no frozen piece, the live output itself becomes the exact answer (one update), and a small
  footer follows as its own output;
- in a cell the magic owns with nothing else in it (``cell_watch``), the pieces are swapped for
  ONE output in one step (``clear_output(wait=True)``, then the answer, its text/plain exact and
  the footer at the end of its Markdown: an output added after the swap would make Notebook 7
  box the answer again a moment after unboxing it, see ``_swap``);
- otherwise (``bot.ask`` in a cell that may hold other outputs) the pieces stay, each complete,
  the live one shows the exact tail, and the footer follows as its own output.
Cuts are taken only where the pieces render no taller than the whole (``FreezePolicy(flat_only)``),
so the swap never makes the output jump up. Inside an ipywidgets ``Output``, where front ends drop
updates, only the final answer and footer are shown. No openai imports here; IPython is imported
only when a display is actually published.
"""

from __future__ import annotations

import time
import uuid
from collections import deque
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TextIO

from ..core.repaint import DEFAULT_INTERVAL
from ..core.reply import LiveSink, PrintSink, Reply, ToolCall
from .footer import escape_markdown, footer_markdown
from .freezing import Cut, FreezePolicy
from .markdown_blocks import scan
from .markdown_partial import close_open_counted
from .publish import Bundle, DisplayPublisher, IPythonPublisher, in_notebook_kernel, updates_shown
from .safe_markdown import safe_bundle
from .tool_calls import answer_with_calls, calls_bundle

if TYPE_CHECKING:
    from ..core.tool_loop import Approval
    from .cell_watch import CellWatch
    from .code_cell import CodeCells

__all__ = ["MarkdownDisplaySink", "make_sink"]

_UNSURE = "\0unsure"  # what a slot shows after a send that was interrupted: anything may be there


@dataclass
class _Piece:
    """A stretch ``text[start:end]`` of the answer shown in output slot ``slot``.

    ``prefix`` reopens a fenced block the piece starts inside (a soft cut); ``open_end``: the piece
    ends inside a fenced block, which its display closes; ``end`` is None for the live tail.
    """

    slot: int
    start: int
    end: int | None = None
    prefix: str = ""
    open_end: bool = False


@dataclass
class _CallGroup:
    """Tool calls shown together in output slot ``slot``: those asked for with no answer text between
    them. ``at``: where in the answer they came (the text before it shows above them)."""

    slot: int
    at: int
    calls: list[ToolCall]


class MarkdownDisplaySink(LiveSink):
    """A ``ReplySink`` that renders the streaming answer as live Markdown in a notebook cell.

    ``start`` shows a placeholder (model name, working indicator); ``write`` only collects text
    and lets the repainter decide when to repaint (the first text at once, then at most every
    ``interval`` s); ``finish`` shows the exact answer (see the module docstring for how) and the
    footer as its own output. ``cell``: the watch of the cell the sink owns (``%%chat``), which
    allows the final swap. ``trace`` (for benchmarks) records ``(time, chars shown)`` after each
    repaint. Safe against a KeyboardInterrupt inside ``write``: ``finish`` rebuilds the final
    state from ``reply`` and what each output may show.

    Tool calls (the tool loop's events) show as collapsible blocks (``tool_calls``) in an output of
    their own where they came: the answer's text so far stays above them, what follows streams
    below; ``approve_tool`` asks under them (``approval``). The final swap keeps them in place.
    """

    def __init__(
        self,
        *,
        footer: bool = True,
        interval: float = DEFAULT_INTERVAL,
        plain_text: bool = True,
        max_rate: int = 12,
        freeze_cost: int = 1200,
        soft_min: int = 1024,
        trailing: bool = True,
        publisher: DisplayPublisher | None = None,
        cell: CellWatch | None = None,
        clock: Callable[[], float] = time.monotonic,
        trace: bool = False,
    ) -> None:
        super().__init__(interval=interval, trailing=trailing, clock=clock)
        self.footer = footer
        self.plain_text = plain_text
        # a freeze costs about two display messages (~560 bytes of headers each); cuts only where
        # the pieces are no taller than the whole, so the final swap never shrinks the output
        self.policy = FreezePolicy(freeze_cost=freeze_cost, soft_min=soft_min, max_rate=max_rate, flat_only=True,
                                   clock=clock)
        self.trace: list[tuple[float, int]] | None = [] if trace else None
        self._publisher = publisher
        self._cell = cell
        self._tag = f"llmchat-{uuid.uuid4().hex[:10]}"
        if cell is not None:
            cell.claim(self._tag)
        self._received = 0
        self._arrivals: deque[tuple[float, int]] = deque()  # (time, chars received) per write
        self._slots: list[str] = []  # display ids, in output order
        self._shown: list[str | None] = []  # what each slot shows (None: not created yet)
        self._frozen: list[_Piece] = []
        self._live: _Piece | None = None
        self._shown_end = 0  # the end (offset in the answer) of the text the live slot shows
        self._waiting = False  # no answer text shown yet (the placeholder, if any, is on screen)
        self._updates: bool | None = None  # updates reach the screen (None: not asked yet)
        self._model = ""
        self._groups: list[_CallGroup] = []  # the tool calls shown, in order

    @property
    def frozen_pieces(self) -> list[tuple[int, int]]:
        """(start, end) in the answer of each frozen output, in order (for tests and benchmarks)."""
        return [(p.start, p.end or p.start) for p in self._frozen]

    # -- LiveSink ------------------------------------------------------------------------------
    def _show_start(self, model: str) -> None:
        self._model = model
        if self._live is None and self._live_updates():
            slot = self._new_slot(f"*{escape_markdown(model)} · answering…*")
            self._live = _Piece(slot, 0)
            self._waiting = True

    def _arrived(self, text: str, now: float) -> None:
        self._received += len(text)
        self._arrivals.append((now, self._received))

    def _paint(self) -> float | None:
        """Show what has arrived; if part is held back (a half-typed marker), when it arrived."""
        if self._finished or not self._live_updates():
            return None  # no live view where updates are dropped: the answer shows at the end
        self._collect()
        text = self._text
        if self._live is None:  # write() without start(): no placeholder, start showing now
            self._live = _Piece(self._new_slot(), 0)
            self._waiting = True
        cut = self.policy.cut(text, self._live.start, self._live.prefix, after=self._shown_end)
        if cut is not None:
            self._freeze(cut)
        live = self._live
        markdown, hidden = self._piece_markdown(live)
        hold = self.policy.hold(text, live.start, live.prefix)
        if hold is not None and self._shown_end <= hold < len(text) - hidden:  # may start a cut: not yet
            markdown, held = close_open_counted(live.prefix + text[live.start : hold])
            hidden = len(text) - hold + held
        if markdown:
            self._show(live.slot, markdown)
            self._waiting = False
            self.policy.repainted(len(markdown))
        elif self._waiting:  # all held back (a lone "#"): the placeholder stays, the next delta shows at once
            self._repainter.nothing_shown()
        shown = len(text) - hidden
        self._shown_end = shown
        if self.trace is not None:
            self.trace.append((self._clock(), shown))
        arrivals = self._arrivals
        while arrivals and arrivals[0][1] <= shown:
            arrivals.popleft()
        return arrivals[0][0] if hidden and arrivals else None

    def _show_final(self, reply: Reply) -> None:
        answer = reply.text
        data: Bundle = {"text/markdown": answer} if answer else {}
        if answer and self.plain_text:
            data["text/plain"] = answer
        footer = footer_markdown(reply, facts=self.footer)
        footer_data: Bundle | None = None if footer is None else {"text/markdown": footer[0], "text/plain": footer[1]}
        live = self._live
        groups = self._groups
        for group in groups if self._live_updates() else ():
            self._show_calls(group)  # as they ended (an interrupted send may have left one unsure)
        if not self._live_updates() or live is None or all(shown is None for shown in self._shown):
            if data or groups:  # nothing of ours is on screen: new outputs only
                self._send(self._new_slot(), self._composed(data, None), trusted=bool(groups))
        elif self._frozen and self._owns_cell():
            # the pieces (and the calls between them) become one output in one step
            self._swap(self._composed(data, footer), trusted=bool(groups))
            footer_data = None
        elif self._frozen:
            self._finish_pieces(answer, live)
        elif data:
            self._send(live.slot, data)  # the live output becomes the exact answer
        elif footer_data is not None:
            self._send(live.slot, footer_data)  # no text: the notice takes the placeholder's place
            footer_data = None
        elif self._owns_cell() and not groups:
            self._clear(wait=True)  # no text, nothing to say: the error the magic raises replaces it
        else:
            self._send(live.slot, _failure_line(reply))
        if self.trace is not None:
            self.trace.append((self._clock(), len(answer)))
        if footer_data is not None:
            self._send(self._new_slot(), footer_data)

    # -- tool calls (the tool loop's events, in the asking thread) ------------------------------
    def tool_started(self, call: ToolCall) -> None:
        """A call the model asked for: its block joins the calls shown where the answer is now."""
        with self._repainter.lock:
            if self._finished:
                return
            self._collect()
            group = self._groups[-1] if self._groups else None
            if group is None or group.at != len(self._text):
                group = self._start_group()
            group.calls.append(call)
            self._show_calls(group)

    def tool_finished(self, call: ToolCall) -> None:
        with self._repainter.lock:
            group = self._group_of(call)
            if group is not None and not self._finished:
                self._show_calls(group)

    def round_started(self, number: int) -> None:
        """The next request is on its way: its placeholder shows below the calls."""
        with self._repainter.lock:
            live = self._live
            if live is not None and not self._finished and self._live_updates() and self._shown[live.slot] is None:
                self._show(live.slot, f"*{escape_markdown(self._model)} · answering…*")
                self._waiting = True

    def approve_tool(self, approval: Approval) -> bool:
        """Ask the user under the call: Approve / Deny buttons, or ``input()`` (see ``approval``)."""
        from .approval import approve_in_cell

        with self._repainter.lock:
            group = self._group_of(approval.call)
            waiting = calls_bundle(group.calls if group is not None else [approval.call], waiting=approval.call)
        if group is None or not self._live_updates():
            return approve_in_cell(approval, waiting, None)

        def replace(bundle: dict[str, Any] | None) -> None:
            with self._repainter.lock:
                if bundle is None:
                    self._show_calls(group)
                else:
                    self._send(group.slot, bundle, trusted=True)  # our blocks, or the widget of the buttons

        return approve_in_cell(approval, waiting, replace)

    def _start_group(self) -> _CallGroup:
        """A new output for calls, after the answer's text so far: the live piece ends there (exact;
        if it shows nothing yet, the calls take its output) and the text goes on in a new one."""
        at = len(self._text)
        live = self._live
        if not self._live_updates():  # nothing is updated here: the calls show at the end
            group = _CallGroup(-1, at, [])
        elif live is None or not self._text[live.start:].strip():
            slot = live.slot if live is not None else self._new_slot()
            group = _CallGroup(slot, at, [])
            self._live = _Piece(self._new_slot(), at)
        else:
            piece = _Piece(live.slot, live.start, at, live.prefix)
            self._frozen.append(piece)
            self._show(piece.slot, self._piece_markdown(piece)[0])
            group = _CallGroup(self._new_slot(), at, [])
            self._live = _Piece(self._new_slot(), at)
        self._shown_end = at
        self._waiting = True  # the next text shows at once
        self._groups.append(group)
        return group

    def _group_of(self, call: ToolCall) -> _CallGroup | None:
        return next((group for group in self._groups if any(c is call for c in group.calls)), None)

    def _show_calls(self, group: _CallGroup) -> None:
        if group.slot < 0:
            return
        bundle = calls_bundle(group.calls)
        if self._shown[group.slot] != bundle["text/html"]:
            self._send(group.slot, bundle, trusted=True)  # our own HTML, every string in it escaped

    def _composed(self, data: Bundle, footer: tuple[str, str] | None) -> Bundle:
        """The answer's bundle with the calls where they came (``tool_calls.calls_markdown``) and the
        footer at the end; its text/plain stays the exact answer. Without calls: ``_with_footer``."""
        if not self._groups:
            return _with_footer(data, footer)
        groups = [(group.at, group.calls) for group in self._groups]
        composed = {"text/markdown": answer_with_calls(data.get("text/markdown", ""), groups,
                                                       footer[0] if footer is not None else None)}
        return composed | ({"text/plain": data["text/plain"]} if "text/plain" in data else {})

    # -- the end -------------------------------------------------------------------------------
    def _owns_cell(self) -> bool:
        return self._cell is not None and self._cell.only_ours()

    def _swap(self, data: Bundle, *, trusted: bool = False) -> None:
        """Replace every output of the cell with one holding ``data``: the front end clears when
        the new output arrives and shows it in the same step. It is the cell's last change:
        Notebook 7 decides whether to box a long output on every change, measuring it before its
        Markdown has rendered, so a footer added after it would box it again (a flash)."""
        self._clear(wait=True)
        self._shown = [None] * len(self._shown)  # gone; their display ids are not used again
        if data:
            self._send(self._new_slot(), data, trusted=trusted)

    def _finish_pieces(self, answer: str, live: _Piece) -> None:
        """The frozen pieces stay (each a whole stretch of the answer); the live one gets the exact tail."""
        for piece in self._frozen:  # an interrupted send may have left one unsure
            self._show(piece.slot, self._piece_markdown(piece)[0])
        self._show(live.slot, live.prefix + answer[live.start:])

    def _clear(self, *, wait: bool) -> None:
        with self._ours():
            self._get_publisher().clear(wait=wait)

    def _ours(self) -> AbstractContextManager[None]:
        return self._cell.ours() if self._cell is not None else nullcontext()

    # -- outputs (always under the repainter's lock) -------------------------------------------
    def _live_updates(self) -> bool:
        """Whether outputs can be updated in place (not in an ipywidgets Output: see publish.py)."""
        if self._updates is None:
            self._updates = updates_shown(self._get_publisher())
        return self._updates

    def _get_publisher(self) -> DisplayPublisher:
        if self._publisher is None:
            self._publisher = IPythonPublisher()
        return self._publisher

    def _send(self, slot: int, data: Bundle, *, trusted: bool = False) -> None:
        """Show ``data`` in output ``slot``: display-safe (``trusted``: made so already, our own
        call blocks with the answer's text through ``safe_markdown``)."""
        created = self._shown[slot] is not None
        self._shown[slot] = _UNSURE  # until the message is out: an interrupt leaves it to be resent
        self.policy.sent()
        with self._ours():
            self._get_publisher().show(self._slots[slot], data if trusted else safe_bundle(data), update=created)
        self._shown[slot] = data.get("text/markdown") or data.get("text/html") or data.get("text/plain", "")

    def _new_slot(self, markdown: str | None = None) -> int:
        """A new output after the existing ones; created by its first ``_show``."""
        self._slots.append(f"{self._tag}-{len(self._slots)}")
        self._shown.append(None)
        slot = len(self._slots) - 1
        if markdown is not None:
            self._show(slot, markdown)
        return slot

    def _show(self, slot: int, markdown: str) -> None:
        if self._shown[slot] != markdown and (markdown or self._shown[slot] is not None):
            self._send(slot, {"text/markdown": markdown} if markdown else {})

    def _piece_markdown(self, piece: _Piece) -> tuple[str, int]:
        """The Markdown a piece shows, and how much of its end is held back (live piece only)."""
        end = len(self._text) if piece.end is None else piece.end
        markdown = piece.prefix + self._text[piece.start : end]
        if piece.end is not None and not piece.open_end:
            return markdown, 0  # ends at a cut: complete as it is
        return close_open_counted(markdown)

    def _freeze(self, cut: Cut) -> None:
        """The live output keeps the answer up to ``cut`` (only text it has not shown is added);
        the live tail continues after it in a new output, created by the next ``_show``."""
        live = self._live
        assert live is not None
        piece = _Piece(live.slot, live.start, cut.at, live.prefix, cut.open_end)
        self._frozen.append(piece)
        self._live = _Piece(self._new_slot(), cut.at, prefix=cut.prefix)
        self.policy.frozen()
        self._show(piece.slot, self._piece_markdown(piece)[0])


def _with_footer(data: Bundle, footer: tuple[str, str] | None) -> Bundle:
    """The answer's bundle with the footer at the end of its Markdown (its text/plain stays the
    exact answer); an open code fence is closed first, so the footer shows as a footer."""
    if footer is None or "text/markdown" not in data:
        return data
    answer = data["text/markdown"]
    fence = scan(answer).open_fence
    closing = "" if fence is None else ("" if answer.endswith("\n") else "\n") + fence.closing
    return {**data, "text/markdown": f"{answer}{closing}\n\n{footer[0]}"}


def _failure_line(reply: Reply) -> Bundle:
    """What the placeholder says of an answer that ended with no text and no footer."""
    notice = reply.notice or "no answer"
    return {"text/markdown": f"**⚠ {escape_markdown(notice)}**", "text/plain": f"[{notice}]"}


def make_sink(
    *,
    kind: Literal["auto", "display", "print", "code", "json"] = "auto",
    footer: bool = True,
    interval: float = DEFAULT_INTERVAL,
    plain_text: bool = True,
    stream: TextIO | None = None,
    cell: CellWatch | None = None,
    code_cells: CodeCells | None = None,
    **display_options: Any,
) -> LiveSink:
    """The sink for where the code runs: live Markdown in a notebook kernel, else plain text.

    ``kind`` forces one: "display" (live Markdown), "print" (plain text, ``-f text``), "code" or
    "json" (the formatted answer, ``-f code`` and ``--json``). ``cell``: the watch of the cell
    the sink owns (``cell_watch.current_cell()`` in a magic), so the finished answer may replace
    what it streamed. ``code_cells`` (with "code"): where the answer's code goes, the cell below
    (``code_cell.CodeCells``). ``display_options`` go to ``MarkdownDisplaySink`` (freeze_cost, ...);
    ``stream`` to the plain-text sink (default stdout). Every sink is a context manager:
    ``with make_sink() as sink: bot.ask(q, sink=sink)``.
    """
    if kind not in ("auto", "display", "print", "code", "json"):
        raise ValueError(f"kind must be 'auto', 'display', 'print', 'code' or 'json', got {kind!r}")
    if kind in ("code", "json"):
        from .formatted import FormattedSink

        return FormattedSink(kind, in_kernel=in_notebook_kernel(), footer=footer, interval=interval,
                             code_cells=code_cells if kind == "code" else None)
    if kind == "print" or (kind == "auto" and not in_notebook_kernel()):
        if cell is not None and stream is None:
            from .plain_text import CellTextSink

            return CellTextSink(cell, interval=interval)
        return PrintSink(stream, interval=interval)
    return MarkdownDisplaySink(
        footer=footer, interval=interval, plain_text=plain_text, cell=cell, **display_options
    )
