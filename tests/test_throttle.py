"""throttle.Repainter: repaints on time, not per change; a stalled writer's change still shows."""

from __future__ import annotations

import contextvars
import threading

import pytest

from jupyter_llmchat.throttle import Repainter


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_repaints_at_most_once_per_interval() -> None:
    clock, painted = FakeClock(), []
    repainter = Repainter(lambda: painted.append(clock.now), interval=0.1, trailing=False, clock=clock)
    for _ in range(100):  # 100 changes over one second
        repainter.changed()
        clock.now += 0.01
    assert len(painted) == 10
    assert all(b - a >= 0.1 - 1e-9 for a, b in zip(painted, painted[1:]))


def test_first_change_paints_at_once_and_nothing_pending_paints_nothing() -> None:
    clock, painted = FakeClock(), []
    repainter = Repainter(lambda: painted.append(clock.now), interval=0.1, trailing=False, clock=clock)
    assert repainter.flush(force=True) is False  # nothing pending
    repainter.changed()
    assert painted == [100.0]
    repainter.changed()  # within the interval: pending
    assert painted == [100.0]
    assert repainter.flush(force=True) is True
    assert painted == [100.0, 100.0]


def test_stop_ends_painting() -> None:
    clock, painted = FakeClock(), []
    repainter = Repainter(lambda: painted.append(1), interval=0.1, trailing=False, clock=clock)
    repainter.stop()
    repainter.changed()
    assert painted == []


@pytest.mark.parametrize("interval", [0, -1.0, float("nan")])
def test_bad_interval_is_one_clear_error(interval: float) -> None:
    with pytest.raises(ValueError, match="interval must be a positive number of seconds"):
        Repainter(lambda: None, interval=interval)


def test_helper_thread_shows_a_stalled_change_in_the_starters_context() -> None:
    """The writer stops after a change that was not due: the helper thread paints it, with the
    contextvars of the thread that called start() (ipykernel routes output by them)."""
    cell = contextvars.ContextVar("cell", default="none")
    cell.set("cell-7")
    seen: list[tuple[str, str]] = []
    painted = threading.Event()

    def paint() -> None:
        seen.append((cell.get(), threading.current_thread().name))
        if len(seen) == 2:
            painted.set()

    repainter = Repainter(paint, interval=0.05)
    repainter.start()
    repainter.changed()  # painted at once by this thread
    repainter.changed()  # not due: left pending, then the writer "stalls"
    assert painted.wait(timeout=10)
    repainter.stop()
    assert seen == [("cell-7", threading.current_thread().name), ("cell-7", "llmchat-repaint")]
