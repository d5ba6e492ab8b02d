"""The loopback server's Batch API: /v1/files and /v1/batches as OpenAI defines them, run offline.

A JSONL file uploaded with purpose "batch" becomes a batch that moves through OpenAI's statuses
on a simulated clock: ``validating``, ``in_progress`` (its lines answered one after another, each
exactly as POST /v1/chat/completions answers it, faults and ``loopback`` scripts included),
``finalizing``, then ``completed`` with an output file and an error file of JSONL lines matched by
``custom_id``. A batch whose input breaks the rules (a line that is not JSON, a duplicate
custom_id, a URL other than the batch's endpoint, mixed models) ends ``failed`` with the lines'
errors; one cancelled goes ``cancelling`` then ``cancelled``; one past its 24-hour window (or
scripted to, ``BatchScript.expire_after``) ends ``expired``. A batch that did not finish keeps the
answers it has in its output file, and every other line is in the error file (code
``batch_expired`` / ``batch_cancelled``), as OpenAI does.

The clock runs ``speedup`` simulated seconds per real second (tests: a batch completes in
milliseconds); 0 holds every batch where it is, and ``clock.advance(seconds)`` then steps it
exactly (a batch's statuses, one by one). Timestamps in batch objects are simulated ones:
created_at is when the batch was created, later ones add the simulated time since.

Azure's routes (/openai/files, /openai/batches, for its batch deployments) are the same API; its
lines may name the URL ``/chat/completions`` (its own spelling) or ``/v1/chat/completions``.
"""

from __future__ import annotations

import json
import math
import re
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from email import policy
from email.parser import BytesParser
from typing import Any, NamedTuple, Protocol
from urllib.parse import parse_qs

from .completions import completion_body, plan_reply
from .prompt_cache import PromptCache
from .script import Script
from .validation import RequestError, fault_error, prompt_tokens_in_window, script_for, validate_request

# Simulated seconds each stage takes (real batches take minutes to hours; ``speedup`` shortens them).
VALIDATING_SECONDS = 10.0
SECONDS_PER_LINE = 0.1
FINALIZING_SECONDS = 10.0
CANCELLING_SECONDS = 5.0
COMPLETION_WINDOW_SECONDS = 24 * 3600.0
DEFAULT_SPEEDUP = 10.0  # a 10-line batch completes in about 2 s of real time
_TOLERANCE = 1e-6  # simulated seconds: sums of stepped times are compared without float dust
MAX_REQUESTS = 50_000  # OpenAI's limit of requests per batch
CHAT_ENDPOINT = "/v1/chat/completions"
AZURE_CHAT_URLS = ("/chat/completions", CHAT_ENDPOINT)
FILE_PURPOSES = ("assistants", "batch", "fine-tune", "vision", "user_data", "evals")
FINAL = ("completed", "failed", "expired", "cancelled")
EXPIRED_ERROR = {"code": "batch_expired",
                 "message": "This request could not be executed before the completion window expired."}
CANCELLED_ERROR = {"code": "batch_cancelled",
                   "message": "This request was not executed because the batch was cancelled."}

_ROUTE = re.compile(r"^/(v1|openai)/(files|batches)(?:/([^/]+))?(?:/(content|cancel))?$")


class ServerSettings(Protocol):
    """What answering a line needs of the server (its ServerState): as for /v1/chat/completions."""

    models: tuple[str, ...]
    strict: bool
    default_tokens: int
    cache: PromptCache

    def pop(self) -> Script: ...


class Response(NamedTuple):
    status: int
    content_type: str
    body: bytes


@dataclass(frozen=True)
class BatchScript:
    """What the next batch created does besides answering its lines.

    ``expire_after``: it expires once that many lines are answered (the rest go to the error file
    as ``batch_expired``), as a batch that outlives its completion window does. ``fail``: it fails
    validation with this message (code ``invalid_request``, line 1), as a batch the provider refuses.
    """

    expire_after: int | None = None
    fail: str | None = None

    def __post_init__(self) -> None:
        if self.expire_after is not None and (isinstance(self.expire_after, bool)
                                              or not isinstance(self.expire_after, int) or self.expire_after < 0):
            raise ValueError(f"expire_after must be an integer >= 0, got {self.expire_after!r}")
        if self.fail is not None and not isinstance(self.fail, str):
            raise ValueError(f"fail must be the error message (text), got {type(self.fail).__name__}")


