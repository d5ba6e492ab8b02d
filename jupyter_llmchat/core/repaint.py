"""When to repaint a streaming answer: on time, not per token, and never later than one interval.

The one repaint policy of every streaming view (``core.reply.LiveSink``: the cell's live
Markdown, the chat panel, ``-f text``, ``-f code`` and ``--json``). Separates *when* to repaint
from *what* is shown (the caller's ``paint`` callback), as rich's Live does.
"""

from __future__ import annotations

import contextvars
import threading
import time
import weakref
from collections.abc import Callable

__all__ = ["DEFAULT_INTERVAL", "Repainter"]

# 10 repaints/s. What is shown lags what arrived by about one interval plus one token gap
# (target <= 150 ms; 0.125 s measured up to 160 ms at 50 tokens/s). Each display message costs
# ~560 bytes of headers, so at slow rates the repaint count, not the text, dominates IOPub bytes.
DEFAULT_INTERVAL = 0.1


class Repainter:
    """Calls ``paint()`` at most once per ``interval`` seconds while changes are pending.

    ``changed()`` is called by the writer after each change: it repaints right there when the
    change is due (so normally the writer's thread does the work). Until a repaint has shown
    something (``paint`` calls ``nothing_shown()`` while all it has is held back, e.g. a lone
    ``#``), every change is due at once: the first text shows the moment it arrives, and the
    throttling starts after it.
    When the writer stalls with a change still unshown, a helper thread repaints it once the
    interval is up; it runs in a copy of the ``start()`` caller's contextvars, so in ipykernel
    its output is routed to the same cell. It sleeps until woken (no polling) and holds only a
    weak reference, so a repainter that is never stopped does not keep anything alive.
    ``paint`` always runs under ``lock``.
    """

    def __init__(
        self,
        paint: Callable[[], bool | float | None],
        *,
        interval: float = DEFAULT_INTERVAL,
        trailing: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not interval > 0:
            raise ValueError(f"interval must be a positive number of seconds, got {interval!r}")
        self.interval = interval
        self.lock = threading.Lock()
        self._paint = paint
        self._clock = clock
        self._trailing = trailing
        self._pending = False
        self._last = float("-inf")
        self._since = float("inf")  # when the oldest change not yet shown arrived
        self._held: float | None = None  # arrival of a change the last repaint held back
        self._blank = False  # set by paint(): nothing is shown yet, so the next change is due at once
        self._stop = threading.Event()
        self._wake = threading.Event()  # set by the writer when a change is left pending
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the helper thread that shows changes left pending by a stalled writer (not after
        ``stop``)."""
        if self._trailing and self._thread is None and not self._stop.is_set():
            context = contextvars.copy_context()
            self._thread = threading.Thread(
                target=context.run,
                args=(_trail, weakref.ref(self), self._wake, self._stop),
                name="llmchat-repaint",
                daemon=True,
            )
            self._thread.start()
            weakref.finalize(self, _release, self._wake, self._stop)  # never stopped: thread ends

    def stop(self) -> None:
        """Stop repainting (the caller shows the final state itself). Safe to call twice."""
        self._stop.set()
        self._wake.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=2 * self.interval + 1.0)

    def changed(self, now: float | None = None) -> None:
        """Note a change (made at ``now``, default: the clock); repaint now if it is due."""
        if now is None:
            now = self._clock()
        if not self._pending:
            self._since = now if self._held is None else self._held
            self._pending = True
        if now >= self.due():
            self.flush()
        elif self._thread is not None and not self._wake.is_set():
            self._wake.set()

    def nothing_shown(self) -> None:
        """Called by ``paint``: this repaint left the view as empty as before (everything was
        held back), so the next change is painted at once instead of one interval later."""
        self._blank = True

    def due(self) -> float:
        """When the pending change must be shown: one interval after the last repaint, or after
        the oldest change still unshown (held back by the last repaint), whichever is sooner."""
        return min(self._last, self._since) + self.interval

    def flush(self, *, force: bool = False) -> bool:
        """Repaint if a change is pending and due (or ``force``); True if painted.

        ``paint`` may say that part of the change is still held back (e.g. a half-typed
        Markdown marker) by returning when that part arrived (a clock time; False: unknown, taken
        as the oldest pending change): the next change is then due one interval after it.
        """
        with self.lock:
            if self._stop.is_set() or not self._pending:
                return False
            now = self._clock()
            if not force and now < self.due():
                return False
            since = self._since
            # cleared before painting: a change noted while painting stays pending
            self._pending = False
            self._last = now
            self._blank = False
            held = self._paint()
            self._held = since if held is False else None if held in (None, True) else float(held)
            if self._blank:  # nothing on screen yet: no reason to wait before the next change
                self._last, self._held = float("-inf"), None
            return True


def _release(wake: threading.Event, stop: threading.Event) -> None:
    stop.set()
    wake.set()


def _trail(ref: weakref.ref[Repainter], wake: threading.Event, stop: threading.Event) -> None:
    """The helper thread: when woken, repaint a pending change as soon as the interval is up."""
    while True:
        wake.wait()
        if stop.is_set():
            return
        wake.clear()
        while True:
            repainter = ref()
            if repainter is None or stop.is_set():
                return
            if not repainter._pending:
                break
            wait = repainter.due() - repainter._clock()
            if wait <= 0:
                repainter.flush()
                continue
            del repainter  # no strong reference while sleeping
            stop.wait(wait)
