"""Stop means stop: an answer ends within a blink of ``Chatbot.stop()``, whatever it is doing.

Each ``ask`` gets a StopToken the moment it begins, so a stop issued a millisecond later is never
lost. Work that stop must not wait for (preparing images, sending, waiting for response headers,
the SDK's retry sleeps, reading the stream) runs in a helper thread; the asking thread only waits,
in short slices so that KeyboardInterrupt still lands, for the work's next result or for the stop,
whichever comes first. Work that is abandoned hears about it through the token's callbacks (close
the connection, refuse to send again) and ends on its own; nobody waits for it.
"""

from __future__ import annotations

import contextvars
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Generic, TypeVar

T = TypeVar("T")

# How long the waiting thread sleeps at most before it looks again. A stop wakes it at once; the
# slices only keep signals flowing where a lock wait without a timeout cannot be interrupted.
WAIT_SLICE = 0.05


class Stopped(Exception):
    """The token was stopped before the work it waited for was done."""


class DeadlineExceeded(Exception):
    """No first result came within the deadline given to ``Pump``."""


class StopToken:
    """One answer's stop switch: ``stop()`` (any thread, any number of times) runs the callbacks
    registered with ``on_stop``, once; a callback registered after the stop runs at once."""

    def __init__(self) -> None:
        self._stopped = threading.Event()
        self._lock = threading.Lock()
        self._callbacks: list[Callable[[], None]] = []

    @property
    def stopped(self) -> bool:
        return self._stopped.is_set()

    def stop(self) -> None:
        with self._lock:
            if self._stopped.is_set():
                return
            self._stopped.set()
            callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            _quietly(callback)

    def on_stop(self, callback: Callable[[], None]) -> None:
        with self._lock:
            if not self._stopped.is_set():
                self._callbacks.append(callback)
                return
        _quietly(callback)

    def forget(self, callback: Callable[[], None]) -> None:
        """Unregister ``callback`` (the work it would abandon is done)."""
        with self._lock:
            if callback in self._callbacks:
                self._callbacks.remove(callback)


def _quietly(callback: Callable[[], None]) -> None:
    try:
        callback()
    except Exception:
        pass  # what is abandoned may fail to close (another thread is using it): it is abandoned either way


def _start(target: Callable[[], None], name: str) -> None:
    # The helper sees the caller's context variables, as the work would if it ran in the caller.
    threading.Thread(target=contextvars.copy_context().run, args=(target,), name=name, daemon=True).start()


def run_stoppable(work: Callable[[], T], token: StopToken, *, name: str) -> T:
    """``work()``, run in a helper thread named ``name``: its result, or its exception raised here;
    ``Stopped`` as soon as ``token`` is stopped (the work is then left to finish unheard)."""
    box: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()

    def run() -> None:
        try:
            box.put(("result", work()))
        except BaseException as error:  # handed to the waiting thread, raised there
            box.put(("error", error))

    def wake() -> None:
        box.put(("stop", None))

    token.on_stop(wake)
    try:
        _start(run, name)
        while True:
            try:
                kind, value = box.get(timeout=WAIT_SLICE)
            except queue.Empty:
                continue
            if kind == "result":
                return value
            if kind == "error":
                raise value
            raise Stopped
    finally:
        token.forget(wake)


class Pump(Generic[T]):
    """Iterates ``produce()`` in a helper thread and hands its items to the thread that iterates
    the pump. Iteration ends quietly when ``token`` is stopped (``finished`` stays False), raises
    what ``produce`` raised, and raises DeadlineExceeded if ``first_within`` seconds pass before
    the first item."""

    def __init__(self, produce: Callable[[], Iterable[T]], token: StopToken, *, name: str,
                 first_within: float | None = None) -> None:
        self._produce = produce
        self._token = token
        self._name = name
        self._first_within = first_within
        self.finished = False  # the producer ran to its end and every item was handed over

    def __iter__(self) -> Iterator[T]:
        box: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
        token = self._token

        def run() -> None:
            try:
                for item in self._produce():
                    if token.stopped:
                        return
                    box.put(("item", item))
            except BaseException as error:  # handed to the iterating thread, raised there
                box.put(("error", error))
            else:
                box.put(("end", None))

        def wake() -> None:
            box.put(("stop", None))

        token.on_stop(wake)
        deadline = None if self._first_within is None else time.monotonic() + self._first_within
        try:
            _start(run, self._name)
            while True:
                wait = WAIT_SLICE if deadline is None else min(WAIT_SLICE, max(deadline - time.monotonic(), 0))
                try:
                    kind, value = box.get(timeout=wait)
                except queue.Empty:
                    if deadline is not None and time.monotonic() >= deadline:
                        raise DeadlineExceeded from None
                    continue
                if token.stopped:
                    return  # what arrived before the stop but was not handed over yet is dropped
                if kind == "item":
                    deadline = None
                    yield value
                elif kind == "end":
                    self.finished = True
                    return
                elif kind == "error":
                    raise value
                else:
                    return
        finally:
            token.forget(wake)
