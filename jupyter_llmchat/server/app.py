"""The HTTP side: a threaded stdlib server on 127.0.0.1 that speaks the OpenAI Chat Completions API.

``LoopbackServer`` owns the script queue, the request log and the simulated prompt cache; the
request handler only parses HTTP, applies the next script and writes bytes (chunked SSE for
streams). Binding is to 127.0.0.1 only, and the Host header is checked so a web page cannot reach
the server through DNS rebinding.
"""

from __future__ import annotations

import hmac
import json
import re
import socket
import threading
import time
import uuid
from collections import deque
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from socketserver import TCPServer
from typing import Any, Iterable
from urllib.parse import urlsplit

from ..models import model_info
from ..tokens import count_prompt_tokens
from .completions import (MALFORMED_EVENT, ChunkEncoder, PromptCache, RequestError, completion_body,
                          context_length_error, fault_error, plan_reply, unauthorized, validate_request)
from .script import Script

DEFAULT_MODELS = ("gpt-4o", "gpt-4o-mini", "gpt-4.1", "gpt-4.1-mini", "gpt-4.1-nano", "o3-mini",
                  "o4-mini", "gpt-4", "gpt-3.5-turbo", "gpt-5", "gpt-5-mini", "loopback-demo")
LOOPBACK_HOSTS = ("127.0.0.1", "localhost")
_AZURE_PATH = re.compile(r"^/openai/deployments/([^/]+)/chat/completions$")
_MASKED_HEADERS = {"authorization": "Bearer ***", "api-key": "***"}
_WRITE_BLOCK = 1 << 16  # bytes per socket write at full speed


