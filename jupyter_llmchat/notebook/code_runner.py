"""Run a piece of Python in the notebook's namespace for the model's ``run_python`` tool, with its
printed output captured and a time limit, in a thread of its own so nothing it does hangs the kernel.

The code runs like a cell without IPython's extras (no magics, no ``!shell``, nothing added to
``In``/``Out``/``_``): ``exec`` with the user namespace as its globals, so what it assigns stays in
the notebook, and the value of a last bare expression is returned. What it prints (``sys.stdout`` /
``sys.stderr``, from its own thread only) is captured, not shown; the user's other output is not.

The caller waits at most ``time_limit`` seconds. Then the code is stopped: an exception is raised in
its thread, which ends a loop at the next line it runs; whatever it assigned before that stays
assigned. Code blocked inside one call that does not return to Python (``time.sleep(1e9)``, a lock,
a long C routine) cannot be stopped that way: after a short grace it is abandoned, still running in
the background, and may go on changing the namespace until it ends or the kernel restarts; the
result says so. A kernel interrupt while waiting (KeyboardInterrupt) is passed on to the code in the
same way and then raised in the caller, so the question ends at once; ``run_code_async`` does the
same when it is cancelled (the tool loop cancels an async tool when the answer is stopped).
"""

from __future__ import annotations

import ast
import asyncio
import ctypes
import itertools
import linecache
import sys
import threading
import traceback
from dataclasses import dataclass
from typing import Any, Literal

CAPTURE_CHARS = 20_000  # printed text kept per stream; the rest is counted, not kept
GRACE_SECONDS = 1.0  # how long stopped code may take to end before it is abandoned
_RETRY_SECONDS = 0.05  # the stop is raised again at this pace during the grace (code may catch it once)
_runs = itertools.count(1)  # numbers the code's file name, so tracebacks of its functions stay right

RunStatus = Literal["finished", "failed", "stopped", "abandoned"]


class TimeLimitExceeded(BaseException):
    """Raised inside code that ran past its time limit (a BaseException: ``except Exception`` in
    the code does not swallow it)."""


@dataclass
class RunResult:
    """What running the code gave. ``value``: repr of its last bare expression, if it had one;
    ``error``: the traceback of what it raised (its own frames only); ``stopped_at``: the line of the
    code it was running when stopped, if known."""

    status: RunStatus
    stdout: str = ""
    stderr: str = ""
    value: str | None = None
    error: str | None = None
    stopped_at: int | None = None
    dropped: int = 0  # printed characters beyond CAPTURE_CHARS (per stream), not kept


def run_code(code: str, namespace: dict[str, Any], *, time_limit: float,
             show_value: Any = repr) -> RunResult:
    """Run ``code`` with ``namespace`` as its globals; wait at most ``time_limit`` seconds.

    A syntax error is reported without running anything. ``show_value`` turns the last bare
    expression's value into text (in the code's thread, under the same time limit)."""
    run = _prepare(code, namespace, show_value)
    return run if isinstance(run, RunResult) else run.wait(time_limit)


async def run_code_async(code: str, namespace: dict[str, Any], *, time_limit: float,
                         show_value: Any = repr) -> RunResult:
    """``run_code`` for an event loop. Cancelling it (the answer was stopped: the tool loop cancels
    an async tool) stops the code at once, as a kernel interrupt would: KeyboardInterrupt is raised
    in it."""
    run = _prepare(code, namespace, show_value)
    return run if isinstance(run, RunResult) else await run.wait_async(time_limit)


def _prepare(code: str, namespace: dict[str, Any], show_value: Any) -> _Run | RunResult:
    """A run ready to start, or the result of code that does not compile."""
    filename = f"<run_python {next(_runs)}>"
    try:
        body, last = _compile(code, filename)
    except SyntaxError as error:
        return RunResult("failed", error=_syntax_error(error))
    linecache.cache[filename] = (len(code), None, code.splitlines(keepends=True), filename)
    return _Run(body, last, namespace, filename, show_value)


