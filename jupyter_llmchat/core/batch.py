"""The Batch API runner of ``Chatbot.map(mode="batch")``: rows sent as provider batches, at half price.

Submit: each RowRequest becomes a JSONL line ``{"custom_id": "row-<index>", "method": "POST", "url":
..., "body": {model, messages, params}}``; at most ``MAX_LINES`` lines and ``MAX_BYTES`` per file, so a
large job is several batches (and one batch per model). Each file is uploaded (/v1/files) and started
(/v1/batches); the job (ours: ``job_...``) is kept in a BatchJobStore as soon as its first batch runs,
so ``map_results(job_id)`` reattaches after a restart.

Wait: every batch is polled (from ``PollPolicy.first`` seconds apart up to ``most``), and the progress
callback gets rows done and failed, tokens and cost so far. KeyboardInterrupt or ``stop()`` ends the
wait within a moment, not the job: it runs on at the provider, its rows are returned "pending".

Collect: a batch that ended has its output and error files read and matched to rows by custom_id.
An answered row gets its text, usage and the batch price, as the concurrent map makes them (an
answer cut at max_tokens, filtered or refused fails its row, its text kept); a row the endpoint
rejected gets that error in one line, worded as a chat request's would be; a row the provider never
answered (the batch expired, a 429 or 5xx, a row missing from both files) is sent again in a new
batch holding only such rows, up to ``resubmit`` times; a cancelled batch's unanswered rows fail
("cancelled"); a batch that failed validation fails its rows with its reasons. Each result is
recorded once in the store, and each row that ran is told to ``notify`` (the ledger: billed at the
batch price) and ``on_result``, once, whichever kernel collects it. Rows a job has answered, or a
running job carries, are never sent again (``run``).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from . import errors
from .batch_jobs import BatchJob, BatchJobStore, BatchSubmission, new_job_id
from .client import BatchClient, BatchStatus
from .endpoint_errors import explain, read_error
from .map_items import MapResults, value_of
from .models import model_info
from .progress import RowProgress
from .reply import STATUS_BY_FINISH, STATUS_NOTICES, Reply, ReplyStatus, Usage
from .rows import RowRequest, RowResult

if TYPE_CHECKING:
    from .client import ChatClient

MAX_LINES = 50_000  # OpenAI's limit of requests per batch
MAX_BYTES = 190 * 1024 * 1024  # under OpenAI's 200 MB per batch input file
_CUSTOM_ID = "row-{}"
_ROW_IDS = "row-"
_STREAMING = ("stream", "stream_options")  # a batch line is answered whole


@dataclass(frozen=True)
class PollPolicy:
    """How often a waiting job looks at its batches: ``first`` seconds, growing by ``factor`` to ``most``."""

    first: float = 2.0
    factor: float = 1.5
    most: float = 60.0

    def intervals(self) -> Iterator[float]:
        wait = self.first
        while True:
            yield wait
            wait = min(wait * self.factor, self.most)


@dataclass(frozen=True)
class BatchProgress:
    """Where a job stands, for a progress bar: rows recorded plus those the provider counts as done."""

    job_id: str
    total: int
    done: int
    failed: int
    tokens: int
    cost: float | None
    status: str  # the least advanced status among its open batches ("completed" when none is open)


@dataclass
class _Outcome:
    """A row's outcome in an ended batch: its result, whether it ran (billed, told to the ledger), or
    why it should be sent again."""

    result: RowResult | None = None
    ran: bool = False
    again: str | None = None  # the reason it is sent again (None: it has its result)
    finish: str | None = None  # the answer's finish_reason, for the ledger


class BatchRunner:
    """Sends rows through the Batch API of ``client``'s endpoint and collects them (module docstring)."""

    def __init__(self, client: ChatClient, jobs: BatchJobStore, *, notify: Callable[[Reply], None] | None = None,
                 on_result: Callable[[RowResult], None] | None = None,
                 progress: Callable[[BatchProgress], None] | None = None, poll: PollPolicy | None = None,
                 resubmit: int = 1, session: str | None = None) -> None:
        self.batches = BatchClient(client)
        self.jobs = jobs
        self.notify = notify
        self.on_result = on_result
        self.progress = progress
        self.poll = poll or PollPolicy()
        self.resubmit = resubmit
        self.session = session
        self._requests: dict[int, RowRequest] = {}  # this process's rows, to send again without a download
        self._stop = threading.Event()

    def stop(self) -> None:
        """End the wait now, from any thread (the job runs on at the provider)."""
        self._stop.set()

    # -- submitting ----------------------------------------------------------------------------------
    def submit(self, requests: Sequence[RowRequest]) -> BatchJob:
        """Upload and start the batches of a new job; returns it (kept in the store).

        Raises a ChatError when not even the first batch could be started (nothing is kept then);
        rows whose batch failed to start after that are recorded as failed rows, with the error."""
        if not requests:
            raise errors.ConfigurationError("a batch job needs at least one row")
        indices = [request.index for request in requests]
        if len(set(indices)) != len(indices):
            raise errors.ConfigurationError("each row of a batch job needs its own index")
        job = BatchJob(new_job_id(), requests[0].model, self.batches.client.base_url, len(requests),
                       session=self.session)
        self._requests.update((request.index, request) for request in requests)
        chunks = _chunks(requests, self.batches.endpoint)  # one file in memory at a time
        first, content = next(chunks)
        submission = self._start(job.id, content, 1)  # raises: nothing was sent, nothing kept
        self.jobs.add_job(job, [(request.index, request.key) for request in requests])
        self.jobs.add_submission(job.id, submission, [request.index for request in first])
        for number, (rows, content) in enumerate(chunks, 2):
            try:
                submission = self._start(job.id, content, number)
            except errors.ChatError as error:
                failed = [RowResult(row.index, row.key, "failed", error=f"its batch could not be started: {error}")
                          for row in rows]
                self.jobs.record(job.id, failed)
                continue
            self.jobs.add_submission(job.id, submission, [row.index for row in rows])
        return self.jobs.job(job.id) or job

    def _start(self, job_id: str, content: bytes, number: int) -> BatchSubmission:
        file_id = self.batches.upload(content, f"{job_id}-{number}.jsonl")
        status = self.batches.create(file_id, metadata={"jupyter_llmchat_job": job_id})
        return _submission(status, rows=content.count(b"\n"))

    def run(self, requests: Sequence[RowRequest], *, wait: bool = True) -> tuple[list[str], list[RowResult]]:
        """Ask ``requests`` through the Batch API: rows a job of the store has answered are taken as
        they are, rows a running job carries (an earlier call whose kernel died or stopped waiting)
        are waited for; only the others are submitted, as a new job. Returns (the jobs' ids, a
        result per request with the request's index, in index order)."""
        carried = self.jobs.reusable([request.key for request in requests])
        job_ids = list(dict.fromkeys(job_id for job_id, _ in carried.values()))
        new = [request for request in requests if request.key not in carried]
        if new:
            job_ids.append(self.submit(new).id)
        if wait:
            self._wait(job_ids)
        found: dict[str, RowResult] = {}
        for job_id in job_ids:
            for row in self.results(job_id):
                if row.key not in found or found[row.key].status != "done":
                    found[row.key] = row
        return job_ids, [replace(found[request.key], index=request.index)
                         for request in sorted(requests, key=lambda request: request.index)]

    # -- waiting and collecting --------------------------------------------------------------------
    def wait(self, job_id: str) -> list[RowResult]:
        """Poll the job's batches until every row has its result (collecting each batch as it ends);
        returns every row in index order. Interrupted (KeyboardInterrupt, ``stop()``), it returns at
        once, with the rows not yet answered "pending"."""
        job_id = self._job(job_id).id  # ours, also when a provider batch id was given
        self._wait([job_id])
        return self.results(job_id)

    def _wait(self, job_ids: list[str]) -> None:
        jobs = [self._job(job_id) for job_id in job_ids]
        intervals = self.poll.intervals()
        try:
            while not self._stop.is_set():
                jobs = [self._look(job) for job in jobs]
                self._show(jobs)
                if all(submission.collected for job in jobs for submission in job.submissions):
                    break
                self._stop.wait(next(intervals))
        except KeyboardInterrupt:
            pass

    def collect(self, job_id: str) -> list[RowResult]:
        """Look at the job's batches once (collecting those that ended); every row in index order."""
        job = self._look(self._job(job_id))
        self._show([job])
        return self.results(job.id)

    def results(self, job_id: str) -> list[RowResult]:
        """Every row of the job in index order; a row still running says how to get it later."""
        job = self._job(job_id)
        rows = self.jobs.results(job.id)
        if job.status == "running":
            note = (f"not answered yet: batch job {job.id} runs on at the provider; bot.map_results({job.id!r}) "
                    "collects it")
            rows = [replace(row, error=note) if row.status == "pending" else row for row in rows]
        return rows

    def cancel(self, job_id: str) -> BatchJob:
        """Ask the provider to cancel the job's open batches; answered rows stay (collect them as usual)."""
        job = self._job(job_id)
        for submission in job.submissions:
            if not submission.collected and submission.status not in ("cancelling", "cancelled", "completed",
                                                                       "failed", "expired"):
                self._update(job.id, submission, self.batches.cancel(submission.id))
        return self._job(job_id)

    def job(self, job_id: str) -> BatchJob:
        """The job with this id (or one of its provider batch ids), as kept; BatchError if none."""
        return self._job(job_id)

    def _job(self, job_id: str) -> BatchJob:
        job = self.jobs.job(job_id)
        if job is None:
            known = ", ".join(j.id for j in self.jobs.jobs()[:5]) or "none yet"
            raise errors.BatchError(f"no batch job {job_id!r} in the store (jobs: {known}); %chat batches lists "
                                    "them")
        return job

    def _look(self, job: BatchJob) -> BatchJob:
        """Retrieve each open batch; collect the ones that ended. Returns the job as now kept."""
        for submission in job.submissions:
            if submission.collected:
                continue
            status = self.batches.retrieve(submission.id)
            self._update(job.id, submission, status)
            if status.final:
                self._collect(job, submission, status)
        job = self._job(job.id)
        if job.status == "running" and all(submission.collected for submission in job.submissions):
            self.jobs.set_status(job.id, "cancelled" if any(s.status == "cancelled" for s in job.submissions)
                                 else "completed")
            job = self._job(job.id)
        return job

    def _update(self, job_id: str, submission: BatchSubmission, status: BatchStatus) -> None:
        submission.status, submission.completed, submission.failed = status.status, status.completed, status.failed
        submission.output_file_id, submission.error_file_id = status.output_file_id, status.error_file_id
        self.jobs.update_submission(job_id, submission)

    def _collect(self, job: BatchJob, submission: BatchSubmission, status: BatchStatus) -> None:
        """Record the results of a batch that ended, and send again the rows it left unanswered."""
        carried = self.jobs.carried(job.id, submission.id)
        lines = {}
        for file_id in (status.output_file_id, status.error_file_id):
            if file_id is not None:
                lines.update(_lines(self.batches.download(file_id)))
        outcomes = {index: self._outcome(lines.get(_CUSTOM_ID.format(index)), status, index, key, job.model)
                    for index, (key, _) in carried.items()}
        again = {index: outcome.again for index, outcome in outcomes.items()
                 if outcome.again is not None and carried[index][1] <= self.resubmit}
        for index, outcome in outcomes.items():
            if outcome.again is not None and index not in again:
                tries = carried[index][1]
                outcome.result = RowResult(index, carried[index][0], "failed",
                                           error=f"not answered: {outcome.again} (sent in {tries} batches)")
        if again:
            self._send_again(job, submission, sorted(again))
        results = [outcome.result for outcome in outcomes.values() if outcome.result is not None]
        ran = {index: outcome.finish for index, outcome in outcomes.items() if outcome.ran}
        repriced: list[tuple[int, float | None]] = []
        for result in self.jobs.record(job.id, results):
            if result.index in ran and self.notify is not None:
                reply = _reply(result, job.model, ran[result.index])
                self.notify(reply)
                if result.usage is not None and reply.cost != result.cost:  # a listener priced it (the demo: 0)
                    result.cost = reply.cost
                    repriced.append((result.index, reply.cost))
            if self.on_result is not None:
                self.on_result(result)
        if repriced:
            self.jobs.reprice(job.id, repriced)
        submission.collected = True
        self.jobs.update_submission(job.id, submission)

    def _send_again(self, job: BatchJob, submission: BatchSubmission, indices: list[int]) -> None:
        """A new batch holding only ``indices`` (their requests as first sent)."""
        requests = self._requests if all(index in self._requests for index in indices) else _requests_in(
            self.batches.download(submission.input_file_id))
        rows = [requests[index] for index in indices]
        for number, (chunk, content) in enumerate(_chunks(rows, self.batches.endpoint), len(job.submissions) + 1):
            started = self._start(job.id, content, number)
            self.jobs.add_submission(job.id, started, [row.index for row in chunk])
            job.submissions.append(started)

    def _outcome(self, line: dict[str, Any] | None, status: BatchStatus, index: int, key: str,
                 model: str) -> _Outcome:
        """What one row of an ended batch got (see the module docstring)."""
        where = self.batches.client.base_url
        if line is None:
            if status.status == "failed":
                reasons = "; ".join(status.errors) or "no reason given"
                return _Outcome(RowResult(index, key, "failed", error=errors.one_line(
                    f"the provider rejected batch {status.id}: {reasons}")))
            if status.status == "cancelled":
                return _Outcome(RowResult(index, key, "failed", error=f"batch {status.id} was cancelled before "
                                                                      "this row was answered"))
            return _Outcome(again=f"batch {status.id} ended ({status.status}) without answering it")
        response, error = line.get("response"), line.get("error")
        if isinstance(response, dict) and response.get("status_code") == 200:
            result, finish = _answered(index, key, response.get("body"), model)
            return _Outcome(result, ran=True, finish=finish)
        if isinstance(response, dict):
            code = response.get("status_code")
            code = code if isinstance(code, int) else 500
            said = explain(read_error(code, response.get("body")), where=where, model=model)
            if code == 429 or code >= 500:
                return _Outcome(again=f"the provider answered {said}", ran=False)
            return _Outcome(RowResult(index, key, "failed", error=self.batches.client.scrub(str(said))), ran=True)
        code = error.get("code") if isinstance(error, dict) else None
        message = errors.one_line(str(error.get("message") or "")) if isinstance(error, dict) else ""
        if code == "batch_cancelled":
            return _Outcome(RowResult(index, key, "failed", error=f"batch {status.id} was cancelled before this "
                                                                  "row was answered"))
        if code == "batch_expired":
            return _Outcome(again=f"batch {status.id} expired before answering it")
        return _Outcome(RowResult(index, key, "failed", error=errors.one_line(
            f"the provider could not run this row ({code or 'no code'}: {message or 'no message'})")))

    def _show(self, jobs: list[BatchJob]) -> None:
        if self.progress is None:
            return
        open_ = [submission for job in jobs for submission in job.submissions if not submission.collected]
        order = ("validating", "in_progress", "finalizing", "cancelling")
        status = min((s.status for s in open_), key=lambda s: order.index(s) if s in order else len(order),
                     default="completed")
        costs = [job.cost for job in jobs]
        self.progress(BatchProgress(jobs[0].id if len(jobs) == 1 else ", ".join(job.id for job in jobs),
                                    sum(job.rows for job in jobs),
                                    sum(job.done for job in jobs) + sum(s.completed for s in open_),
                                    sum(job.failed for job in jobs) + sum(s.failed for s in open_),
                                    sum(job.tokens for job in jobs),
                                    None if any(cost is None for cost in costs) else sum(c or 0.0 for c in costs),
                                    status))


