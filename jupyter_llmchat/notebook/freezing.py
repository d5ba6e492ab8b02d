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
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from .markdown_blocks import find_boundaries
from .markdown_partial import sentence_cut

__all__ = ["Cut", "FreezePolicy"]


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
                 freeze_messages: int = 2, clock: Callable[[], float] = time.monotonic) -> None:
        self.freeze_cost = freeze_cost
        self.soft_min = soft_min
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

    def cut(self, text: str, start: int, prefix: str) -> Cut | None:
        """Where to freeze the live piece ``prefix + text[start:]`` now, or None."""
        if self.resent < self.freeze_cost:
            return None
        recent = self._sent
        while recent and recent[0] < self._clock() - 1.0:
            recent.popleft()
        if len(recent) + self.freeze_messages > self.max_rate:  # a freeze adds messages: not this second
            return None
        skip = len(prefix)
        body = prefix + text[start:]
        found = find_boundaries(body)
        if found.hard > skip:
            return Cut(start + found.hard - skip)
        if len(body) < self.soft_min or self.resent < 2 * self.freeze_cost:
            return None
        if found.soft > skip:
            return Cut(start + found.soft - skip, found.soft_prefix, split=True)
        at = 0 if skip else sentence_cut(body)  # one long paragraph: split it at a sentence
        return Cut(start + at, split=True) if at else None

    def frozen(self) -> None:
        """The view froze its live piece: the rent starts again."""
        self.resent = 0
