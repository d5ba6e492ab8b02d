"""How many requests a map keeps in flight: additive increase, multiplicative decrease (AIMD).

A fleet of clients sharing a rate limit finds its fair rate the way TCP finds a link's: each
answer that comes back grows the limit a little (by one request per limit's worth of answers),
each 429 halves it. Only a 429 to a request sent after the last cut cuts again: the requests
already in flight when the first 429 came were sent at the old rate and say nothing new. The
limit never exceeds the concurrency the caller asked for, nor falls below one.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field


@dataclass
class LimitStats:
    """What the limit did during a run (for the summary, tests and benchmarks)."""

    throttled: int = 0  # 429s heard
    cuts: int = 0  # times the limit was halved
    lowest: float = 0.0  # the lowest limit reached
    peak_in_flight: int = 0  # the most requests in flight at once
    history: list[float] = field(default_factory=list)  # the limit after each cut
    final: float = 0.0  # the limit when the run ended


class AdaptiveLimit:
    """An asyncio semaphore whose size follows AIMD between 1 and ``ceiling``.

    ``async with limit.slot() as epoch:`` holds a place while a request is in flight; the epoch
    it was sent in goes to ``throttled(epoch)`` when that request gets a 429.
    """

    def __init__(self, ceiling: int, *, start: int | None = None) -> None:
        if ceiling < 1:
            raise ValueError(f"ceiling must be >= 1, got {ceiling}")
        self.ceiling = ceiling
        self.limit = float(min(start or ceiling, ceiling))
        self.in_flight = 0
        self.epoch = 0  # counts cuts: a request remembers the epoch it was sent in
        self.stats = LimitStats(lowest=self.limit, final=self.limit)
        self._changed = asyncio.Condition()

    def slot(self) -> _Slot:
        return _Slot(self)

    async def acquire(self) -> int:
        async with self._changed:
            await self._changed.wait_for(lambda: self.in_flight < int(self.limit))
            self.in_flight += 1
            self.stats.peak_in_flight = max(self.stats.peak_in_flight, self.in_flight)
            return self.epoch

    async def release(self) -> None:
        async with self._changed:
            self.in_flight -= 1
            self._changed.notify_all()

    def succeeded(self) -> None:
        """An answer came back: grow by one request per limit's worth of answers."""
        self.limit = min(float(self.ceiling), self.limit + 1.0 / self.limit)
        self.stats.final = self.limit

    def throttled(self, epoch: int) -> None:
        """A 429 came back for a request sent in ``epoch``: halve, unless it was sent before the last cut."""
        self.stats.throttled += 1
        if epoch != self.epoch:
            return
        self.epoch += 1
        self.limit = max(1.0, self.limit / 2)
        self.stats.cuts += 1
        self.stats.lowest = min(self.stats.lowest, self.limit)
        self.stats.history.append(self.limit)
        self.stats.final = self.limit


class _Slot:
    def __init__(self, limit: AdaptiveLimit) -> None:
        self._limit = limit

    async def __aenter__(self) -> int:
        return await self._limit.acquire()

    async def __aexit__(self, *exc: object) -> None:
        await self._limit.release()