def run_batch(client: ChatClient, jobs: BatchJobStore, requests: Sequence[RowRequest], *, wait: bool = True,
              schema: Any = None, **options: Any) -> tuple[str, list[RowResult]]:
    """``BatchRunner.run``: rows answered by an earlier job are reused, rows a running job carries are
    waited for, the others submitted as a new job. Returns (the last job's id, a result per request
    in index order). ``options`` are BatchRunner's (notify, on_result, progress, poll, resubmit,
    session)."""
    job_ids, rows = BatchRunner(client, jobs, **options).run(requests, wait=wait)
    return job_ids[-1], parse_rows(rows, schema)


def collect_job(client: ChatClient, jobs: BatchJobStore, job_id: str, *, wait: bool = True, schema: Any = None,
                progress: bool | Callable[[BatchProgress], None] = True, **options: Any) -> MapResults:
    """Reattach to a job (ours or one of its provider batch ids): wait for it (or look once) and
    return its answers in index order, as ``map`` does (``.rows``: every RowResult, ``.job_id``),
    each parsed with ``schema`` if one is given. ``progress``: the progress bar (True), none
    (False), or a callback of BatchProgress."""
    job = BatchRunner(client, jobs).job(job_id)
    if progress is True:
        with RowProgress(job.rows, description=f"batch {job.id}") as bar:
            rows = _collect(client, jobs, job.id, wait, show_on(bar), options)
            if any(row.status == "pending" for row in rows):
                bar.note("waiting stopped", f"the job runs on at the provider: bot.map_results({job.id!r}) "
                                            "collects it")
    else:
        rows = _collect(client, jobs, job.id, wait, progress or None, options)
    rows = parse_rows(rows, schema)
    return MapResults([value_of(row, schema) for row in rows], rows,
                      interrupted=any(row.status == "pending" for row in rows), job_id=job.id)


