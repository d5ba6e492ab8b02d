"""The wire: once cut, a request sends nothing more, and a read blocked on its socket returns at once.

Real sockets (a connected pair), real threads; the streams wrap them the way httpcore's do.
"""

from __future__ import annotations

import contextvars
import gc
import socket
import threading
import warnings
import weakref
from collections.abc import Iterator
from typing import Any

import pytest

from jupyter_llmchat.core.client.chat import ChatClient
from jupyter_llmchat.core.client.wire import CURRENT_WIRE, Abandoned, Wire, _CuttableBackend, check_wire


class SocketStream:
    """The part of httpcore's NetworkStream the wire uses, over a real socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self.sock.sendall(buffer)

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self.sock.recv(max_bytes)

    def close(self) -> None:
        self.sock.close()

    def get_extra_info(self, info: str) -> Any:
        return self.sock if info == "socket" else None


class PairBackend:
    """Hands out one end of a socket pair per connection; the other end plays the server.
    ``close`` closes both ends of every pair (the fixture does, after each test)."""

    def __init__(self) -> None:
        self.servers: list[socket.socket] = []
        self.clients: list[socket.socket] = []

    def connect_tcp(self, *args: Any, **kwargs: Any) -> SocketStream:
        client, server = socket.socketpair()
        self.servers.append(server)
        self.clients.append(client)
        return SocketStream(client)

    def close(self) -> None:
        for sock in self.clients + self.servers:
            sock.close()

    def connect_unix_socket(self, *args: Any, **kwargs: Any) -> SocketStream:
        return self.connect_tcp()

    def sleep(self, seconds: float) -> None:
        pass


@pytest.fixture
def backend() -> Iterator[PairBackend]:
    pairs = PairBackend()
    yield pairs
    pairs.close()


def in_context(wire: Wire | None, work: Any) -> Any:
    context = contextvars.copy_context()
    context.run(CURRENT_WIRE.set, wire)
    return context.run(work)


def test_a_cut_wire_refuses_new_connections_and_sends(backend: PairBackend) -> None:
    wire = Wire()
    cuttable = _CuttableBackend(backend)
    stream = in_context(wire, lambda: cuttable.connect_tcp("127.0.0.1", 80))
    in_context(wire, lambda: stream.write(b"GET / HTTP/1.1\r\n\r\n"))
    assert backend.servers[0].recv(100) == b"GET / HTTP/1.1\r\n\r\n"
    wire.cut()
    with pytest.raises(Abandoned):
        in_context(wire, lambda: cuttable.connect_tcp("127.0.0.1", 80))
    with pytest.raises(Abandoned):
        in_context(wire, lambda: stream.write(b"again"))
    with pytest.raises(Abandoned):
        in_context(wire, check_wire)
    assert len(backend.servers) == 1  # no second connection was opened


def test_cut_unblocks_a_read_and_the_server_sees_the_hang_up(backend: PairBackend) -> None:
    wire = Wire()
    stream = in_context(wire, lambda: _CuttableBackend(backend).connect_tcp("127.0.0.1", 80))
    in_context(wire, lambda: stream.write(b"request"))
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(stream.read(100)))
    reader.start()
    wire.cut()
    reader.join(timeout=10)
    assert not reader.is_alive() and got == [b""]  # the blocked read returned: end of stream
    server = backend.servers[0]
    assert server.recv(100) == b"request"
    assert server.recv(100) == b""  # the server sees the client hang up


def test_outside_a_request_nothing_is_checked_and_release_keeps_the_connection(backend: PairBackend) -> None:
    check_wire()  # no wire in this context: a request of another client goes on
    wire = Wire()
    stream = in_context(wire, lambda: _CuttableBackend(backend).connect_tcp("127.0.0.1", 80))
    in_context(wire, lambda: stream.write(b"one"))
    wire.release()  # the request finished: its connection goes back to the pool untouched
    wire.cut()
    backend.servers[0].sendall(b"still open")
    assert stream.read(100) == b"still open"


def test_a_client_dropped_unclosed_closes_its_kept_alive_connections(loopback) -> None:
    # The SDK closes only the HTTP client it makes itself; ours is handed to it, so it closes its
    # pool when it is collected, as the SDK's does: no socket is left to the garbage collector.
    client = ChatClient(base_url=loopback.base_url, api_key="sk-test")
    assert client.list_models()  # a kept-alive connection now waits in the pool
    dropped = weakref.ref(client.sdk._client)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        del client
        gc.collect()
    assert dropped() is None  # the client really was collected
    assert [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)] == []
