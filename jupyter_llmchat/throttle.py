"""When to repaint a streaming answer: on time, not per token, and never later than one interval.

Shared by the notebook renderer and the chat panel. Separates *when* to repaint from *what* is
shown (the caller's ``paint`` callback), as rich's Live does.
"""

from __future__ import annotations

import contextvars
import threading
import time
from collections.abc import Callable

__all__ = ["DEFAULT_INTERVAL", "Repainter"]

# 10 repaints/s. What is shown lags what arrived by about one interval plus one token gap
# (target <= 150 ms; 0.125 s measured up to 160 ms at 50 tokens/s). Each display message costs
# ~560 bytes of headers, so at slow rates the repaint count, not the text, dominates IOPub bytes.
DEFAULT_INTERVAL = 0.1


class Repainter:
    """Calls ``paint()`` at most once per ``interval`` seconds while changes are pending.

    ``changed()`` is called by the writer after each change: it repaints right there when an
    interval has passed since the last repaint (so normally the writer's thread does the work).
    When the writer stalls with a change still unshown, a helper thread repaints it once the
    interval is up; it runs in a copy of the ``start()`` caller's contextvars, so in ipykernel
    its output is routed to the same cell. ``paint`` always runs under ``lock``.
    """

    def __init__(
        self,
        paint: Callable[[], None],
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
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the helper thread that shows changes left pending by a stalled writer."""
        if self._trailing and self._thread is None:
            context = contextvars.copy_context()
            self._thread = threading.Thread(
                target=context.run, args=(self._run,), name="llmchat-repaint", daemon=True
            )
            self._thread.start()

    def stop(self) -> None:
        """Stop repainting (the caller shows the final state itself). Safe to call twice."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=2 * self.interval + 1.0)

    def changed(self) -> None:
        """Note a change; repaint now if an interval has passed since the last repaint."""
        self._pending = True
        if self._clock() - self._last >= self.interval:
            self.flush()

    def flush(self, *, force: bool = False) -> bool:
        """Repaint if a change is pending and the interval is up (or ``force``); True if painted."""
        with self.lock:
            if self._stop.is_set() or not self._pending:
                return False
            now = self._clock()
            if not force and now - self._last < self.interval:
                return False
            # cleared before painting: a change noted while painting stays pending
            self._pending = False
            self._last = now
            self._paint()
            return True

    def _run(self) -> None:
        while not self._stop.is_set():
            wait = self.interval / 2
            if self._pending:
                wait = self._last + self.interval - self._clock()
                if wait <= 0:
                    self.flush()
                    continue
            self._stop.wait(max(wait, 0.002))