def _collect(client: ChatClient, jobs: BatchJobStore, job_id: str, wait: bool,
             progress: Callable[[BatchProgress], None] | None, options: dict[str, Any]) -> list[RowResult]:
    runner = BatchRunner(client, jobs, progress=progress, **options)
    return runner.wait(job_id) if wait else runner.collect(job_id)


def show_on(bar: RowProgress, *, resumed: int = 0) -> Callable[[BatchProgress], None]:
    """A progress callback that shows a job on ``bar`` (rows answered before the job: ``resumed``)."""

    def show(state: BatchProgress) -> None:
        bar.set_counts(done=resumed + state.done, failed=state.failed, tokens=state.tokens, cost=state.cost)
        bar.note(None if state.status == "completed" else state.status.replace("_", " "))

    return show


def cancel_job(client: ChatClient, jobs: BatchJobStore, job_id: str) -> BatchJob:
    """Ask the provider to cancel the job's open batches; rows answered before stay (collect them)."""
    return BatchRunner(client, jobs).cancel(job_id)


def parse_rows(rows: list[RowResult], schema: Any) -> list[RowResult]:
    """Rows with each answer parsed against ``schema`` (structured.parse_answer); an answer that does
    not parse fails its row with the reason (the text is kept). A cut answer failed already."""
    if schema is None:
        return rows
    from .structured import parse_answer

    parsed = []
    for row in rows:
        if row.status == "done":
            try:
                row = replace(row, parsed=parse_answer(row.text or "", schema))
            except errors.ChatError as error:
                row = replace(row, status="failed", error=str(error))
        parsed.append(row)
    return parsed