def _compile(code: str, filename: str) -> tuple[Any, Any]:
    """(module code, code of the last bare expression or None)."""
    tree = ast.parse(code, filename, "exec")
    last = None
    final = tree.body[-1] if tree.body else None
    if isinstance(final, ast.Expr):  # its value is returned, as a cell's is shown
        tree.body.pop()
        last = compile(ast.Expression(final.value), filename, "eval")
    return compile(tree, filename, "exec"), last


def _syntax_error(error: SyntaxError) -> str:
    return "".join(traceback.format_exception_only(type(error), error)).rstrip()


class _Run:
    """One run: the code's thread, its captured output, and stopping it."""

    def __init__(self, body: Any, last: Any, namespace: dict[str, Any], filename: str, show_value: Any) -> None:
        self.body, self.last, self.namespace = body, last, namespace
        self.filename, self.show_value = filename, show_value
        self.stdout, self.stderr = _Capture(), _Capture()
        self.value: str | None = None
        self.raised: BaseException | None = None
        self.finished = threading.Event()
        self.ended = False  # set once the code has ended (finished, failed or stopped)
        self.lock = threading.Lock()  # a stop is raised in the thread only while its code runs
        self.thread = threading.Thread(target=self._target, name="llmchat-run-python", daemon=True)
        self.on_finish: Any = None  # called in the code's thread once it has ended

    def wait(self, time_limit: float) -> RunResult:
        self.thread.start()
        try:
            if self.finished.wait(time_limit):
                return self._result()
            return self._past_time_limit()
        except KeyboardInterrupt:  # the kernel was interrupted while the code ran: end both
            self._stop(KeyboardInterrupt)
            raise

    async def wait_async(self, time_limit: float) -> RunResult:
        loop = asyncio.get_running_loop()
        ended = asyncio.Event()
        self.on_finish = lambda: loop.call_soon_threadsafe(ended.set)
        self.thread.start()
        try:
            await asyncio.wait_for(ended.wait(), time_limit)
        except asyncio.TimeoutError:
            return self._past_time_limit()
        except (asyncio.CancelledError, KeyboardInterrupt):
            self._stop(KeyboardInterrupt)
            raise
        return self._result()

    def _past_time_limit(self) -> RunResult:
        if self._stop(TimeLimitExceeded):
            return self._result(stopped=True)
        return self._result(abandoned=True)

    def _target(self) -> None:
        ident = threading.get_ident()
        try:
            try:
                _ROUTER.route(ident, self.stdout, self.stderr)
                exec(self.body, self.namespace)
                if self.last is not None:
                    value = eval(self.last, self.namespace)
                    if value is not None:
                        self.value = str(self.show_value(value))
            except BaseException as error:
                self.raised = error
            self._settle(ident)
        except BaseException:  # a stop that landed just as the code ended
            self._settle(ident)
        finally:
            _ROUTER.unroute(ident)
            self.finished.set()
            if self.on_finish is not None:
                try:
                    self.on_finish()
                except RuntimeError:  # the waiting event loop is gone (it was stopped): nobody to tell
                    pass

    def _settle(self, ident: int) -> None:
        """Mark the code ended, so no stop is raised in this thread any more, and clear one pending."""
        while True:
            try:
                with self.lock:
                    self.ended = True
                    _raise_in_thread(ident, None)
                return
            except BaseException:  # a stop raised in between: try again (none follows once ended)
                continue

    def _stop(self, exception: type[BaseException]) -> bool:
        """Raise ``exception`` in the code's thread (again every few ms, in case it is caught)
        until it ends or the grace is over; True if it ended."""
        deadline = GRACE_SECONDS
        while deadline > 0:
            with self.lock:
                if not self.ended and self.thread.ident is not None:
                    _raise_in_thread(self.thread.ident, exception)
            if self.finished.wait(_RETRY_SECONDS):
                return True
            deadline -= _RETRY_SECONDS
        return self.finished.is_set()

    def _result(self, *, stopped: bool = False, abandoned: bool = False) -> RunResult:
        stdout, stderr = self.stdout.text(), self.stderr.text()
        dropped = self.stdout.dropped + self.stderr.dropped
        if abandoned:
            return RunResult("abandoned", stdout, stderr, dropped=dropped)
        error = self.raised
        if stopped or isinstance(error, TimeLimitExceeded):
            return RunResult("stopped", stdout, stderr, stopped_at=self._line_stopped(error), dropped=dropped)
        if error is not None:
            return RunResult("failed", stdout, stderr, error=self._traceback(error), dropped=dropped)
        return RunResult("finished", stdout, stderr, value=self.value, dropped=dropped)

    def _traceback(self, error: BaseException) -> str:
        """The traceback from the code's first frame on (this module's frames left out)."""
        frames = traceback.extract_tb(error.__traceback__)
        start = next((i for i, frame in enumerate(frames) if frame.filename == self.filename), 0)
        text = "Traceback (most recent call last):\n" if start < len(frames) else ""
        text += "".join(traceback.format_list(frames[start:]))
        return text + "".join(traceback.format_exception_only(type(error), error)).rstrip()

    def _line_stopped(self, error: BaseException | None) -> int | None:
        """The line of the code (its innermost frame) where it was stopped, if known."""
        if error is None:
            return None
        lines = [frame.lineno for frame in traceback.extract_tb(error.__traceback__)
                 if frame.filename == self.filename]
        return lines[-1] if lines else None


