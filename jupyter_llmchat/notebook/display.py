"""Stream an answer into a Jupyter cell as live Markdown that stays cheap for any answer length.

The reference recipe, ``DisplayHandle.update(Markdown(answer_so_far))`` per token, resends the
whole answer on every token: IOPub bytes and front-end work grow with the square of its length.
``MarkdownDisplaySink`` instead repaints on time (the ``Repainter`` of every ``LiveSink``), moves
finished blocks into frozen outputs (``freezing.FreezePolicy``, the panel's policy too) so only
the live tail is resent, keeps the number of outputs bounded by merging frozen ones, and at the
end shows the exact answer as ONE ``text/markdown`` output (earlier pieces blanked) plus a
separate small footer. Inside an ipywidgets ``Output``, where front ends drop updates, it shows
only that final answer and footer. No openai imports here; IPython is imported only when a display is
actually published.
"""

from __future__ import annotations

import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, TextIO

from ..core.repaint import DEFAULT_INTERVAL
from ..core.reply import LiveSink, PrintSink, Reply
from .footer import escape_markdown, footer_markdown
from .freezing import Cut, FreezePolicy
from .markdown_partial import close_open_counted
from .publish import Bundle, DisplayPublisher, IPythonPublisher, in_notebook_kernel, updates_shown
from .safe_markdown import safe_bundle

__all__ = ["MarkdownDisplaySink", "make_sink"]


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

    def size(self) -> int:
        return (self.end or self.start) - self.start


