"""The progress bar of many rows (``Chatbot.map``, the Batch API runner): rows done and failed,
tokens and cost so far, elapsed time and ETA.

tqdm.auto draws it: the notebook's widget bar in a kernel, a text line on stderr in a terminal.
tqdm repaints at most every ``REFRESH`` seconds however often rows arrive, so 10,000 fast rows
cost a few dozen repaints. A widget's live state is not text a saved notebook keeps, so in a
notebook the bar ends with one plain line saying how the run ended (``summary``); a terminal's
last bar line already says it. tqdm is imported when a bar is made, not with this module.
"""

from __future__ import annotations

import sys
import time
from typing import IO, Any

from .models import format_cost
from .rows import RowResult

REFRESH = 0.2  # seconds between repaints at most
BAR_FORMAT = "{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} rows{postfix} [{elapsed}<{remaining}]"


class RowProgress:
    """Counts rows as they finish and shows them; ``close()`` shows the final state (a context manager).

    ``total`` rows, ``resumed`` of which were answered before (from the store or the cache):
    they count as done from the start, and the ETA is measured on the rows asked now.
    ``show=False`` counts without drawing; ``file`` sends the text bar there (tests).
    """

    def __init__(self, total: int, *, description: str = "map", resumed: int = 0, show: bool = True,
                 file: IO[str] | None = None) -> None:
        self.total = total
        self.description = description
        self.done = resumed
        self.resumed = resumed
        self.failed = 0
        self.tokens = 0
        self.cost = 0.0
        self.unpriced = 0  # rows whose cost is unknown (a model without a price)
        self.status: str | None = None  # a word or two besides the counts: "interrupted", "in progress", ...
        self.reason: str | None = None  # the whole story behind the status, for the summary line
        self._started = time.monotonic()
        self._file = file
        self._bar: Any = _make_bar(total, description, resumed, file) if show else None

    def __enter__(self) -> RowProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def in_notebook(self) -> bool:
        """True when the bar is the notebook's widget (a kernel with ipywidgets)."""
        return _is_widget(self._bar)

    def add(self, result: RowResult) -> None:
        """One row finished (answered, or failed for good)."""
        self.add_many([result])

    def add_many(self, results: list[RowResult]) -> None:
        for result in results:
            if result.status == "done":
                self.done += 1
            else:
                self.failed += 1
            if result.usage is not None:
                self.tokens += result.usage.total_tokens
            if result.cost is not None:
                self.cost += result.cost
            elif result.usage is not None:
                self.unpriced += 1
        self._show(len(results))

    def set_counts(self, *, done: int, failed: int, tokens: int | None = None, cost: float | None = None) -> None:
        """Set the counts outright (a batch job reports them as it goes)."""
        moved = done + failed - (self.done + self.failed)
        self.done, self.failed = done, failed
        if tokens is not None:
            self.tokens = tokens
        if cost is not None:
            self.cost = cost
        self._show(moved)

    def note(self, status: str | None, reason: str | None = None) -> None:
        """Say how the run stands besides the counts ("interrupted", "validating", ...); ``reason``
        is the one-line why, shown in the summary (the bar stays short)."""
        self.status, self.reason = status, reason
        self._show(0, refresh=True)

    def postfix(self) -> str:
        """What follows the row counts: failures, tokens, cost, and the status if any."""
        said = [f"{self.failed:,} failed"] if self.failed else []
        said += self._spent()
        if self.status:
            said.append(self.status)
        return ", ".join(said)

    def summary(self) -> str:
        """One line on how the run ended: rows done and failed, tokens, cost, time, status."""
        seconds = time.monotonic() - self._started
        before = f" ({self.resumed:,} answered before)" if self.resumed else ""
        said = self.reason or self.status
        status = f"; {said}" if said else ""
        return (f"{self.description}: {self.done:,} of {self.total:,} rows done{before}, {self.failed:,} failed; "
                f"{', '.join(self._spent())}; {seconds:.1f} s{status}")

    def _spent(self) -> list[str]:
        if self.unpriced and not self.cost:
            cost = "cost unknown"
        else:
            cost = format_cost(self.cost) + (f" + {self.unpriced:,} unpriced" if self.unpriced else "")
        return [f"{self.tokens:,} tokens", cost]

    def close(self) -> None:
        """Show the final state, then print ``summary()`` as a plain line: in a notebook always (the
        widget is no text a saved notebook keeps), in a terminal when the run ended early. Safe twice."""
        bar, self._bar = self._bar, None
        if bar is None:
            return
        bar.set_postfix_str(self.postfix(), refresh=False)
        notebook = _is_widget(bar)
        if notebook and (self.failed or self.status):
            bar.colour = "#d9822b"  # not every row answered: the bar says so at a glance
        bar.close()
        if notebook:
            print(self.summary(), file=sys.stdout, flush=True)
        elif self.status:
            print(self.summary(), file=self._file or sys.stderr, flush=True)

    def _show(self, moved: int, *, refresh: bool = False) -> None:
        bar = self._bar
        if bar is None:
            return
        bar.set_postfix_str(self.postfix(), refresh=False)
        if moved:
            bar.update(moved)
        elif refresh:
            bar.refresh()


def _make_bar(total: int, description: str, resumed: int, file: IO[str] | None) -> Any:
    if file is not None:
        from tqdm.std import tqdm  # type: ignore[import-untyped]  # a given file is text, even in a kernel
    else:
        from tqdm.auto import tqdm  # type: ignore[import-untyped]
    return tqdm(total=total, initial=resumed, desc=description, bar_format=BAR_FORMAT, file=file,
                mininterval=REFRESH, miniters=1, dynamic_ncols=file is None, leave=True)


def _is_widget(bar: Any) -> bool:
    """True for tqdm's notebook bar (tqdm.auto picks it in a kernel with ipywidgets)."""
    notebook = sys.modules.get("tqdm.notebook")
    return bar is not None and notebook is not None and isinstance(bar, notebook.tqdm_notebook)
