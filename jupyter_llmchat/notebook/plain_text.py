"""``%%chat -f text`` in a notebook: plain streamed text that ends as ONE output in the saved notebook.

The text streams to stdout on the repaint policy of every view (``PrintSink``); each flush is a
``stream`` message, which JupyterLab joins on screen but a notebook saved by nbclient (``jupyter
nbconvert --execute``, ``python -m jupyter_llmchat demo``) keeps as one output per message. When
the cell is the magic's own and holds nothing else (``cell_watch``), the finished answer replaces
those messages in one step: ``clear_output(wait=True)`` and the whole text as one message, the
same text the screen already shows.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TextIO

from ..core.repaint import DEFAULT_INTERVAL
from ..core.reply import PrintSink, Reply
from .cell_watch import CellWatch
from .publish import DisplayPublisher, IPythonPublisher

__all__ = ["CellTextSink"]


class CellTextSink(PrintSink):
    """``PrintSink`` in a cell ``cell`` watches (to stdout unless ``stream`` is given); its answer
    ends as one stream output."""

    def __init__(self, cell: CellWatch, stream: TextIO | None = None, *, interval: float = DEFAULT_INTERVAL,
                 trailing: bool = True, publisher: DisplayPublisher | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(stream, interval=interval, trailing=trailing, clock=clock)
        self._cell = cell
        self._publisher = publisher
        self.flushes = 0  # stream messages sent while the answer streamed

    def _paint(self) -> None:
        with self._cell.ours():
            before = self._written
            super()._paint()
            self.flushes += self._written > before

    def _show_final(self, reply: Reply) -> None:
        with self._cell.ours():
            if self.flushes and self._cell.only_ours():
                self.stream.flush()  # what streamed goes out before the clear that replaces it
                publisher = self._publisher if self._publisher is not None else IPythonPublisher()
                publisher.clear(wait=True)
                self._written = 0  # the whole text again, as one message
            super()._show_final(reply)