def _raise_in_thread(ident: int, exception: type[BaseException] | None) -> None:
    """Make ``exception`` raise in thread ``ident`` at its next Python line (None: cancel one pending)."""
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident),
                                               ctypes.py_object(exception) if exception else None)


class _Capture:
    """Printed text kept up to CAPTURE_CHARS; what comes after is counted."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.kept = 0
        self.dropped = 0
        self.lock = threading.Lock()

    def write(self, text: str) -> int:
        with self.lock:
            room = CAPTURE_CHARS - self.kept
            if room > 0:
                self.parts.append(text[:room])
                self.kept += min(room, len(text))
            self.dropped += max(0, len(text) - max(room, 0))
        return len(text)

    def text(self) -> str:
        with self.lock:
            return "".join(self.parts)


class _RoutedStream:
    """Stands in for sys.stdout or sys.stderr while code runs: writes from a routed thread go to its
    capture, every other thread's to the original stream (the kernel's), untouched."""

    def __init__(self, original: Any, captures: dict[int, _Capture]) -> None:
        self.original = original
        self.captures = captures

    def write(self, text: str) -> int:
        capture = self.captures.get(threading.get_ident())
        return capture.write(text) if capture is not None else self.original.write(text)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        if threading.get_ident() not in self.captures:
            self.original.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.original, name)


class _Router:
    """Puts the routed streams in place while any code runs, and the originals back after."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.stdout: dict[int, _Capture] = {}
        self.stderr: dict[int, _Capture] = {}

    def route(self, ident: int, stdout: _Capture, stderr: _Capture) -> None:
        with self.lock:
            self.stdout[ident], self.stderr[ident] = stdout, stderr
            for name, captures in (("stdout", self.stdout), ("stderr", self.stderr)):
                current = getattr(sys, name)
                if not (isinstance(current, _RoutedStream) and current.captures is captures):
                    setattr(sys, name, _RoutedStream(current, captures))

    def unroute(self, ident: int) -> None:
        with self.lock:
            self.stdout.pop(ident, None)
            self.stderr.pop(ident, None)
            if self.stdout:
                return
            for name in ("stdout", "stderr"):
                current = getattr(sys, name)
                if isinstance(current, _RoutedStream):  # put back only our own stand-in
                    setattr(sys, name, current.original)


_ROUTER = _Router()
