"""``LoopbackServer``: start, script, inspect and stop the loopback OpenAI-compatible server."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any

from .batches import BatchService
from .handler import LOOPBACK_HOSTS, LoopbackHTTPServer
from .local_servers import LocalModel, LocalServer
from .script import Script
from .state import DEFAULT_MODELS, LoggedRequest, ServerState


class LoopbackServer:
    """A real OpenAI-compatible HTTP server on 127.0.0.1, run in a background thread.

    ``api_key=None`` accepts any key (or none); otherwise a wrong or missing key gets a 401.
    ``model_list=False`` imitates a server without ``GET /v1/models`` (it answers 404).
    ``queue()`` scripts the next requests; ``requests`` is the log a test asserts against.
    Default replies are ``default_tokens`` long, streamed at ``default_rate`` tokens/s (None: at
    full speed); both can be changed while the server runs. ``latency`` is how long every answer
    waits before its headers, as a model takes time to begin (a script's ``delay`` overrides it).
    ``imitate`` ("ollama", "llamacpp", "vllm", "lmstudio") with ``local_models`` makes it a local
    server: its model endpoints, its chat templates and its strict windows (see local_servers.py).
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, api_key: str | None = None,
                 default_tokens: int = 150, default_rate: float | None = None,
                 models: Iterable[str] = DEFAULT_MODELS, strict: bool = True, model_list: bool = True,
                 latency: float = 0.0, imitate: str | None = None,
                 local_models: Iterable[LocalModel] = ()) -> None:
        if host not in LOOPBACK_HOSTS:
            raise ValueError(f"LoopbackServer binds to 127.0.0.1 only (got host={host!r}); "
                             "it is a test and demo server, not for other machines")
        local = LocalServer.of(imitate, local_models) if imitate else None  # see local_servers.py
        served = tuple(models) + tuple(local.models if local else ())
        self._state = ServerState(api_key, 150, None, served, strict, model_list, local=local)
        self.default_tokens = default_tokens
        self.default_rate = default_rate
        self.latency = latency
        self._port = port
        self._httpd: LoopbackHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:  # never shows the key
        return f"<LoopbackServer {self.base_url if self._httpd else 'stopped'}>"

    # lifecycle -------------------------------------------------------------------------------
    def start(self) -> LoopbackServer:
        """Bind and serve in a daemon thread; returns self, so ``LoopbackServer().start()`` chains."""
        if self._httpd is not None:
            return self
        self._state.stopping.clear()
        self._httpd = LoopbackHTTPServer(("127.0.0.1", self._port), self._state)
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"loopback-server-{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving: end streams in progress, close kept-alive connections, free the port."""
        if self._httpd is None:
            return
        self._state.stopping.set()  # wakes streams sleeping between tokens
        self._httpd.shutdown()
        self._httpd.server_close()
        self._state.drop_connections()
        assert self._thread is not None
        self._thread.join(timeout=5)
        self._httpd = self._thread = None

    def __enter__(self) -> LoopbackServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # where -----------------------------------------------------------------------------------
    @property
    def address(self) -> tuple[str, int]:
        """(host, port) the listening socket is bound to."""
        host, port = self._running().socket.getsockname()[:2]
        return host, port

    @property
    def port(self) -> int:
        return self._running().server_address[1]

    @property
    def root_url(self) -> str:
        """``http://127.0.0.1:PORT``: the control API lives under ``/_loopback/``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT/v1``: what an OpenAI client takes as base_url."""
        return self.root_url + "/v1"

    @property
    def models(self) -> tuple[str, ...]:
        return self._state.models

    def _running(self) -> LoopbackHTTPServer:
        if self._httpd is None:
            raise RuntimeError("the loopback server is not running; call start() first")
        return self._httpd

    # defaults ----------------------------------------------------------------------------------
    @property
    def default_tokens(self) -> int:
        return self._state.default_tokens

    @default_tokens.setter
    def default_tokens(self, tokens: int) -> None:
        if isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 1:
            raise ValueError(f"default_tokens must be an integer >= 1, got {tokens!r}")
        self._state.default_tokens = tokens

    @property
    def default_rate(self) -> float | None:
        return self._state.default_rate

    @default_rate.setter
    def default_rate(self, rate: float | None) -> None:
        if rate is not None and (isinstance(rate, bool) or not isinstance(rate, (int, float)) or rate <= 0):
            raise ValueError(f"default_rate must be > 0 tokens/s or None (full speed), got {rate!r}")
        self._state.default_rate = rate

    @property
    def latency(self) -> float:
        return self._state.latency

    @latency.setter
    def latency(self, seconds: float) -> None:
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not 0 <= seconds < float("inf"):
            raise ValueError(f"latency must be a number of seconds >= 0, got {seconds!r}")
        self._state.latency = float(seconds)

    # scripting and inspection ----------------------------------------------------------------
    def queue(self, *, reply: str | None = None, tokens: int | None = None, rate: float | None = None,
              fault: str | None = None, retry_after: float | None = None, after_tokens: int | None = None,
              delay: float | None = None, finish_reason: str | None = None, times: int = 1,
              tool_calls: list[dict[str, Any]] | None = None, fragment: int | None = None) -> None:
        """Script the next ``times`` valid chat completion requests (FIFO after earlier scripts).

        A request the server rejects (bad parameters, unknown model, wrong key) leaves the queue as is.

        ``reply``: exact text; ``tokens``: generated Markdown of exactly that many tokens;
        ``rate``: tokens/s; ``delay``: seconds before the headers; ``fault``: one of ``FAULTS``
        (``retry_after`` for rate_limit, ``after_tokens`` content chunks before disconnect or
        malformed, stream_error or no_finish); ``finish_reason``: forced, e.g. "content_filter";
        ``tool_calls``: the calls the reply asks for (``[{"name": "f", "arguments": {...}}]``; several
        are parallel calls; arguments given as a string are sent as they are), streamed in
        ``fragment``-character pieces (see server/tools.py).
        """
        self._state.push([Script(reply=reply, tokens=tokens, rate=rate, fault=fault,
                                 retry_after=retry_after, after_tokens=after_tokens, delay=delay,
                                 finish_reason=finish_reason, times=times, tool_calls=tool_calls,
                                 fragment=fragment)])

    @property
    def batches(self) -> BatchService:
        """The Batch API's files and batches (batches.py): ``.speedup`` runs its clock faster
        (0 holds every batch), ``.queue(BatchScript(...))`` scripts the next batch."""
        return self._state.batches

    @property
    def pending(self) -> int:
        """How many requests are still scripted."""
        return self._state.pending()

    @property
    def requests(self) -> list[LoggedRequest]:
        """Every API request so far, oldest first (control-API calls are not logged)."""
        return self._state.requests()

    def reset(self) -> None:
        """Forget queued scripts, the request log and the prompt cache."""
        self._state.reset()