def request_line(request: RowRequest, url: str) -> dict[str, Any]:
    """The JSONL line of one row: its body is what /v1/chat/completions would be sent (no stream)."""
    params = {name: value for name, value in request.params.items() if name not in _STREAMING}
    return {"custom_id": _CUSTOM_ID.format(request.index), "method": "POST", "url": url,
            "body": {"model": request.model, "messages": request.messages, **params}}


def _chunks(requests: Sequence[RowRequest], url: str) -> Iterator[tuple[list[RowRequest], bytes]]:
    """The rows cut into input files: one model each, at most MAX_LINES lines and MAX_BYTES bytes."""
    by_model: dict[str, list[RowRequest]] = {}
    for request in requests:
        by_model.setdefault(request.model, []).append(request)
    for rows in by_model.values():
        chunk: list[RowRequest] = []
        lines: list[bytes] = []
        size = 0
        for request in rows:
            line = json.dumps(request_line(request, url), ensure_ascii=False, separators=(",", ":")).encode() + b"\n"
            if len(line) > MAX_BYTES:
                raise errors.ConfigurationError(f"row {request.index} is {len(line):,} bytes, more than a batch "
                                                f"file may hold ({MAX_BYTES:,}): shorten it or ask it without "
                                                "mode='batch'")
            if chunk and (len(chunk) >= MAX_LINES or size + len(line) > MAX_BYTES):
                yield chunk, b"".join(lines)
                chunk, lines, size = [], [], 0
            chunk.append(request)
            lines.append(line)
            size += len(line)
        if chunk:
            yield chunk, b"".join(lines)


