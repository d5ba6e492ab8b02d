"""HTTP plumbing: a threaded stdlib server whose handler speaks the OpenAI Chat Completions API.

The handler parses HTTP, applies the next script and writes bytes (chunked SSE for streams);
what to answer comes from ``completions``. Only Host headers naming 127.0.0.1 or localhost are
answered, so a web page cannot reach the server through DNS rebinding, and control-API POSTs
must be JSON, which a page cannot send cross-origin without a (never granted) CORS preflight.
"""

from __future__ import annotations

import hmac
import json
import re
import select
import socket
import sys
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from socketserver import TCPServer
from typing import Any
from urllib.parse import urlsplit

from .completions import (
    DONE_EVENT,
    ERROR_EVENT,
    LLAMACPP_ERROR_EVENT,
    MALFORMED_EVENT,
    ChunkEncoder,
    Plan,
    completion_body,
    plan_reply,
)
from .embeddings import embeddings_body
from .local_servers import answer as local_answer
from .local_servers import check_prompt as local_check_prompt
from .local_servers import model_card_extra
from .script import Script
from .state import LoggedRequest, ServerState
from .tools import check_tool_use
from .validation import (
    RequestError,
    fault_error,
    prompt_tokens_in_window,
    script_for,
    server_error,
    unauthorized,
    validate_request,
)

LOOPBACK_HOSTS = ("127.0.0.1", "localhost")
_AZURE_PATH = re.compile(r"^/openai/deployments/([^/]+)/chat/completions$")
_AZURE_EMBEDDINGS = re.compile(r"^/openai/deployments/([^/]+)/embeddings$")
_SECRET_HEADERS = ("authorization", "proxy-authorization", "api-key", "x-api-key", "cookie")
_MID_STREAM_FAULTS = ("disconnect", "malformed", "stream_error", "no_finish")
_BODY_FAULTS = ("html_page", "json_body")
_HANGUP_POLL = 0.02  # seconds between looks at a waiting client's connection
_WRITE_BLOCK = 1 << 16  # bytes per socket write at full speed


class LoopbackHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    # A fleet of clients connects at once (Chatbot.map at concurrency 64): the default backlog of 5
    # would drop connection attempts, each then retried by the client's TCP a second later.
    request_queue_size = 256

    def __init__(self, address: tuple[str, int], state: ServerState) -> None:
        self.state = state
        super().__init__(address, Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind calls socket.getfqdn(), a reverse DNS lookup that can hang offline.
        TCPServer.server_bind(self)
        self.server_name, self.server_port = "127.0.0.1", self.server_address[1]

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client closing a kept-alive connection (or a stream) is normal here, not a crash.
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return
        super().handle_error(request, client_address)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive and chunked transfer encoding, like the real API
    server_version = "jupyter-llmchat-loopback"
    sys_version = ""
    server: LoopbackHTTPServer
    _status: int | None = None
    _entry: LoggedRequest | None = None

    def setup(self) -> None:
        super().setup()
        # Small SSE writes must leave at once; Nagle + delayed ACK would add ~40 ms per token.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.state.track(self.connection, True)

    def finish(self) -> None:
        self.server.state.track(self.connection, False)
        try:
            super().finish()
        except OSError:
            pass

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: tests and notebooks should not see access logs

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    # routing ---------------------------------------------------------------------------------
    def _dispatch(self) -> None:
        state = self.server.state
        entry: LoggedRequest | None = None
        # per request: one handler serves a whole keep-alive connection
        self._status, self._entry = None, None
        try:
            raw = self._read_body()
            url = urlsplit(self.path)
            if not self._host_allowed():
                self._send_json(403, _error("Host header not allowed: the loopback server only answers "
                                            "127.0.0.1 and localhost.", "forbidden_host"))
                return
            if url.path.startswith("/_loopback/"):
                self._control(url.path, raw)
                return
            entry = self._entry = LoggedRequest(self.command, url.path, self._masked_headers(),
                                                _parse_json(raw), time.time(), query=url.query)
            state.record(entry)
            self._api(url.path, entry, raw)
        except (ConnectionError, TimeoutError):
            self.close_connection = True
            if entry is not None:
                entry.outcome = "server_stopped" if state.stopping.is_set() else "client_closed"
        except Exception as error:
            # A bug here must show up as a clear 500 in the test, not as a silent disconnect.
            if entry is not None:
                entry.outcome = "error"
            if self._status is None:
                self._send_json(500, {"error": {"message": f"loopback server bug: {error!r}",
                                                "type": "server_error", "param": None, "code": None}})
            self.close_connection = True
            raise  # and the traceback goes to stderr

    def _api(self, path: str, entry: LoggedRequest, raw: bytes) -> None:
        state = self.server.state
        models = state.models
        try:
            if not self._authorized():
                raise unauthorized()
            local = local_answer(state.local, self.command, path, entry.body)  # Ollama's /api/show, ...
            if local is not None:
                entry.outcome = "complete" if local[0] < 400 else "error"
                self._send_json(*local)
                return
            azure = _AZURE_PATH.match(path)
            azure_embeddings = _AZURE_EMBEDDINGS.match(path)
            if self.command == "POST" and (path == "/v1/embeddings" or azure_embeddings):
                self._embeddings(entry, azure_embeddings.group(1) if azure_embeddings else None)
                return
            if self.command == "POST" and (path == "/v1/chat/completions" or azure):
                self._chat(entry, azure.group(1) if azure else None)
                return
            files_or_batches = state.batches.handle(state, self.command, path, entry.query,
                                                    self.headers.get("Content-Type", ""), raw)
            if files_or_batches is not None:  # /v1/files, /v1/batches (and Azure's /openai/...): batches.py
                entry.outcome = "complete"
                self._send_head(files_or_batches.status, files_or_batches.content_type,
                                length=len(files_or_batches.body))
                self.wfile.write(files_or_batches.body)
                return
            if self.command == "GET" and path.startswith("/v1/models") and not self.server.state.model_list:
                entry.outcome = "error"  # a server without a model list: a bare 404, as from a plain router
                page = b"404 page not found"
                self._send_head(404, "text/plain; charset=utf-8", length=len(page))
                self.wfile.write(page)
            elif self.command == "GET" and path == "/v1/models":
                entry.outcome = "complete"
                cards = [{**_model_card(m), **model_card_extra(state.local, m)} for m in models]
                self._send_json(200, {"object": "list", "data": cards})
            elif self.command == "GET" and path.startswith("/v1/models/"):
                model = path[len("/v1/models/"):]
                if model not in models:
                    raise RequestError(404, f"The model '{model}' does not exist", code="model_not_found")
                entry.outcome = "complete"
                self._send_json(200, _model_card(model))
            else:
                raise RequestError(404, f"Invalid URL ({self.command} {path})", code="unknown_url")
        except RequestError as error:
            entry.outcome = entry.outcome or "error"  # before the response: a client may look at once
            self._send_error(error)

    def _chat(self, entry: LoggedRequest, deployment: str | None) -> None:
        state = self.server.state
        body = entry.body
        if body is None:
            raise RequestError(400, "We could not parse the JSON body of your request. (HINT: This likely "
                               "means you aren't using your HTTP library correctly. The OpenAI API expects "
                               "a JSON payload.)")
        if deployment and isinstance(body, dict) and not body.get("model"):
            body = {**body, "model": deployment}
        # An invalid request is rejected before it takes a script, so the script stays for the next one.
        validate_request(body, state.models, strict=state.strict)
        check_tool_use(body)  # tools, tool_choice, and tool messages in their place
        model = body["model"]
        local = state.local.models.get(model) if state.local is not None else None
        if local is not None and state.local is not None:  # counted with its chat template (local_servers.py)
            prompt_tokens = local_check_prompt(state.local, local, body["messages"],
                                               body.get("max_tokens") or body.get("max_completion_tokens"))
        else:
            prompt_tokens = prompt_tokens_in_window(body["messages"], model, body.get("tools"))
        script = script_for(body, state.pop)
        delay = script.delay
        if delay is None:
            delay = 1.0 if script.fault == "slow_first_byte" else state.latency
        if not self._ready_to_answer(entry, body, script, delay):
            return
        cached = state.cache.cached_tokens(model, body["messages"], prompt_tokens)
        plan = plan_reply(body, script, prompt_tokens=prompt_tokens, cached_tokens=cached,
                          default_tokens=state.default_tokens)
        if not script.fault:
            entry.outcome = "length" if plan.finish_reason == "length" else "complete"
        if script.fault in _BODY_FAULTS:
            self._send_body_fault(script.fault, plan)
            return
        if body.get("stream"):
            rate = script.rate if script.rate is not None else state.default_rate
            options = body.get("stream_options") or {}
            include_usage = bool(options.get("include_usage")) and script.fault != "no_usage"
            encoder = ChunkEncoder(plan, include_usage=include_usage)
            self._stream(encoder, script, rate, entry)
            return
        if script.fault == "stream_error":
            raise server_error()  # a stream that would fail is a plain 500 when not streamed
        payload = b"{not json" if script.fault == "malformed" else completion_body(plan)
        self._send_head(200, "application/json", length=len(payload))
        if script.fault == "disconnect":  # half the body, then the connection drops
            self.wfile.write(payload[: len(payload) // 2])
            self._drop()
            return
        self.wfile.write(payload)

    def _embeddings(self, entry: LoggedRequest, deployment: str | None) -> None:
        """Vectors for the inputs (server/embeddings.py); a script's status fault or delay applies."""
        body = entry.body
        if deployment and isinstance(body, dict) and not body.get("model"):
            body = {**body, "model": deployment}
        answer = embeddings_body(body, self.server.state.models)  # an invalid request leaves the queue as is
        script = script_for(body, self.server.state.pop)
        if not self._ready_to_answer(entry, body, script, script.delay):
            return
        entry.outcome = entry.outcome or "complete"
        self._send_json(200, answer)

    def _ready_to_answer(self, entry: LoggedRequest, body: Any, script: Script, delay: float | None) -> bool:
        """Apply the script before an answer: wait ``delay`` seconds (none when 0 or None), then
        raise its status fault as the error response. False when the client hung up or the server
        is stopping meanwhile: nothing is answered and the connection closes (the entry says why)."""
        if script.fault:
            entry.outcome = f"fault:{script.fault}"
        ended = self._wait_before_answering(delay) if delay else None
        if ended is not None:
            entry.outcome = ended
            self.close_connection = True
            return False
        error = fault_error(script, body)
        if error is not None:
            raise error
        return True

    def _wait_before_answering(self, seconds: float) -> str | None:
        """Wait ``seconds`` before the headers, as a slow server does, but notice at once a client
        that hangs up ("client_closed") or the server stopping ("server_stopped")."""
        stopping = self.server.state.stopping
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            readable, _, _ = select.select([self.connection], [], [], min(left, _HANGUP_POLL))
            if stopping.is_set():
                return "server_stopped"
            if readable:
                try:
                    if not self.connection.recv(1, socket.MSG_PEEK):
                        return "client_closed"  # the client closed its end: nothing left to answer
                except OSError:
                    return "client_closed"
                if stopping.wait(min(left, _HANGUP_POLL)):  # data, not a hang-up: keep waiting
                    return "server_stopped"
        return None

    def _send_body_fault(self, fault: str, plan: Plan) -> None:
        """A 200 that is not the stream the client asked for: a web page, or a whole JSON body."""
        if fault == "html_page":
            page = (b"<!doctype html><html><head><title>Welcome</title></head><body><h1>It works!</h1>"
                    b"<p>This is a web server, not an API.</p></body></html>")
            self._send_head(200, "text/html; charset=utf-8", length=len(page))
            self.wfile.write(page)
        else:  # json_body: the server ignored "stream": true
            payload = completion_body(plan)
            self._send_head(200, "application/json", length=len(payload))
            self.wfile.write(payload)

    # streaming -------------------------------------------------------------------------------
    def _stream(self, encoder: ChunkEncoder, script: Script, rate: float | None,
                entry: LoggedRequest) -> None:
        if script.fault in ("split_surrogates", "lone_surrogate"):
            events = encoder.content_in_utf16_halves(drop_first_low=script.fault == "lone_surrogate")
            rate = None  # one event per UTF-16 half: not paced by tokens
        else:
            events = encoder.content()
        if script.fault in _MID_STREAM_FAULTS:
            events = events[: script.after_tokens or 0]
        self._send_head(200, "text/event-stream; charset=utf-8", chunked=True)
        if script.fault == "empty_stream":  # llama.cpp: an "error:" field the SDK ignores, then the end
            self._write_chunk(LLAMACPP_ERROR_EVENT)
            self.wfile.write(b"0\r\n\r\n")
            return
        self._write_chunk(encoder.first())
        if rate is None:
            self._write_blocks(events)
        elif not self._write_paced(events, encoder.sizes(), rate):
            entry.outcome = "server_stopped"
            self._drop()
            return
        if script.fault == "disconnect":
            self._drop()  # no terminating chunk: the client sees an incomplete chunked body
            return
        if script.fault in ("malformed", "stream_error"):
            self._write_chunk(MALFORMED_EVENT if script.fault == "malformed" else ERROR_EVENT)
            self.wfile.write(b"0\r\n\r\n")
            return
        if script.fault == "no_finish":  # the body ends cleanly, but the answer never said it ended
            self.wfile.write(b"0\r\n\r\n")
            return
        last = encoder.last()
        if script.fault == "no_done":
            last = last[: -len(DONE_EVENT)]
        self._write_chunk(last)
        self.wfile.write(b"0\r\n\r\n")

    def _write_paced(self, events: list[bytes], sizes: list[int], rate: float) -> bool:
        """Send ``events`` at ``rate`` tokens/s; False if the server stopped meanwhile.

        Each event is due when the tokens before it have had their time, measured from the start,
        so a long stream keeps its rate instead of drifting by the cost of every write.
        """
        stopping = self.server.state.stopping
        start = time.monotonic()
        sent = 0
        pending: list[bytes] = []
        for event, size in zip(events, sizes):
            wait = start + sent / rate - time.monotonic()
            if wait > 0:
                if pending:
                    self._write_chunk(b"".join(pending))
                    pending = []
                if stopping.wait(wait):
                    return False
            pending.append(event)  # events already due go out together in one write
            sent += size
        if pending:
            self._write_chunk(b"".join(pending))
        return True

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

    def _drop(self) -> None:
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    # control API -----------------------------------------------------------------------------
    def _control(self, path: str, raw: bytes) -> None:
        state = self.server.state
        if self.command == "POST" and not self.headers.get("Content-Type", "").startswith("application/json"):
            self._send_json(415, _error("Control API POSTs must be application/json.", "unsupported_media"))
            return
        try:
            if self.command == "POST" and path == "/_loopback/queue":
                data = _parse_json(raw)
                scripts = [Script.from_mapping(item) for item in (data if isinstance(data, list) else [data])]
                self._send_json(200, {"queued": len(scripts), "pending": state.push(scripts)})
            elif self.command == "GET" and path == "/_loopback/requests":
                self._send_json(200, {"requests": [entry.to_dict() for entry in state.requests()]})
            elif self.command == "POST" and path == "/_loopback/reset":
                state.reset()
                self._send_json(200, {"reset": True})
            else:
                self._send_json(404, _error(
                    f"Unknown control endpoint {self.command} {path}; use POST /_loopback/queue, "
                    "GET /_loopback/requests, POST /_loopback/reset.", "unknown_url"))
        except (TypeError, ValueError) as error:
            self._send_json(400, _error(f"Invalid loopback script: {error}", "invalid_script"))

    # plumbing --------------------------------------------------------------------------------
    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _host_allowed(self) -> bool:
        host = (self.headers.get("Host") or "").rsplit(":", 1)[0]
        return host in LOOPBACK_HOSTS

    def _authorized(self) -> bool:
        expected = self.server.state.api_key
        if expected is None:
            return True
        given = self.headers.get("api-key") or ""  # Azure's header
        auth = self.headers.get("Authorization") or ""
        if auth.startswith("Bearer "):
            given = auth[len("Bearer "):]
        return hmac.compare_digest(given.encode(), expected.encode())

    def _masked_headers(self) -> dict[str, str]:
        """Headers as sent, secrets replaced: "Bearer ***" keeps the scheme, never any of the key."""
        return {name: _mask(value) if name.lower() in _SECRET_HEADERS else value
                for name, value in self.headers.items()}

    def _send_head(self, status: int, content_type: str, *, length: int = 0, chunked: bool = False,
                   headers: dict[str, str] | None = None) -> None:
        self._status = status
        if self._entry is not None:  # logged before a byte is sent, so a client never sees it unset
            self._entry.status = status
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
            self.send_header("Cache-Control", "no-cache")
        else:
            self.send_header("Content-Length", str(length))
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


def _mask(value: str) -> str:
    scheme, _, secret = value.partition(" ")
    return f"{scheme} ***" if secret and scheme.isalpha() else "***"


def _error(message: str, code: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": code}}


def _model_card(model: str) -> dict[str, Any]:
    return {"id": model, "object": "model", "created": 1700000000, "owned_by": "jupyter_llmchat-loopback"}


def _parse_json(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
