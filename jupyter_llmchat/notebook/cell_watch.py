"""Whether a cell shows anything besides our answer: what a sink must know before it replaces the cell's outputs.

A ``%%chat`` cell belongs to the magic. When its answer ends, the sink swaps the pieces it
streamed for one output in a single step (``clear_output(wait=True)``, then the answer: the front
end clears and shows it at once). That would also erase whatever else the cell printed or
displayed (a store warning, the offline demo's note, a ``print`` inside a ``{expression}``), so the
magic runs under ``owning_cell``: a ``CellWatch`` notes every write to stdout/stderr and every
display message of the cell that is not the sinks' own, and a sink swaps only while it saw none.
Everything else (``bot.ask`` in any cell, a cell that runs the magic from code) never swaps.
"""

from __future__ import annotations

import functools
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TypeVar

__all__ = ["CellWatch", "current_cell", "owning_cell", "running_request"]

F = TypeVar("F", bound=Callable[..., Any])
_WATCH: ContextVar[CellWatch | None] = ContextVar("jupyter_llmchat_cell_watch", default=None)
_SEEN = ("display_data", "update_display_data", "clear_output", "execute_result")


class CellWatch:
    """Counts what the running cell shows that is not ours, from ``start()`` to ``stop()``.

    Our sinks ``claim`` their display ids (by prefix) and make their own stream writes and
    ``clear_output`` inside ``ours()``. Writes from other threads count too (they may land in this
    cell); a display published from another thread is not seen (display hooks are per thread).
    """

    def __init__(self) -> None:
        self.others = 0  # outputs of the cell that are not ours
        self._active = False
        self._prefixes: list[str] = []
        self._local = threading.local()  # .ours: the thread is writing for a sink
        # (stream, our write wrapper, the instance's own write before it, or None: the class's)
        self._wrapped: list[tuple[Any, Callable[[str], Any], Callable[[str], Any] | None]] = []
        self._display_pub: Any = None

    def start(self) -> bool:
        """Watch the running cell if it is a notebook cell that starts with a cell magic; False if not."""
        from .publish import in_notebook_kernel

        if self._active or not in_notebook_kernel():
            return False
        from IPython import get_ipython

        shell = get_ipython()
        pub: Any = getattr(shell, "display_pub", None)
        if not hasattr(pub, "register_hook") or not _cell_starts_with_magic(shell):
            return False
        pub.register_hook(self._hook)
        self._display_pub = pub
        for stream in (sys.stdout, sys.stderr):
            # IPython 9 itself sets an instance ``write`` around every cell (to keep outputs in its
            # history): wrap whatever is there, and put exactly that back.
            if hasattr(stream, "__dict__"):
                before = vars(stream).get("write")
                wrapper = self._wrap(stream.write)
                setattr(stream, "write", wrapper)  # this object only (print() looks it up there)  # noqa: B010
                self._wrapped.append((stream, wrapper, before))
        self._active = True
        return True

    def stop(self) -> None:
        """Stop watching; the streams and the display publisher are as they were. Idempotent."""
        if self._display_pub is not None:
            self._display_pub.unregister_hook(self._hook)
            self._display_pub = None
        for stream, wrapper, before in self._wrapped:
            if vars(stream).get("write") is wrapper:
                if before is None:
                    del stream.write
                else:
                    stream.write = before
        self._wrapped = []
        self._active = False

    def claim(self, display_id_prefix: str) -> None:
        """Display messages whose display id starts with ``display_id_prefix`` are ours."""
        self._prefixes.append(display_id_prefix)

    @contextmanager
    def ours(self) -> Iterator[None]:
        """What this thread writes or clears inside the block is a sink's own output."""
        before = getattr(self._local, "ours", False)
        self._local.ours = True
        try:
            yield
        finally:
            self._local.ours = before

    def only_ours(self) -> bool:
        """True while watching and nothing but our outputs was shown: the cell may be replaced."""
        return self._active and self.others == 0

    def _mine(self) -> bool:
        return bool(getattr(self._local, "ours", False))

    def _wrap(self, write: Callable[[str], Any]) -> Callable[[str], Any]:
        def watched_write(text: str) -> Any:
            if text and self._active and not self._mine():
                self.others += 1
            return write(text)

        return watched_write

    def _hook(self, msg: dict[str, Any]) -> dict[str, Any]:
        if msg.get("msg_type") in _SEEN and not self._mine():
            display_id = str((msg.get("content") or {}).get("transient", {}).get("display_id") or "")
            if not (display_id and display_id.startswith(tuple(self._prefixes))):
                self.others += 1
        return msg  # only watched: always sent on


def running_request(shell: Any) -> dict[str, Any]:
    """The execute request of the cell being run (its code, and the cell id a front end sends in
    its metadata); ``{}`` outside a kernel or when the kernel cannot say."""
    kernel = getattr(shell, "kernel", None)
    try:
        parent = kernel.get_parent() if kernel is not None else {}
    except Exception:
        return {}
    return parent or {}


def _cell_starts_with_magic(shell: Any) -> bool:
    """Whether the cell being run starts with a cell magic (so the magic owns all its outputs)."""
    code = (running_request(shell).get("content") or {}).get("code")
    return isinstance(code, str) and code.lstrip().startswith("%%")


def owning_cell(method: F) -> F:
    """Decorator of a cell magic: while it runs, ``current_cell()`` is the watch of its cell (None
    when the cell is not one a magic owns), so its sinks may replace the cell's outputs at the end."""

    @functools.wraps(method)
    def run(*args: Any, **kwargs: Any) -> Any:
        watch = CellWatch()
        token = _WATCH.set(watch if watch.start() else None)
        try:
            return method(*args, **kwargs)
        finally:
            _WATCH.reset(token)
            watch.stop()

    return run  # type: ignore[return-value]


def current_cell() -> CellWatch | None:
    """The watch of the cell a magic owns and runs now (set by ``owning_cell``), or None."""
    return _WATCH.get()