class SimClock:
    """Simulated seconds: ``speedup`` of them per real second; changing the speed keeps the time."""

    def __init__(self, speedup: float) -> None:
        self._lock = threading.Lock()
        self._base_real = time.monotonic()
        self._base_sim = 0.0
        self._speedup = _check_speedup(speedup)

    def now(self) -> float:
        with self._lock:
            return self._base_sim + (time.monotonic() - self._base_real) * self._speedup

    def advance(self, seconds: float) -> None:
        """Move the clock ``seconds`` (simulated) forward now: with speedup 0, tests step exactly."""
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not 0 <= seconds < math.inf:
            raise ValueError(f"seconds must be a number >= 0, got {seconds!r}")
        with self._lock:
            self._base_sim += seconds

    @property
    def speedup(self) -> float:
        return self._speedup

    @speedup.setter
    def speedup(self, value: float) -> None:
        value = _check_speedup(value)
        with self._lock:
            real = time.monotonic()
            self._base_sim += (real - self._base_real) * self._speedup
            self._base_real, self._speedup = real, value


@dataclass
class StoredFile:
    id: str
    filename: str
    purpose: str
    content: bytes
    created_at: int

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "object": "file", "bytes": len(self.content), "created_at": self.created_at,
                "filename": self.filename, "purpose": self.purpose, "status": "processed",
                "expires_at": None, "status_details": None}


