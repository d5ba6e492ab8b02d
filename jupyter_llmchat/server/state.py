"""What a running loopback server remembers: settings, the script queue, the request log, the cache.

Shared between the public ``LoopbackServer`` and the request handler threads; every mutation of
the queue and the log happens under ``lock``.
"""

from __future__ import annotations

import socket
import threading
from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Any

from .batches import BatchService
from .local_servers import LocalServer
from .prompt_cache import PromptCache
from .script import Script

DEFAULT_MODELS = ("gpt-4o", "gpt-4o-mini", "gpt-4.1", "gpt-4.1-mini", "gpt-4.1-nano", "o3-mini",
                  "o4-mini", "gpt-4", "gpt-3.5-turbo", "gpt-5", "gpt-5-mini", "loopback-demo",
                  "text-embedding-3-small", "text-embedding-3-large", "text-embedding-ada-002")


@dataclass
class LoggedRequest:
    """One request as received (key masked), and how the server answered it."""

    method: str
    path: str  # without the query string
    headers: dict[str, str]  # Authorization shown as "Bearer ***", api-key as "***"
    body: Any  # parsed JSON, or None (GET, empty or unparsable body)
    time: float  # time.time() when it arrived
    query: str = ""  # e.g. "api-version=2024-10-21" (Azure)
    status: int | None = None  # HTTP status sent (None until the headers went out)
    # "complete", "length", "error", "fault:<name>", "client_closed" or "server_stopped"
    outcome: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ServerState:
    api_key: str | None
    default_tokens: int
    default_rate: float | None
    models: tuple[str, ...]
    strict: bool  # reject what OpenAI rejects (max_tokens on reasoning models)
    model_list: bool = True  # False: GET /v1/models answers 404, as servers without the route do
    latency: float = 0.0  # seconds every answer waits before its headers (a script's delay= overrides it)
    local: LocalServer | None = None  # the local server imitated (Ollama, llama.cpp, vLLM, LM Studio)
    scripts: deque[Script] = field(default_factory=deque)
    log: list[LoggedRequest] = field(default_factory=list)
    cache: PromptCache = field(default_factory=PromptCache)
    batches: BatchService = field(default_factory=BatchService)  # /v1/files and /v1/batches
    lock: threading.Lock = field(default_factory=threading.Lock)
    stopping: threading.Event = field(default_factory=threading.Event)
    connections: set[socket.socket] = field(default_factory=set)

    def push(self, scripts: list[Script]) -> int:
        """Queue scripts; returns how many requests are now scripted."""
        with self.lock:
            self.scripts.extend(scripts)
            return self._pending()

    def pop(self) -> Script:
        """The script for the next request: the head of the queue, or the default reply."""
        with self.lock:
            if not self.scripts:
                return Script()
            script = self.scripts[0]
            if script.times > 1:
                self.scripts[0] = Script(**{**script.to_dict(), "times": script.times - 1})
            else:
                self.scripts.popleft()
            return script

    def pending(self) -> int:
        with self.lock:
            return self._pending()

    def _pending(self) -> int:
        return sum(script.times for script in self.scripts)

    def record(self, entry: LoggedRequest) -> None:
        with self.lock:
            self.log.append(entry)

    def requests(self) -> list[LoggedRequest]:
        with self.lock:
            return list(self.log)

    def reset(self) -> None:
        with self.lock:
            self.scripts.clear()
            self.log.clear()
        self.cache.clear()
        self.batches.reset()

    def track(self, connection: socket.socket, open_: bool) -> None:
        with self.lock:
            (self.connections.add if open_ else self.connections.discard)(connection)

    def drop_connections(self) -> None:
        """Close kept-alive and streaming connections so a stopped server really stops answering."""
        with self.lock:
            connections = list(self.connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
