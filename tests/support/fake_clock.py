"""A clock the test moves by hand, for code that takes a ``clock: Callable[[], float]``."""

from __future__ import annotations


class FakeClock:
    """Returns ``now``, which only the test changes: timing logic is tested without sleeping."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now