@dataclass
class Answer:
    """One line's outcome: the response (status and body) or, for a line never run, an error."""

    custom_id: str
    status: int | None
    body: dict[str, Any] | None
    error: dict[str, str] | None = None

    def jsonl(self) -> bytes:
        response = None if self.status is None else {
            "status_code": self.status, "request_id": "req_" + uuid.uuid4().hex, "body": self.body}
        line = {"id": "batch_req_" + uuid.uuid4().hex[:24], "custom_id": self.custom_id, "response": response,
                "error": self.error}
        return json.dumps(line, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


@dataclass
class SimBatch:
    """One batch and where the simulated clock has brought it."""

    id: str
    input_file_id: str
    endpoint: str
    metadata: dict[str, Any] | None
    created_at: int  # unix seconds, real
    created_sim: float
    lines: list[dict[str, Any]]
    errors: list[dict[str, Any]]  # the input's faults: the batch ends "failed"
    model: str | None
    script: BatchScript
    answers: list[Answer] = field(default_factory=list)
    cancel_sim: float | None = None
    status: str = "validating"
    events: dict[str, float] = field(default_factory=dict)  # status -> simulated time it began
    output_file_id: str | None = None
    error_file_id: str | None = None

    def at(self, sim: float) -> int:
        """The simulated unix time of simulated clock reading ``sim``."""
        return self.created_at + int(sim - self.created_sim)

    def to_dict(self) -> dict[str, Any]:
        done = [answer for answer in self.answers if answer.status == 200]
        failed = len(self.answers) - len(done)
        if self.status in ("expired", "cancelled"):
            failed = len(self.lines) - len(done)  # the lines never run are in the error file too
        stamp = {name: self.at(self.events[status]) if status in self.events else None
                 for name, status in (("in_progress_at", "in_progress"), ("finalizing_at", "finalizing"),
                                      ("completed_at", "completed"), ("failed_at", "failed"),
                                      ("expired_at", "expired"), ("cancelling_at", "cancelling"),
                                      ("cancelled_at", "cancelled"))}
        errors = {"object": "list", "data": self.errors} if self.status == "failed" else None
        usage = _usage([answer.body for answer in done]) if self.status in FINAL else None
        return {"id": self.id, "object": "batch", "endpoint": self.endpoint, "model": self.model,
                "errors": errors, "input_file_id": self.input_file_id, "completion_window": "24h",
                "status": self.status, "output_file_id": self.output_file_id,
                "error_file_id": self.error_file_id, "created_at": self.created_at,
                "expires_at": self.created_at + int(COMPLETION_WINDOW_SECONDS), **stamp,
                "request_counts": {"total": len(self.lines), "completed": len(done), "failed": failed},
                "usage": usage, "metadata": self.metadata}


class BatchService:
    """Files and batches of one loopback server; thread-safe (one lock)."""

    def __init__(self, speedup: float = DEFAULT_SPEEDUP) -> None:
        self.clock = SimClock(speedup)
        self._lock = threading.RLock()
        self._files: dict[str, StoredFile] = {}
        self._batches: dict[str, SimBatch] = {}
        self._scripts: deque[BatchScript] = deque()

    @property
    def speedup(self) -> float:
        """Simulated seconds per real second (0 holds every batch where it is)."""
        return self.clock.speedup

    @speedup.setter
    def speedup(self, value: float) -> None:
        self.clock.speedup = value

    def queue(self, script: BatchScript) -> None:
        """Script the next batch created (FIFO)."""
        with self._lock:
            self._scripts.append(script)

    def reset(self) -> None:
        """Forget every file, batch and script (the clock's speed stays)."""
        with self._lock:
            self._files.clear()
            self._batches.clear()
            self._scripts.clear()

    # -- inspection, for tests --------------------------------------------------------------------
    def batch_ids(self) -> list[str]:
        """Every batch created, oldest first."""
        with self._lock:
            return list(self._batches)

    def input_lines(self, batch_id: str) -> list[dict[str, Any]]:
        """The request lines of batch ``batch_id`` as uploaded (parsed JSON)."""
        with self._lock:
            return list(self._batches[batch_id].lines)

    def file_content(self, file_id: str) -> bytes:
        with self._lock:
            return self._files[file_id].content

    # -- the API ------------------------------------------------------------------------------------
    def handle(self, settings: ServerSettings, method: str, path: str, query: str, content_type: str,
               raw: bytes) -> Response | None:
        """The response to a Files or Batches API request; None when ``path`` is not one of theirs.
        Raises RequestError for what OpenAI rejects."""
        route = _ROUTE.match(path)
        if route is None:
            return None
        prefix, kind, ident, action = route.groups()
        azure = prefix == "openai"
        with self._lock:
            if kind == "files":
                return self._files_api(method, path, ident, action, content_type, raw)
            if method == "POST" and ident is None:
                return _json(self._create(settings, _parse_object(raw), azure=azure))
            if method == "GET" and ident is None:
                return _json(self._list(settings, parse_qs(query)))
            if ident is not None and action in (None, "cancel"):
                batch = self._batch(ident)
                self._advance(settings, batch)
                if method == "POST" and action == "cancel":
                    self._cancel(batch)
                    return _json(batch.to_dict())
                if method == "GET" and action is None:
                    return _json(batch.to_dict())
        raise RequestError(404, f"Invalid URL ({method} {path})", code="unknown_url")

    def _files_api(self, method: str, path: str, ident: str | None, action: str | None, content_type: str,
                   raw: bytes) -> Response:
        if method == "POST" and ident is None:
            return _json(self._upload(content_type, raw).to_dict())
        if method == "GET" and ident is not None and action is None:
            return _json(self._file(ident).to_dict())
        if method == "GET" and ident is not None and action == "content":
            return Response(200, "application/octet-stream", self._file(ident).content)
        raise RequestError(404, f"Invalid URL ({method} {path})", code="unknown_url")

    def _upload(self, content_type: str, raw: bytes) -> StoredFile:
        form = _form(content_type, raw)
        if "purpose" not in form:
            raise RequestError(400, "Missing required parameter: 'purpose'.", param="purpose",
                               code="missing_required_parameter")
        if "file" not in form:
            raise RequestError(400, "Missing required parameter: 'file'.", param="file",
                               code="missing_required_parameter")
        purpose = form["purpose"][1].decode("utf-8", "replace")
        if purpose not in FILE_PURPOSES:
            raise RequestError(400, f"Invalid value for 'purpose': expected one of {', '.join(FILE_PURPOSES)}.",
                               param="purpose", code="invalid_value")
        filename, content = form["file"]
        return self._store_file(filename or "upload", purpose, content)

    def _store_file(self, filename: str, purpose: str, content: bytes) -> StoredFile:
        stored = StoredFile("file-" + uuid.uuid4().hex[:24], filename, purpose, content, int(time.time()))
        self._files[stored.id] = stored
        return stored

    def _file(self, file_id: str) -> StoredFile:
        stored = self._files.get(file_id)
        if stored is None:
            raise RequestError(404, f"No such File object: {file_id}", param="id")
        return stored

    def _batch(self, batch_id: str) -> SimBatch:
        batch = self._batches.get(batch_id)
        if batch is None:
            raise RequestError(404, f"No batch found with id '{batch_id}'.", code="not_found")
        return batch

    def _create(self, settings: ServerSettings, body: dict[str, Any], *, azure: bool) -> dict[str, Any]:
        for name in ("input_file_id", "endpoint", "completion_window"):
            if not isinstance(body.get(name), str):
                raise RequestError(400, f"Missing required parameter: '{name}'.", param=name,
                                   code="missing_required_parameter")
        if body["completion_window"] != "24h":
            raise RequestError(400, "Invalid value for 'completion_window': expected '24h'.",
                               param="completion_window", code="invalid_value")
        endpoints = AZURE_CHAT_URLS if azure else (CHAT_ENDPOINT,)
        if body["endpoint"] not in endpoints:
            raise RequestError(400, f"The loopback server runs batches of {' or '.join(endpoints)} only, not "
                               f"{body['endpoint']!r}.", param="endpoint", code="invalid_value")
        metadata = body.get("metadata")
        if metadata is not None and (not isinstance(metadata, dict) or len(metadata) > 16 or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in metadata.items())):
            raise RequestError(400, "Invalid 'metadata': expected at most 16 string keys with string values.",
                               param="metadata", code="invalid_value")
        source = self._file(body["input_file_id"])
        if source.purpose != "batch":
            raise RequestError(400, f"The input file {source.id} must be uploaded with purpose 'batch', not "
                               f"{source.purpose!r}.", param="input_file_id", code="invalid_value")
        urls = AZURE_CHAT_URLS if azure else (body["endpoint"],)
        lines, errors, model = _read_input(source.content, urls)
        script = self._scripts.popleft() if self._scripts else BatchScript()
        if script.fail is not None:
            lines, errors = [], [{"code": "invalid_request", "message": script.fail, "param": None, "line": 1}]
        batch = SimBatch("batch_" + uuid.uuid4().hex[:24], source.id, body["endpoint"], metadata, int(time.time()),
                         self.clock.now(), lines, errors, model, script)
        self._batches[batch.id] = batch
        return batch.to_dict()

    def _list(self, settings: ServerSettings, query: dict[str, list[str]]) -> dict[str, Any]:
        try:
            limit = max(1, min(int(query.get("limit", ["20"])[0]), 100))
        except ValueError:
            raise RequestError(400, "Invalid 'limit': expected an integer.", param="limit") from None
        newest = list(reversed(self._batches.values()))
        after = query.get("after", [None])[0]
        if after is not None:
            ids = [batch.id for batch in newest]
            newest = newest[ids.index(after) + 1:] if after in ids else []
        page = newest[:limit]
        for batch in page:
            self._advance(settings, batch)
        data = [batch.to_dict() for batch in page]
        return {"object": "list", "data": data, "first_id": data[0]["id"] if data else None,
                "last_id": data[-1]["id"] if data else None, "has_more": len(newest) > limit}

    def _cancel(self, batch: SimBatch) -> None:
        if batch.status in FINAL or batch.status == "cancelling":
            raise RequestError(400, f"Cannot cancel a batch with status '{batch.status}'.", code="invalid_state")
        now = self.clock.now()
        batch.cancel_sim = now
        batch.status = "cancelling"
        batch.events["cancelling"] = now

    # -- the simulated clock ------------------------------------------------------------------------
    def _advance(self, settings: ServerSettings, batch: SimBatch) -> None:
        """Bring ``batch`` to where the clock says it is: answer the lines now due, move its status."""
        if batch.status in FINAL:
            return
        now = self.clock.now() + _TOLERANCE
        started = batch.created_sim + VALIDATING_SECONDS
        if batch.errors:
            if now >= started:
                self._finish(batch, "failed", started)
            return
        lines = len(batch.lines)
        limit = lines if batch.script.expire_after is None else min(batch.script.expire_after, lines)
        window_end = batch.created_sim + COMPLETION_WINDOW_SECONDS
        until = min(now, window_end, batch.cancel_sim if batch.cancel_sim is not None else math.inf)
        due = min(max(math.floor((until - started) / SECONDS_PER_LINE), 0), limit)
        if until >= started:
            batch.events.setdefault("in_progress", started)
        for line in batch.lines[len(batch.answers):due]:
            batch.answers.append(_answer(settings, line))
        ran_out = started + limit * SECONDS_PER_LINE  # when the last line it will answer is done
        if batch.cancel_sim is not None:
            if now >= batch.cancel_sim + CANCELLING_SECONDS:
                self._finish(batch, "cancelled", batch.cancel_sim + CANCELLING_SECONDS)
        elif limit < lines and now >= min(ran_out, window_end):
            self._finish(batch, "expired", min(ran_out, window_end))
        elif now >= window_end and len(batch.answers) < lines:
            self._finish(batch, "expired", window_end)
        elif len(batch.answers) == lines and now >= ran_out:
            batch.events.setdefault("finalizing", ran_out)
            if now >= ran_out + FINALIZING_SECONDS:
                self._finish(batch, "completed", ran_out + FINALIZING_SECONDS)
            else:
                batch.status = "finalizing"
        elif now >= started:
            batch.status = "in_progress"

    def _finish(self, batch: SimBatch, status: str, at: float) -> None:
        """The final status, with the output file (answers) and the error file (errors, lines never run)."""
        batch.status = status
        batch.events[status] = at
        if status == "failed":
            return
        missing = EXPIRED_ERROR if status == "expired" else CANCELLED_ERROR
        never_run = [Answer(str(line["custom_id"]), None, None, dict(missing))
                     for line in batch.lines[len(batch.answers):]]
        outputs = b"".join(answer.jsonl() for answer in batch.answers if answer.status == 200)
        errors = b"".join(answer.jsonl() for answer in batch.answers + never_run if answer.status != 200)
        if outputs:
            batch.output_file_id = self._store_file(f"{batch.id}_output.jsonl", "batch_output", outputs).id
        if errors:
            batch.error_file_id = self._store_file(f"{batch.id}_error.jsonl", "batch_output", errors).id


