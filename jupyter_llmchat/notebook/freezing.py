"""When a streaming view freezes part of its live Markdown, and where it cuts: one policy, rent or buy.

A view (the cell's live Markdown, the chat panel's bubble) resends its live piece on every
repaint; finished blocks moved into a frozen piece are sent once. Freezing has a fixed price (a
few messages), resending costs its bytes, so the live piece is split only once resending it has
cost ``freeze_cost`` bytes: at full speed that is nearly every repaint, at 50 tokens/s every few
seconds. Where: the last hard cut of ``markdown_blocks.find_boundaries`` (the parts render like
the whole); cuts that split a block visually until the answer ends (inside a long fence or
list, or, last resort, at a sentence of one long paragraph) also need a long piece and twice
the rent. A freeze adds messages, so it waits while the view already sent ``max_rate`` in the
last second (Jupyter Server drops IOPub messages above a rate).

Only a cut at or after the end of what the view shows now is taken (``after``): the frozen piece
then only grows by text never shown and the new live piece shows text never shown, so no block
ever moves from one output to another (a move shows it twice, or not at all, for as long as the
two messages take to arrive). A block's start is known to be a cut only once a few characters of
it have arrived (``markdown_blocks.KNOWN``), so while a freeze is due the view holds back a last
line that may turn out to start a cut (``hold``): a few characters, for a repaint or two.

``flat_only`` (the cell): the pieces are swapped for one output when the answer ends, and that
must not shrink it. Separate outputs do not collapse margins across the cut, so in JupyterLab and
Notebook 7 a cut before a paragraph, heading or table leaves the pieces a little shorter than the
whole (7-12 px: the swap grows), but one before a list, code fence or quote a little taller
(+7 px), and a split code block, list or quote much taller (+21 to +50 px: one to two lines, for
each such cut). So the cell cuts only before a paragraph, heading or table, and never inside a
block (the panel, whose CSS joins split pieces, takes every kind).
"""

from __future__ import annotations

import re
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from .markdown_blocks import KNOWN, find_boundaries
from .markdown_partial import sentence_cut

__all__ = ["Cut", "FreezePolicy", "flat_seam"]

# A line that starts a list item, quote, fence, HTML block, thematic break, setext underline or
# indented code: a cut before it leaves the pieces taller than the whole (see flat_only).
_RAISED = re.compile(r" {0,3}(?:[-+*](?:[ \t]|$)|\d{1,9}[.)](?:[ \t]|$)|>|`{3}|~{3}|<|[-=_*](?:[ \t]*[-=_*])*[ \t]*$)"
                     r"|\t| {4}")


def flat_seam(line: str) -> bool:
    """Whether a cut before ``line`` (a top-level block's first line) starts a paragraph, heading or
    table, so the pieces are no taller than the whole where they meet."""
    return not _RAISED.match(line)


@dataclass(frozen=True)
class Cut:
    """Freeze the live piece up to ``at`` (an offset in the answer); the new live piece starts
    there, shown after ``prefix`` (a fence's opening line when the cut is inside the fence).
    ``split``: the cut splits a block (soft or sentence cut), so the two pieces show a seam."""

    at: int
    prefix: str = ""
    split: bool = False

    @property
    def open_end(self) -> bool:
        """The frozen piece ends inside a fenced block, which its display must close."""
        return bool(self.prefix)


class FreezePolicy:
    """Rent or buy, for one streaming view: note what it sends; ask it where to freeze."""

    def __init__(self, *, freeze_cost: int = 1200, soft_min: int = 1024, max_rate: int = 12,
                 freeze_messages: int = 2, flat_only: bool = False,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.freeze_cost = freeze_cost
        self.soft_min = soft_min
        self.flat_only = flat_only
        self.max_rate = max_rate
        self.freeze_messages = freeze_messages  # what one freeze adds to the message count
        self._clock = clock
        self.resent = 0  # bytes of the live piece resent since the last freeze (the rent)
        self._sent: deque[float] = deque()  # when messages were sent (the rate budget)

    def sent(self) -> None:
        """One message went out."""
        self._sent.append(self._clock())

    def repainted(self, size: int) -> None:
        """The live piece was shown again: ``size`` bytes of rent."""
        self.resent += size

    def cut(self, text: str, start: int, prefix: str, *, after: int = 0) -> Cut | None:
        """Where to freeze the live piece ``prefix + text[start:]`` now, or None. ``after``: the
        end (an offset in ``text``) of what the view shows; the cut is never before it."""
        if not self._due():
            return None
        skip = len(prefix)
        body = prefix + text[start:]
        first = max(skip + 1, after - start + skip)  # the earliest offset in body a cut may take
        found = find_boundaries(body)
        if found.hard >= first and (not self.flat_only or flat_seam(_line_at(body, found.hard))):
            return Cut(start + found.hard - skip)
        if self.flat_only or len(body) < self.soft_min or self.resent < 2 * self.freeze_cost:
            return None
        if found.soft >= first:
            return Cut(start + found.soft - skip, found.soft_prefix, split=True)
        at = 0 if skip else sentence_cut(body)  # one long paragraph: split it at a sentence
        return Cut(start + at, split=True) if at >= first else None

    def hold(self, text: str, start: int, prefix: str) -> int | None:
        """While a freeze is due: where the view should stop showing the live piece for now (an
        offset in ``text``), because the last line, not yet long enough to tell, may start a cut
        there. None: show everything."""
        if not self._due():
            return None
        body = prefix + text[start:]
        line = body.rfind("\n") + 1
        if line <= len(prefix) or line == len(body) or len(body) - line >= KNOWN:
            return None  # no line started yet, or it is long enough that the cut is known already
        if self.flat_only and not flat_seam(body[line:]):
            return None
        found = find_boundaries(body + "\n")  # were the line to end here, would a cut start it?
        soft = not self.flat_only and len(body) >= self.soft_min and self.resent >= 2 * self.freeze_cost
        if found.hard == line or (soft and found.soft == line):
            return start + line - len(prefix)
        return None

    def _due(self) -> bool:
        """Resending has cost a freeze, and a freeze's messages fit in this second's budget."""
        if self.resent < self.freeze_cost:
            return False
        recent = self._sent
        while recent and recent[0] < self._clock() - 1.0:
            recent.popleft()
        return len(recent) + self.freeze_messages <= self.max_rate  # a freeze adds messages

    def frozen(self) -> None:
        """The view froze its live piece: the rent starts again."""
        self.resent = 0


def _line_at(text: str, at: int) -> str:
    end = text.find("\n", at)
    return text[at:] if end < 0 else text[at:end]