class MarkdownDisplaySink(LiveSink):
    """A ``ReplySink`` that renders the streaming answer as live Markdown in a notebook cell.

    ``start`` shows a placeholder (model name, working indicator); ``write`` only collects text
    and lets the repainter decide when to repaint (at most every ``interval`` s); ``finish``
    replaces all pieces with one ``text/markdown`` output holding exactly ``reply.text`` and adds
    the footer as its own output. ``trace`` (for benchmarks) records ``(time, chars shown)`` after
    each repaint. Safe against a KeyboardInterrupt inside ``write``: ``finish`` rebuilds the final
    state from ``reply`` and the list of outputs it may have created.
    """

    def __init__(
        self,
        *,
        footer: bool = True,
        interval: float = DEFAULT_INTERVAL,
        plain_text: bool = True,
        max_outputs: int = 6,
        max_rate: int = 12,
        freeze_cost: int = 1200,
        soft_min: int = 1024,
        trailing: bool = True,
        publisher: DisplayPublisher | None = None,
        clock: Callable[[], float] = time.monotonic,
        trace: bool = False,
    ) -> None:
        if max_outputs < 2:
            raise ValueError(f"max_outputs must be at least 2, got {max_outputs}")
        super().__init__(interval=interval, trailing=trailing, clock=clock)
        self.footer = footer
        self.plain_text = plain_text
        self.max_outputs = max_outputs
        # a freeze costs about two display messages (~560 bytes of headers each)
        self.policy = FreezePolicy(freeze_cost=freeze_cost, soft_min=soft_min, max_rate=max_rate, clock=clock)
        self.trace: list[tuple[float, int]] | None = [] if trace else None
        self._publisher = publisher
        self._tag = uuid.uuid4().hex[:10]
        self._received = 0
        self._arrivals: deque[tuple[float, int]] = deque()  # (time, chars received) per write
        self._slots: list[str] = []  # display ids, in output order
        self._shown: list[str | None] = []  # what each slot shows ("" = blank)
        self._frozen: list[_Piece] = []
        self._live: _Piece | None = None
        self._updates: bool | None = None  # updates reach the screen (None: not asked yet)

    # -- LiveSink ------------------------------------------------------------------------------
    def _show_start(self, model: str) -> None:
        if self._live is None and self._live_updates():
            slot = self._new_slot(f"*{escape_markdown(model)} · answering…*")
            self._live = _Piece(slot, 0)

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
        cut = self.policy.cut(text, self._live.start, self._live.prefix)
        if cut is not None:
            self._freeze(cut)
        live = self._live
        markdown, hidden = self._piece_markdown(live)
        self._show(live.slot, markdown)
        self.policy.repainted(len(markdown))
        shown = len(text) - hidden
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
        if not self._slots:
            self._new_slot()
        if data or self._shown[0]:
            self._send(0, data)
        for slot in range(1, len(self._slots)):
            if self._shown[slot]:  # None: never sent; "": already blank
                self._send(slot, {})
        if self.trace is not None:
            self.trace.append((self._clock(), len(answer)))
        footer = footer_markdown(reply, facts=self.footer)
        if footer is not None:
            md, plain = footer
            self._send(self._new_slot(), {"text/markdown": md, "text/plain": plain})

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
        publisher = self._get_publisher()
        created = self._shown[slot] is not None
        self._shown[slot] = data.get("text/markdown", "")  # recorded first: finish() must blank it even if interrupted
        self.policy.sent()
        publisher.show(self._slots[slot], safe_bundle(data), update=created)  # display-safe

    def _new_slot(self, markdown: str | None = None) -> int:
        """A new output after the existing ones; created by its first ``_show``."""
        self._slots.append(f"llmchat-{self._tag}-{len(self._slots)}")
        self._shown.append(None)
        slot = len(self._slots) - 1
        if markdown is not None:
            self._show(slot, markdown)
        return slot

    def _show(self, slot: int, markdown: str) -> None:
        if self._shown[slot] != markdown:
            self._send(slot, {"text/markdown": markdown} if markdown else {})

    def _piece_markdown(self, piece: _Piece) -> tuple[str, int]:
        """The Markdown a piece shows, and how much of its end is held back (live piece only)."""
        end = len(self._text) if piece.end is None else piece.end
        markdown = piece.prefix + self._text[piece.start : end]
        if piece.end is not None and not piece.open_end:
            return markdown, 0  # ends at a cut: complete as it is
        return close_open_counted(markdown)

    def _freeze(self, cut: Cut) -> None:
        """Move the live piece up to ``cut`` into a frozen output; the live tail continues after it."""
        live = self._live
        assert live is not None
        piece = _Piece(live.slot, live.start, cut.at, live.prefix, cut.open_end)
        first_free = (self._frozen[-1].slot + 1) if self._frozen else 0
        blank = [s for s in range(first_free, live.slot) if self._shown[s] == ""]
        if blank:  # a blanked slot sits between the frozen pieces and the live one: reuse it
            piece.slot = blank[0]
            self._frozen.append(piece)
            self._show(piece.slot, self._piece_markdown(piece)[0])
            self._live = _Piece(live.slot, cut.at, prefix=cut.prefix)
        elif len(self._slots) < self.max_outputs:  # the live slot freezes; a new one follows it
            self._frozen.append(piece)
            self._show(piece.slot, self._piece_markdown(piece)[0])
            self._live = _Piece(self._new_slot(), cut.at, prefix=cut.prefix)
        elif self._frozen:
            self._merge(piece)
            self._live = _Piece(live.slot, cut.at, prefix=cut.prefix)
        else:
            return  # every output is taken and none is frozen (max_outputs=1 cannot happen)
        self.policy.frozen()

    def _merge(self, piece: _Piece) -> None:
        """No free output: merge ``piece`` with the newest frozen pieces (sizes stay geometric)."""
        group = [piece]
        merged = piece.size()
        while self._frozen and (len(group) == 1 or self._frozen[-1].size() <= 2 * merged):
            group.insert(0, self._frozen.pop())
            merged += group[0].size()
        first = group[0]
        into = _Piece(first.slot, first.start, piece.end, first.prefix, piece.open_end)
        self._frozen.append(into)
        self._show(into.slot, self._piece_markdown(into)[0])
        for p in group[1:-1]:
            self._show(p.slot, "")


def make_sink(
    *,
    kind: Literal["auto", "display", "print", "code", "json"] = "auto",
    footer: bool = True,
    interval: float = DEFAULT_INTERVAL,
    plain_text: bool = True,
    stream: TextIO | None = None,
    **display_options: Any,
) -> LiveSink:
    """The sink for where the code runs: live Markdown in a notebook kernel, else plain text.

    ``kind`` forces one: "display" (live Markdown), "print" (plain text, ``-f text``), "code" or
    "json" (the formatted answer, ``-f code`` and ``--json``). ``display_options`` go to
    ``MarkdownDisplaySink`` (max_outputs, ...); ``stream`` to ``PrintSink`` (default stdout).
    Every sink is a context manager: ``with make_sink() as sink: bot.ask(q, sink=sink)``.
    """
    if kind not in ("auto", "display", "print", "code", "json"):
        raise ValueError(f"kind must be 'auto', 'display', 'print', 'code' or 'json', got {kind!r}")
    if kind in ("code", "json"):
        from .formatted import FormattedSink

        return FormattedSink(kind, in_kernel=in_notebook_kernel(), footer=footer, interval=interval)
    if kind == "print" or (kind == "auto" and not in_notebook_kernel()):
        return PrintSink(stream, interval=interval)
    return MarkdownDisplaySink(
        footer=footer, interval=interval, plain_text=plain_text, **display_options
    )