def _read_input(content: bytes, urls: tuple[str, ...]) -> tuple[list[dict[str, Any]], list[dict[str, Any]],
                                                                   str | None]:
    """The request lines of a batch input file, the faults that make the batch fail, and its model."""
    lines: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    seen: set[str] = set()
    model: str | None = None

    def fault(number: int, code: str, message: str, param: str | None = None) -> None:
        errors.append({"code": code, "message": message, "param": param, "line": number})

    text = content.decode("utf-8", "replace")
    rows = [(number, row) for number, row in enumerate(text.splitlines(), 1) if row.strip()]
    if not rows:
        fault(1, "empty_file", "The batch input file is empty.")
    if len(rows) > MAX_REQUESTS:
        fault(1, "too_many_requests", f"The batch input file has {len(rows):,} requests; a batch holds at "
                                      f"most {MAX_REQUESTS:,}.")
        return [], errors, None
    for number, row in rows:
        try:
            line = json.loads(row)
        except ValueError:
            fault(number, "invalid_json_line", "This line is not parseable as valid JSON.")
            continue
        if not isinstance(line, dict):
            fault(number, "invalid_json_line", "This line is not a JSON object.")
            continue
        missing = [name for name in ("custom_id", "method", "url", "body") if name not in line]
        if missing:
            fault(number, "missing_required_parameter", f"Missing required parameter: '{missing[0]}'.", missing[0])
            continue
        custom_id, body = line["custom_id"], line["body"]
        if not isinstance(custom_id, str) or not custom_id:
            fault(number, "invalid_value", "The custom_id must be a non-empty string.", "custom_id")
        elif custom_id in seen:
            fault(number, "duplicate_custom_id", "The custom_id for this request is a duplicate of another "
                                                 "request. The custom_id parameter must be unique for each "
                                                 "request in a batch.", "custom_id")
        elif line["method"] != "POST":
            fault(number, "invalid_method", "The method of every request in a batch must be POST.", "method")
        elif line["url"] not in urls:
            fault(number, "invalid_url", "The URL provided for this request does not match the batch endpoint.",
                  "url")
        elif not isinstance(body, dict):
            fault(number, "invalid_request", "The body of this request must be a JSON object.", "body")
        elif model is not None and body.get("model") != model:
            fault(number, "mismatched_model", "The model of this request does not match the model of the other "
                                              "requests in the batch: a batch uses one model.", "body.model")
        else:
            model = model if model is not None else body.get("model")
            seen.add(custom_id)
            lines.append(line)
    return (lines if not errors else []), errors, model


