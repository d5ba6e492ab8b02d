"""The wire under a ChatStream: cut an abandoned request's connection at once, and refuse to send
anything more for it (the SDK may wake from a retry sleep; its next request is never sent)."""

from __future__ import annotations

import contextvars
import socket
import threading
import weakref
from typing import Any, cast


class Abandoned(Exception):
    """Raised inside the SDK instead of sending a request whose answer was closed. Not an HTTP
    error, so the SDK neither retries nor wraps it."""


class Wire:
    """The connections one ChatStream's request is using (registered as they send), so ``cut``
    can shut them at once; once cut, nothing more is sent for that stream."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._streams: set[_CuttableStream] = set()
        self.is_cut = False

    def use(self, stream: _CuttableStream) -> None:
        with self._lock:
            if self.is_cut:
                raise Abandoned("the answer was stopped: its request is not sent")
            self._streams.add(stream)

    def check(self) -> None:
        if self.is_cut:
            raise Abandoned("the answer was stopped: its request is not sent")

    def release(self) -> None:
        """The request is done with its connections: they go back to the pool untouched."""
        with self._lock:
            self._streams.clear()

    def cut(self) -> None:
        with self._lock:
            self.is_cut = True
            streams, self._streams = list(self._streams), set()
        for stream in streams:
            stream.shutdown()


# The wire of the request the current (helper) thread is sending; set by ChatStream._produce.
CURRENT_WIRE: contextvars.ContextVar[Wire | None] = contextvars.ContextVar("jupyter_llmchat_wire", default=None)


def check_wire(*_: Any) -> None:
    """Refuse to go on with a request whose answer was closed (an httpx event hook, and before a
    connection is opened)."""
    wire = CURRENT_WIRE.get()
    if wire is not None:
        wire.check()


class _CuttableStream:
    """An httpcore network stream that registers with the wire of the request writing to it, so
    the request can be cut (socket shutdown: a blocked read returns at once, the server sees the
    hang-up) from another thread."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        wire = CURRENT_WIRE.get()
        if wire is not None:
            wire.use(self)
        self._inner.write(buffer, timeout)

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return cast(bytes, self._inner.read(max_bytes, timeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(self, ssl_context: Any, server_hostname: str | None = None,
                  timeout: float | None = None) -> _CuttableStream:
        return _CuttableStream(self._inner.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)

    def shutdown(self) -> None:
        sock = self._inner.get_extra_info("socket")
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already closed


class _CuttableBackend:
    """httpcore's network backend, handing out cuttable streams."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def connect_tcp(self, *args: Any, **kwargs: Any) -> _CuttableStream:
        check_wire()
        return _CuttableStream(self._inner.connect_tcp(*args, **kwargs))

    def connect_unix_socket(self, *args: Any, **kwargs: Any) -> _CuttableStream:
        check_wire()
        return _CuttableStream(self._inner.connect_unix_socket(*args, **kwargs))

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


def stoppable_http_client() -> Any:
    """The SDK's default httpx client, plus what stop needs: a request hook that refuses to send
    for a closed answer, and connections that can be cut from another thread.

    Like the client the SDK makes for itself when given none, it closes its kept-alive
    connections when it is dropped unclosed (a Chatbot nobody closed): a client handed to the
    SDK is never closed by it, and its open sockets would be left to the garbage collector."""
    import httpx2
    import openai

    transport = httpx2.HTTPTransport(limits=openai.DEFAULT_CONNECTION_LIMITS)
    pool = getattr(transport, "_pool", None)  # httpx2 builds the httpcore pool; we wrap its backend
    backend = getattr(pool, "_network_backend", None)
    if backend is not None:
        pool._network_backend = _CuttableBackend(backend)  # type: ignore[union-attr]
    client = openai.DefaultHttpx2Client(transport=transport, event_hooks={"request": [check_wire]})
    # The finalizer holds the transport, not the client, so the client can still be collected.
    weakref.finalize(client, transport.close)
    return client
