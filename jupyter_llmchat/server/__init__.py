"""A loopback OpenAI-compatible server: real HTTP on 127.0.0.1 for tests and the offline demo.

    with LoopbackServer() as srv:
        client = OpenAI(base_url=srv.base_url, api_key="anything")
        srv.queue(tokens=2000, rate=50.0)          # script the next request
        ...
        srv.requests[-1].body                      # exactly what the client sent

Other processes (a notebook kernel) script it over HTTP: POST {root}/_loopback/queue,
GET {root}/_loopback/requests, POST {root}/_loopback/reset; or per request with the body field
``"loopback": {...}`` (``extra_body=`` in the openai SDK). ``python -m jupyter_llmchat.server``
runs it from a terminal.
"""

from __future__ import annotations

import threading

from .cli import main
from .loopback import LoopbackServer
from .markdown import DISCLOSURE
from .script import FAULTS, Script
from .state import DEFAULT_MODELS, LoggedRequest

__all__ = ["DEFAULT_MODELS", "DEMO_RATE", "DISCLOSURE", "FAULTS", "LoggedRequest", "LoopbackServer",
           "Script", "main", "start_demo_server", "stop_demo_server"]

DEMO_RATE = 80.0  # tokens/s: the offline demo streams visibly, about as fast as a small model

_demo: LoopbackServer | None = None
_demo_lock = threading.Lock()


def start_demo_server() -> LoopbackServer:
    """The process-wide offline demo server, started on first use (no key and no base URL set).

    It streams default replies at ``DEMO_RATE`` tokens/s; set ``.default_rate = None`` for full speed.
    """
    global _demo
    with _demo_lock:
        if _demo is None:
            _demo = LoopbackServer(default_rate=DEMO_RATE).start()
        return _demo


def stop_demo_server() -> None:
    """Stop the offline demo server if it runs (``%unload_ext``, interpreter exit): its thread
    ends and its port is freed. A later ``start_demo_server()`` starts a new one."""
    global _demo
    with _demo_lock:
        demo, _demo = _demo, None
    if demo is not None:
        demo.stop()
