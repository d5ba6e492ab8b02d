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
from ..core.reply import LiveSink, PrintSink, Reply
from .footer import escape_markdown, footer_markdown
from .freezing import Cut, FreezePolicy
from .markdown_blocks import scan
from .markdown_partial import close_open_counted
from .publish import Bundle, DisplayPublisher, IPythonPublisher, in_notebook_kernel, updates_shown
from .safe_markdown import safe_bundle

if TYPE_CHECKING:
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


class MarkdownDisplaySink(LiveSink):
    """A ``ReplySink`` that renders the streaming answer as live Markdown in a notebook cell.

    ``start`` shows a placeholder (model name, working indicator); ``write`` only collects text
    and lets the repainter decide when to repaint (the first text at once, then at most every
    ``interval`` s); ``finish`` shows the exact answer (see the module docstring for how) and the
    footer as its own output. ``cell``: the watch of the cell the sink owns (``%%chat``), which
    allows the final swap. ``trace`` (for benchmarks) records ``(time, chars shown)`` after each
    repaint. Safe against a KeyboardInterrupt inside ``write``: ``finish`` rebuilds the final
    state from ``reply`` and what each output may show.
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

    @property
    def frozen_pieces(self) -> list[tuple[int, int]]:
        """(start, end) in the answer of each frozen output, in order (for tests and benchmarks)."""
        return [(p.start, p.end or p.start) for p in self._frozen]

    # -- LiveSink ------------------------------------------------------------------------------
    def _show_start(self, model: str) -> None:
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
        if not self._live_updates() or live is None or all(shown is None for shown in self._shown):
            if data:  # nothing of ours is on screen: new outputs only
                self._send(self._new_slot(), data)
        elif self._frozen and self._owns_cell():
            self._swap(_with_footer(data, footer))  # the pieces become one output in one step
            footer_data = None
        elif self._frozen:
            self._finish_pieces(answer, live)
        elif data:
            self._send(live.slot, data)  # the live output becomes the exact answer
        elif footer_data is not None:
            self._send(live.slot, footer_data)  # no text: the notice takes the placeholder's place
            footer_data = None
        elif self._owns_cell():
            self._clear(wait=True)  # no text, nothing to say: the error the magic raises replaces it
        else:
            self._send(live.slot, _failure_line(reply))
        if self.trace is not None:
            self.trace.append((self._clock(), len(answer)))
        if footer_data is not None:
            self._send(self._new_slot(), footer_data)

    # -- the end -------------------------------------------------------------------------------
    def _owns_cell(self) -> bool:
        return self._cell is not None and self._cell.only_ours()

    def _swap(self, data: Bundle) -> None:
        """Replace every output of the cell with one holding ``data``: the front end clears when
        the new output arrives and shows it in the same step. It is the cell's last change:
        Notebook 7 decides whether to box a long output on every change, measuring it before its
        Markdown has rendered, so a footer added after it would box it again (a flash)."""
        self._clear(wait=True)
        self._shown = [None] * len(self._shown)  # gone; their display ids are not used again
        if data:
            self._send(self._new_slot(), data)

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

    def _send(self, slot: int, data: Bundle) -> None:
        created = self._shown[slot] is not None
        self._shown[slot] = _UNSURE  # until the message is out: an interrupt leaves it to be resent
        self.policy.sent()
        with self._ours():
            self._get_publisher().show(self._slots[slot], safe_bundle(data), update=created)  # display-safe
        self._shown[slot] = data.get("text/markdown", "")

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