def _answer(settings: ServerSettings, line: dict[str, Any]) -> Answer:
    """Answer one request line as POST /v1/chat/completions answers it (not streamed)."""
    body = line["body"]
    try:
        validate_request(body, settings.models, strict=settings.strict)
        model = body["model"]
        prompt_tokens = prompt_tokens_in_window(body["messages"], model)
        script = script_for(body, settings.pop)  # the line's own "loopback" script, as for a chat request
        error = fault_error(script, body)
        if error is not None:
            raise error
        cached = settings.cache.cached_tokens(model, body["messages"], prompt_tokens)
        plan = plan_reply(body, script, prompt_tokens=prompt_tokens, cached_tokens=cached,
                          default_tokens=settings.default_tokens)
        return Answer(line["custom_id"], 200, json.loads(completion_body(plan)))
    except RequestError as error:
        return Answer(line["custom_id"], error.status, json.loads(error.body()))


def _usage(bodies: list[dict[str, Any] | None]) -> dict[str, Any]:
    usages = [body.get("usage") or {} for body in bodies if body]
    prompt = sum(usage.get("prompt_tokens", 0) for usage in usages)
    completion = sum(usage.get("completion_tokens", 0) for usage in usages)
    cached = sum((usage.get("prompt_tokens_details") or {}).get("cached_tokens", 0) for usage in usages)
    return {"input_tokens": prompt, "input_tokens_details": {"cached_tokens": cached},
            "output_tokens": completion, "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": prompt + completion}


def _form(content_type: str, raw: bytes) -> dict[str, tuple[str | None, bytes]]:
    """The fields of a multipart/form-data body: name -> (filename, bytes)."""
    if not content_type.lower().startswith("multipart/form-data"):
        raise RequestError(400, "Uploads must be multipart/form-data with the fields 'file' and 'purpose'.")
    message = BytesParser(policy=policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + raw)
    if not message.is_multipart():
        raise RequestError(400, "Could not parse the multipart/form-data body.")
    fields: dict[str, tuple[str | None, bytes]] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if isinstance(name, str):
            payload = part.get_payload(decode=True)
            fields[name] = (part.get_filename(), payload if isinstance(payload, bytes) else b"")
    return fields


def _parse_object(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw) if raw else None
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise RequestError(400, "We could not parse the JSON body of your request. (HINT: This likely means "
                           "you aren't using your HTTP library correctly. The OpenAI API expects a JSON payload.)")
    return body


def _json(data: Any) -> Response:
    return Response(200, "application/json", json.dumps(data).encode())


def _check_speedup(value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or math.isinf(value):
        raise ValueError(f"speedup must be a number >= 0 (0 holds every batch), got {value!r}")
    return float(value)