def _lines(content: bytes) -> dict[str, dict[str, Any]]:
    """The lines of an output or error file, by custom_id (a line that is not JSON is skipped)."""
    found: dict[str, dict[str, Any]] = {}
    for raw in content.splitlines():
        try:
            line = json.loads(raw)
        except ValueError:
            continue
        if isinstance(line, dict) and isinstance(line.get("custom_id"), str):
            found[line["custom_id"]] = line
    return found


def _requests_in(content: bytes) -> dict[int, RowRequest]:
    """The rows of an input file (as sent), by index: to send again after a restart."""
    rows: dict[int, RowRequest] = {}
    for custom_id, line in _lines(content).items():
        body = line.get("body")
        if not custom_id.startswith(_ROW_IDS) or not custom_id[len(_ROW_IDS):].isdigit() or not isinstance(body, dict):
            continue
        index = int(custom_id[len(_ROW_IDS):])
        params = {name: value for name, value in body.items() if name not in ("model", "messages")}
        rows[index] = RowRequest(index, body.get("model", ""), body.get("messages", []), params)
    return rows


def _answered(index: int, key: str, body: Any, model: str) -> tuple[RowResult, str | None]:
    """The result of a row the endpoint answered (a chat.completion body), as the concurrent map
    makes it: done, or failed with the reason (a cut at max_tokens, the content filter, a refusal)
    with the text kept; and the answer's finish_reason."""
    body = body if isinstance(body, dict) else {}
    choices = body.get("choices") or [{}]
    choice: dict[str, Any] = choices[0] if isinstance(choices[0], dict) else {}
    message: dict[str, Any] = choice["message"] if isinstance(choice.get("message"), dict) else {}
    text = message.get("content") if isinstance(message.get("content"), str) else ""
    usage = _usage(body.get("usage"))
    answered_by = body.get("model") if isinstance(body.get("model"), str) else model
    cost = None
    if usage is not None:
        cost = model_info(answered_by).cost(usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens,
                                            batch=True)
        if cost is None and answered_by != model:  # a dated snapshot the table lacks: the family's price
            cost = model_info(model).cost(usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens,
                                          batch=True)
    finish = choice.get("finish_reason") if isinstance(choice.get("finish_reason"), str) else None
    refusal = message.get("refusal")
    result = RowResult(index, key, "failed", text=text, usage=usage, cost=cost, attempts=1)
    if isinstance(refusal, str) and refusal:
        result.text, result.error = refusal, errors.one_line(f"the model refused: {refusal}")
    elif finish == "length":
        result.error = STATUS_NOTICES["truncated"] + ": raise max_tokens"
    elif finish == "content_filter":
        result.error = STATUS_NOTICES["filtered"]
    else:
        result.status = "done"
    return result, finish


def _usage(data: Any) -> Usage | None:
    if not isinstance(data, dict):
        return None
    details: dict[str, Any] = data["prompt_tokens_details"] if isinstance(data.get("prompt_tokens_details"),
                                                                          dict) else {}
    return Usage(int(data.get("prompt_tokens") or 0), int(data.get("completion_tokens") or 0),
                 int(details.get("cached_tokens") or 0))


def _reply(result: RowResult, model: str, finish: str | None) -> Reply:
    """The Reply the ledger records for a row that ran (billed at the batch price)."""
    status: ReplyStatus = STATUS_BY_FINISH.get(finish, "complete") if result.text is not None else "failed"
    cost = result.cost if result.usage is not None else 0.0
    return Reply(text=result.text or "", model=model, status=status, finish_reason=finish, usage=result.usage,
                 cost=cost, error=result.error if status == "failed" else None, batch=True,
                 request={"model": model, "params": {}})


def _submission(status: BatchStatus, *, rows: int) -> BatchSubmission:
    return BatchSubmission(status.id, status.input_file_id, status.status, rows, status.completed, status.failed,
                           status.output_file_id, status.error_file_id, created=time.time())
