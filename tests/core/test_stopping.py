"""StopToken, run_stoppable and Pump: the waiting thread returns the moment a stop comes, work in
the helper thread is abandoned, results and exceptions cross threads intact. Orchestrated with
events, not timing."""

from __future__ import annotations

import threading

import pytest

from jupyter_llmchat.core.stopping import DeadlineExceeded, Pump, Stopped, StopToken, run_stoppable


def test_stop_runs_each_callback_once_and_late_ones_at_once():
    token = StopToken()
    heard: list[str] = []
    token.on_stop(lambda: heard.append("first"))
    forgotten = lambda: heard.append("forgotten")  # noqa: E731
    token.on_stop(forgotten)
    token.forget(forgotten)
    token.on_stop(lambda: 1 / 0)  # a callback that fails does not keep the others from running
    token.on_stop(lambda: heard.append("second"))
    assert not token.stopped
    token.stop()
    token.stop()
    assert token.stopped and heard == ["first", "second"]
    token.on_stop(lambda: heard.append("late"))
    assert heard == ["first", "second", "late"]


def test_run_stoppable_returns_the_result_or_raises_the_exception_here():
    token = StopToken()
    assert run_stoppable(lambda: threading.current_thread().name, token, name="helper-1") == "helper-1"
    with pytest.raises(ZeroDivisionError):
        run_stoppable(lambda: 1 / 0, token, name="helper-2")


def test_run_stoppable_returns_at_once_when_stopped_and_leaves_the_work():
    token = StopToken()
    started, release, finished = threading.Event(), threading.Event(), threading.Event()

    def work() -> str:
        started.set()
        release.wait(30)
        finished.set()
        return "too late"

    threading.Thread(target=lambda: (started.wait(30), token.stop())).start()
    with pytest.raises(Stopped):
        run_stoppable(work, token, name="helper")
    assert started.is_set() and not finished.is_set()  # returned while the work was still blocked
    release.set()
    assert finished.wait(30)


def test_a_pump_hands_over_items_in_order_and_says_it_finished():
    token = StopToken()
    pump = Pump(lambda: iter(["a", "b", "c"]), token, name="pump")
    assert list(pump) == ["a", "b", "c"] and pump.finished


def test_a_pump_raises_what_the_producer_raised():
    def produce():
        yield "a"
        raise ValueError("broken")

    pump = Pump(produce, StopToken(), name="pump")
    received = []
    with pytest.raises(ValueError, match="^broken$"):
        received.extend(pump)
    assert received == ["a"] and not pump.finished


def test_a_stopped_pump_ends_quietly_while_the_producer_is_blocked():
    token = StopToken()
    release = threading.Event()

    def produce():
        yield "first"
        release.wait(30)  # blocked, as a network read is
        yield "never handed over"

    pump = Pump(produce, token, name="pump")
    received = []
    for item in pump:
        received.append(item)
        token.stop()  # e.g. Chatbot.stop() from another thread
    assert received == ["first"] and not pump.finished
    release.set()


def test_a_pump_with_no_first_item_in_time_raises_deadline_exceeded():
    release = threading.Event()

    def produce():
        release.wait(30)
        yield "late"

    with pytest.raises(DeadlineExceeded):
        list(Pump(produce, StopToken(), name="pump", first_within=0.05))
    release.set()
    assert list(Pump(lambda: iter(["on time"]), StopToken(), name="pump", first_within=30)) == ["on time"]