@dataclass
class LoggedRequest:
    """One request as received (key masked), and how the server answered it."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any  # parsed JSON, or None (GET, empty or unparsable body)
    time: float
    status: int | None = None  # HTTP status sent (None until the headers went out)
    outcome: str | None = None  # "complete", "length", "fault:<name>", "error", "client_closed", ...

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Settings:
    api_key: str | None
    default_tokens: int
    default_rate: float | None
    models: tuple[str, ...]
    strict: bool
    script_queue: deque[Script] = field(default_factory=deque)
    log: list[LoggedRequest] = field(default_factory=list)
    cache: PromptCache = field(default_factory=PromptCache)
    lock: threading.Lock = field(default_factory=threading.Lock)
    stopping: threading.Event = field(default_factory=threading.Event)


class LoopbackServer:
    """A real OpenAI-compatible HTTP server on 127.0.0.1, run in a background thread.

    ``api_key=None`` accepts any key (or none); otherwise a wrong or missing key gets a 401.
    ``queue()`` scripts the next requests; ``requests`` is the log a test asserts against.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, api_key: str | None = None,
                 default_tokens: int = 150, default_rate: float | None = None,
                 models: Iterable[str] = DEFAULT_MODELS, strict: bool = True) -> None:
        if host not in LOOPBACK_HOSTS:
            raise ValueError(f"LoopbackServer binds to 127.0.0.1 only (got host={host!r}); "
                             "it is a test and demo server, not for other machines")
        if default_rate is not None and default_rate <= 0:
            raise ValueError(f"default_rate must be > 0 tokens/s or None, got {default_rate!r}")
        self._settings = _Settings(api_key, int(default_tokens), default_rate, tuple(models), strict)
        self._port = port
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:  # never shows the key
        state = self.base_url if self._httpd else "stopped"
        return f"<LoopbackServer {state}>"

    # lifecycle -------------------------------------------------------------------------------
    def start(self) -> "LoopbackServer":
        """Bind and serve in a daemon thread; returns self so ``srv = LoopbackServer().start()`` works."""
        if self._httpd is not None:
            return self
        self._settings.stopping.clear()
        self._httpd = _HTTPServer(("127.0.0.1", self._port), _Handler, self._settings)
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"loopback-server-{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, end any stream in progress and free the port."""
        if self._httpd is None:
            return
        self._settings.stopping.set()  # wakes streams sleeping between tokens
        self._httpd.shutdown()
        self._httpd.server_close()
        assert self._thread is not None
        self._thread.join(timeout=5)
        self._httpd = self._thread = None

    def __enter__(self) -> "LoopbackServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("the loopback server is not running; call start() first")
        return self._httpd.server_address[1]

    @property
    def address(self) -> tuple[str, int]:
        """(host, port) the listening socket is bound to."""
        if self._httpd is None:
            raise RuntimeError("the loopback server is not running; call start() first")
        host, port = self._httpd.socket.getsockname()[:2]
        return host, port

    @property
    def root_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return self.root_url + "/v1"

    @property
    def models(self) -> tuple[str, ...]:
        return self._settings.models

    # scripting -------------------------------------------------------------------------------
    def queue(self, *, reply: str | None = None, tokens: int | None = None, rate: float | None = None,
              fault: str | None = None, retry_after: float | None = None, after_tokens: int | None = None,
              delay: float | None = None, finish_reason: str | None = None, times: int = 1) -> None:
        """Script the next ``times`` chat completion requests (FIFO after earlier scripts)."""
        self._push(Script(reply=reply, tokens=tokens, rate=rate, fault=fault, retry_after=retry_after,
                          after_tokens=after_tokens, delay=delay, finish_reason=finish_reason, times=times))

    def _push(self, script: Script) -> None:
        with self._settings.lock:
            self._settings.script_queue.append(script)

    @property
    def pending(self) -> int:
        """Requests still scripted."""
        with self._settings.lock:
            return sum(script.times for script in self._settings.script_queue)

    @property
    def requests(self) -> list[LoggedRequest]:
        """Every request to /v1 and /openai so far, oldest first (a copy)."""
        with self._settings.lock:
            return list(self._settings.log)

    def reset(self) -> None:
        """Forget queued scripts, the request log and the prompt cache."""
        with self._settings.lock:
            self._settings.script_queue.clear()
            self._settings.log.clear()
        self._settings.cache.clear()


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type, settings: _Settings) -> None:
        self.settings = settings
        super().__init__(address, handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind calls socket.getfqdn(), a reverse DNS lookup that can hang offline.
        TCPServer.server_bind(self)
        self.server_name, self.server_port = "127.0.0.1", self.server_address[1]

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client closing a kept-alive connection (or aborting a stream) is normal here, not a crash.
        import sys

        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive and chunked transfer encoding, like the real API
    server_version = "jupyter-llmchat-loopback"
    sys_version = ""
    server: _HTTPServer

    def setup(self) -> None:
        super().setup()
        # Small SSE writes must leave at once; Nagle + delayed ACK would add ~40 ms per token.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: tests and notebooks should not see access logs

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    # routing ---------------------------------------------------------------------------------
    def _dispatch(self) -> None:
        settings = self.server.settings
        entry: LoggedRequest | None = None
        try:
            raw = self._read_body()
            path = urlsplit(self.path).path
            if not self._host_allowed():
                self._send_json(403, {"error": {"message": "Host header not allowed: the loopback server "
                                                "only answers 127.0.0.1 and localhost.",
                                                "type": "invalid_request_error", "param": None,
                                                "code": "forbidden_host"}})
                return
            if path.startswith("/_loopback/"):
                self._control(path, raw)
                return
            entry = LoggedRequest(self.command, self.path, self._masked_headers(), _parse_json(raw),
                                  time.time())
            with settings.lock:
                settings.log.append(entry)
            self._api(path, raw, entry)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
            if entry is not None:
                entry.outcome = "client_closed"

    def _api(self, path: str, raw: bytes, entry: LoggedRequest) -> None:
        settings = self.server.settings
        try:
            if not self._authorized():
                raise unauthorized()
            azure = _AZURE_PATH.match(path)
            if self.command == "GET" and path == "/v1/models":
                self._send_json(200, {"object": "list", "data": [_model_card(m) for m in settings.models]})
            elif self.command == "GET" and path.startswith("/v1/models/"):
                model = path[len("/v1/models/"):]
                if model not in settings.models:
                    raise RequestError(404, f"The model '{model}' does not exist", code="model_not_found")
                self._send_json(200, _model_card(model))
            elif self.command == "POST" and (path == "/v1/chat/completions" or azure):
                self._chat(raw, entry, azure.group(1) if azure else None)
                return
            else:
                raise RequestError(404, f"Invalid URL ({self.command} {path})", code="unknown_url")
            entry.outcome = "complete"
        except RequestError as error:
            self._send_error(error)
            entry.outcome = entry.outcome or "error"
        entry.status = entry.status or self._status

    def _chat(self, raw: bytes, entry: LoggedRequest, deployment: str | None) -> None:
        settings = self.server.settings
        body = entry.body
        if body is None:
            raise RequestError(400, "We could not parse the JSON body of your request. (HINT: This likely "
                               "means you aren't using your HTTP library correctly. The OpenAI API expects "
                               "a JSON payload.)")
        if deployment and isinstance(body, dict) and not body.get("model"):
            body = {**body, "model": deployment}
        script = self._script(body)
        if script.fault:
            entry.outcome = f"fault:{script.fault}"
        if script.fault == "slow_first_byte":
            if settings.stopping.wait(1.0 if script.delay is None else script.delay):
                self.close_connection = True
                return
        error = fault_error(script, body.get("model") if isinstance(body, dict) else "?")
        if error is not None:
            raise error
        validate_request(body, settings.models, strict=settings.strict)
        model = body["model"]
        prompt_tokens = count_prompt_tokens(body["messages"], model)
        window = model_info(model).context_window
        if prompt_tokens > window:
            raise context_length_error(window, prompt_tokens)
        cached = settings.cache.cached_tokens(model, body["messages"], prompt_tokens)
        plan = plan_reply(body, script, prompt_tokens=prompt_tokens, cached_tokens=cached,
                          default_tokens=settings.default_tokens)
        if body.get("stream"):
            rate = script.rate if script.rate is not None else settings.default_rate
            options = body.get("stream_options") or {}
            self._stream(ChunkEncoder(plan, include_usage=bool(options.get("include_usage"))),
                         script, rate, entry)
        else:
            payload = completion_body(plan)
            if script.fault == "malformed":
                payload = b"{not json"
            self._send_head(200, "application/json", length=len(payload))
            entry.status = 200
            if script.fault == "disconnect":  # half the body, then the connection drops
                self.wfile.write(payload[: len(payload) // 2])
                self.close_connection = True
                return
            self.wfile.write(payload)
        if not script.fault:
            entry.outcome = "length" if plan.finish_reason == "length" else "complete"

    def _script(self, body: Any) -> Script:
        """The request's own "loopback" field if present (queue untouched), else the next queued one."""
        if isinstance(body, dict) and "loopback" in body:
            try:
                return Script.from_mapping(body["loopback"])
            except (TypeError, ValueError) as error:
                raise RequestError(400, f"Invalid 'loopback' field: {error}", param="loopback") from None
        settings = self.server.settings
        with settings.lock:
            if not settings.script_queue:
                return Script()
            script = settings.script_queue[0]
            if script.times > 1:
                settings.script_queue[0] = Script(**{**script.to_dict(), "times": script.times - 1})
            else:
                settings.script_queue.popleft()
            return script

    # streaming -------------------------------------------------------------------------------
    def _stream(self, encoder: ChunkEncoder, script: Script, rate: float | None,
                entry: LoggedRequest) -> None:
        events = encoder.content()
        stop_after = None
        if script.fault in ("disconnect", "malformed"):
            stop_after = min(script.after_tokens or 0, len(events))
            events = events[:stop_after]
        self._send_head(200, "text/event-stream; charset=utf-8", chunked=True)
        entry.status = 200
        stopping = self.server.settings.stopping
        self._write_chunk(encoder.first())
        if rate is None:
            self._write_blocks(events)
        else:
            # Sleep against absolute times (delta k is due after the tokens before it), so a long
            # stream keeps its rate instead of drifting by the cost of each write.
            start = time.monotonic()
            sent_tokens = 0
            pending: list[bytes] = []
            for event, (_, indices) in zip(events, encoder.plan.deltas):
                due = start + sent_tokens / rate
                wait = due - time.monotonic()
                if wait > 0:
                    if pending:
                        self._write_chunk(b"".join(pending))
                        pending = []
                    if stopping.wait(wait):
                        self.close_connection = True
                        entry.outcome = "server_stopped"
                        return
                pending.append(event)
                sent_tokens += len(indices)
            if pending:
                self._write_chunk(b"".join(pending))
        if script.fault == "disconnect":
            self.close_connection = True  # no terminating chunk: the client sees a truncated body
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        if script.fault == "malformed":
            self._write_chunk(MALFORMED_EVENT)
        self._write_chunk(encoder.last())
        self.wfile.write(b"0\r\n\r\n")

    def _write_blocks(self, events: list[bytes]) -> None:
        block: list[bytes] = []
        size = 0
        for event in events:
            block.append(event)
            size += len(event)
            if size >= _WRITE_BLOCK:
                self._write_chunk(b"".join(block))
                block, size = [], 0
        if block:
            self._write_chunk(b"".join(block))

    def _write_chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%b\r\n" % (len(data), data))

    # control API -----------------------------------------------------------------------------
    def _control(self, path: str, raw: bytes) -> None:
        settings = self.server.settings
        if self.command == "POST" and not self.headers.get("Content-Type", "").startswith("application/json"):
            # JSON-only POSTs force a CORS preflight, so a web page cannot script the server.
            self._send_json(415, {"error": {"message": "Control API POSTs must be application/json."}})
            return
        try:
            if self.command == "POST" and path == "/_loopback/queue":
                data = _parse_json(raw)
                scripts = [Script.from_mapping(item) for item in (data if isinstance(data, list) else [data])]
                with settings.lock:
                    settings.script_queue.extend(scripts)
                    pending = sum(script.times for script in settings.script_queue)
                self._send_json(200, {"queued": len(scripts), "pending": pending})
            elif self.command == "GET" and path == "/_loopback/requests":
                with settings.lock:
                    log = [entry.to_dict() for entry in settings.log]
                self._send_json(200, {"requests": log})
            elif self.command == "POST" and path == "/_loopback/reset":
                with settings.lock:
                    settings.script_queue.clear()
                    settings.log.clear()
                settings.cache.clear()
                self._send_json(200, {"reset": True})
            else:
                self._send_json(404, {"error": {"message": f"Unknown control endpoint {self.command} {path}; "
                                                "use POST /_loopback/queue, GET /_loopback/requests, "
                                                "POST /_loopback/reset."}})
        except (TypeError, ValueError) as error:
            self._send_json(400, {"error": {"message": f"Invalid loopback script: {error}"}})

    # plumbing --------------------------------------------------------------------------------
    _status: int | None = None

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _host_allowed(self) -> bool:
        host = (self.headers.get("Host") or "").rsplit(":", 1)[0].strip("[]")
        return host in LOOPBACK_HOSTS

    def _authorized(self) -> bool:
        expected = self.server.settings.api_key
        if expected is None:
            return True
        given = self.headers.get("api-key") or ""
        auth = self.headers.get("Authorization") or ""
        if auth.startswith("Bearer "):
            given = auth[len("Bearer "):]
        return hmac.compare_digest(given.encode(), expected.encode())

    def _masked_headers(self) -> dict[str, str]:
        return {name: _MASKED_HEADERS.get(name.lower(), value) for name, value in self.headers.items()}

    def _send_head(self, status: int, content_type: str, *, length: int | None = None,
                   chunked: bool = False, headers: dict[str, str] | None = None) -> None:
        self._status = status
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
            self.send_header("Cache-Control", "no-cache")
        else:
            self.send_header("Content-Length", str(length or 0))
        self.send_header("x-request-id", "req_" + uuid.uuid4().hex)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()

    def _send_json(self, status: int, data: Any) -> None:
        payload = json.dumps(data).encode()
        self._send_head(status, "application/json", length=len(payload))
        self.wfile.write(payload)

    def _send_error(self, error: RequestError) -> None:
        payload = error.body()
        self._send_head(error.status, "application/json", length=len(payload), headers=error.headers)
        self.wfile.write(payload)


def _model_card(model: str) -> dict[str, Any]:
    return {"id": model, "object": "model", "created": 1700000000, "owned_by": "jupyter_llmchat-loopback"}


def _parse_json(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
