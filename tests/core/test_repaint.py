"""repaint.Repainter: repaints on time, not per change; a stalled writer's change still shows."""

from __future__ import annotations

import contextvars
import gc
import itertools
import threading

import pytest
from support.fake_clock import FakeClock

from jupyter_llmchat.core.repaint import Repainter


def test_repaints_at_most_once_per_interval() -> None:
    clock, painted = FakeClock(100.0), []
    repainter = Repainter(lambda: painted.append(clock.now), interval=0.1, trailing=False, clock=clock)
    for _ in range(100):  # 100 changes over one second
        repainter.changed()
        clock.now += 0.01
    assert len(painted) == 10
    assert all(b - a >= 0.1 - 1e-9 for a, b in itertools.pairwise(painted))


def test_first_change_paints_at_once_and_nothing_pending_paints_nothing() -> None:
    clock, painted = FakeClock(100.0), []
    repainter = Repainter(lambda: painted.append(clock.now), interval=0.1, trailing=False, clock=clock)
    assert repainter.flush(force=True) is False  # nothing pending
    repainter.changed()
    assert painted == [100.0]
    repainter.changed()  # within the interval: pending
    assert painted == [100.0]
    assert repainter.flush(force=True) is True
    assert painted == [100.0, 100.0]


def test_stop_ends_painting() -> None:
    clock, painted = FakeClock(100.0), []
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


def test_helper_thread_ends_when_a_never_stopped_repainter_is_dropped() -> None:
    repainter = Repainter(lambda: None, interval=0.05)
    repainter.start()
    thread = repainter._thread
    assert thread is not None and thread.is_alive()
    repainter.changed()
    repainter.changed()
    del repainter
    gc.collect()
    thread.join(timeout=10)
    assert not thread.is_alive()


@pytest.mark.parametrize(("held", "third_paint"), [(None, 100.20), (100.095, 100.2), (100.01, 100.11), (False, 100.11)])
def test_a_held_back_change_is_due_from_when_it_arrived(held: float | bool | None, third_paint: float) -> None:
    """paint() returning the arrival time of a part it held back makes the next repaint due one
    interval after that arrival (False: after the oldest pending change), not after the repaint."""
    clock, painted = FakeClock(100.0), []

    def paint() -> float | bool | None:
        painted.append(round(clock.now, 3))
        return held if len(painted) == 2 else None

    repainter = Repainter(paint, interval=0.1, trailing=False, clock=clock)
    for step in range(26):  # a change every 10 ms, plus one at 100.095
        clock.now = 100 + step / 100
        repainter.changed()
        if step == 9:
            repainter.changed(now=100.095)
    assert painted[:3] == [100.0, 100.1, third_paint]


def test_start_after_stop_starts_no_thread() -> None:
    repainter = Repainter(lambda: None, interval=0.05)
    repainter.start()
    repainter.stop()
    repainter.start()
    assert repainter._thread is None


def test_while_nothing_is_shown_every_change_paints_at_once() -> None:
    """paint() saying nothing_shown() (all it had was held back) makes the next change due at once:
    the first text is not delayed by the throttle; after it, repaints are one interval apart."""
    clock, painted = FakeClock(100.0), []
    repainter: Repainter

    def paint() -> None:
        painted.append(round(clock.now, 3))
        if len(painted) < 3:
            repainter.nothing_shown()

    repainter = Repainter(paint, interval=0.1, trailing=False, clock=clock)
    for step in range(8):  # a change every 20 ms
        clock.now = 100 + step / 50
        repainter.changed()
    assert painted == [100.0, 100.02, 100.04, 100.14]
