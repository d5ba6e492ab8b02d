"""Widget clicks while a cell runs: let the kernel handle comm messages during a wait in the cell.

A cell runs on the kernel's main thread, inside the handler of its ``execute_request``; the
kernel reads its next shell message only when that handler returns. A button's click is a
``comm_msg`` on the shell channel, so a cell that waits for a click (Approve / Deny under a
``%%chat`` cell) would wait forever. ``CommPump`` lets the kernel's own comm handlers run during
such a wait, as jupyter-ui-poll does for older kernels:

- for the wait, the receive callback of the stream that brings the main shell its messages
  (ipykernel 7: the inproc pair from the shell channel thread; ipykernel 6: the shell stream) is
  ours; ``poll()`` reads what has arrived through that stream (``ZMQStream.flush``);
- comm messages (``comm_open``, ``comm_msg``, ``comm_close``) go to the kernel's handler for them
  at once, under their own parent header (as ipykernel 7 dispatches comms while an async cell
  awaits), and the cell's parent is restored afterwards, so the cell's outputs stay in the cell;
- every other message (the next cell's ``execute_request``, ``kernel_info_request``, completion)
  is held, and handed to the kernel's own callback, in order, when the wait ends: each waits
  for the running cell as it would have, and runs after it.

Only the kernel's main thread may pump (the stream belongs to its event loop); ``CommPump.for_kernel``
returns None anywhere else, or when the kernel is not shaped as expected, and the caller falls
back (``input()``). A KeyboardInterrupt (the kernel's interrupt) ends the wait like any other
exit: the stream gets its callback back and the held messages are handed over.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["CommPump"]

COMM_TYPES = frozenset({"comm_open", "comm_msg", "comm_close"})


class CommPump:
    """Lets the kernel handle comm messages while the running cell waits (see the module docstring).

    Use as a context manager around the wait, calling ``poll()`` between short sleeps.
    """

    def __init__(self, kernel: Any, stream: Any) -> None:
        self.kernel = kernel
        self.stream = stream
        self.handled = 0  # comm messages handled during the wait
        self._held: list[Any] = []
        self._callback: Callable[..., Any] | None = None
        self._copy = False
        self._active = False

    @classmethod
    def for_kernel(cls, kernel: Any = None) -> CommPump | None:
        """A pump for the running ipykernel, or None when this thread cannot pump it (not the
        kernel's main thread, no kernel, or a kernel shaped differently from ipykernel 6 and 7)."""
        if kernel is None:
            kernel = _running_kernel()
        if kernel is None or threading.current_thread() is not threading.main_thread():
            return None
        stream = _main_shell_stream(kernel)
        session = getattr(kernel, "session", None)
        handlers = getattr(kernel, "shell_handlers", None)
        if stream is None or session is None or not isinstance(handlers, dict):
            return None
        if not callable(getattr(stream, "_recv_callback", None)) or not hasattr(stream, "flush"):
            return None
        return cls(kernel, stream)

    def __enter__(self) -> CommPump:
        stream = self.stream
        self._callback = stream._recv_callback
        self._copy = bool(getattr(stream, "_recv_copy", False))
        stream.on_recv(self._received, copy=False)
        self._active = True
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def poll(self, limit: int = 50) -> int:
        """Read up to ``limit`` messages that have arrived (comm messages are handled now, the
        rest held); how many were read."""
        if not self._active:
            return 0
        import zmq

        return int(self.stream.flush(zmq.POLLIN, limit=limit))

    def close(self) -> None:
        """Give the stream its callback back and hand it the held messages, in order. Idempotent."""
        if not self._active:
            return
        self._active = False
        callback = self._callback
        self.stream.on_recv(callback, copy=self._copy)
        held, self._held = self._held, []
        for message in held:
            _run_callback(callback, message)

    # -- messages ------------------------------------------------------------------------------
    def _received(self, message: list[Any]) -> None:
        kernel = self.kernel
        session = kernel.session
        try:
            idents, frames = session.feed_identities(message, copy=False)
            header = session.deserialize(frames, content=False, copy=False)["header"]
        except Exception:
            self._held.append(message)  # not ours to judge: the kernel's own handler sees it later
            return
        msg_type = header.get("msg_type")
        if msg_type in COMM_TYPES:  # a click: handled now, ahead of the held messages
            self._handle_comm(idents, frames, msg_type)
        else:
            self._held.append(message)

    def _handle_comm(self, idents: list[bytes], frames: list[Any], msg_type: str) -> None:
        kernel = self.kernel
        handler = kernel.shell_handlers.get(msg_type)
        if handler is None:
            return
        msg = kernel.session.deserialize(frames, content=True, copy=False)
        parent = kernel.get_parent("shell")
        ident = _parent_ident(kernel)
        kernel.set_parent(idents, msg, channel="shell")
        try:
            result = handler(self._reply_stream(), idents, msg)
            if inspect.isawaitable(result):
                _schedule(result)  # not expected of comm handlers: runs after the cell
            self.handled += 1
        except Exception:  # a widget's own failure must not end the wait; the kernel logs it
            kernel.log.error("Exception in comm message handler during a wait", exc_info=True)
        finally:
            kernel.set_parent(ident, parent, channel="shell")

    def _reply_stream(self) -> Any:
        """Where a handler would send a reply (comm handlers send none): the kernel's shell stream."""
        return getattr(self.kernel, "shell_stream", None)


def _run_callback(callback: Callable[..., Any] | None, message: Any) -> None:
    """What ZMQStream does with a received message: call back, schedule what it returns."""
    if callback is None:
        return
    result = callback(message)
    if inspect.isawaitable(result):
        _schedule(result)


_SCHEDULED: set[asyncio.Future[Any]] = set()  # kept until done: the loop holds tasks only weakly


def _schedule(awaitable: Any) -> None:
    """Run ``awaitable`` on the kernel's event loop once it has control again (after the cell)."""
    future = asyncio.ensure_future(awaitable)
    _SCHEDULED.add(future)
    future.add_done_callback(_SCHEDULED.discard)


def _running_kernel() -> Any:
    from .publish import in_notebook_kernel

    if not in_notebook_kernel():
        return None
    from IPython import get_ipython

    return getattr(get_ipython(), "kernel", None)


def _main_shell_stream(kernel: Any) -> Any:
    """The stream that brings the main shell its messages (ipykernel 7 with its shell channel
    thread: the inproc pair's receiving end; ipykernel 6: the shell stream itself)."""
    thread = getattr(kernel, "shell_channel_thread", None)
    if thread is not None:
        try:
            return thread.manager.get_shell_channel_to_subshell_pair(None).to_stream
        except Exception:
            return None
    return getattr(kernel, "shell_stream", None)


def _parent_ident(kernel: Any) -> Any:
    idents = getattr(kernel, "_parent_ident", None)
    try:
        return idents["shell"] if idents is not None else b""
    except (KeyError, TypeError):
        return b""
