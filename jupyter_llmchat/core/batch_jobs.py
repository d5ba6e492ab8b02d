"""What is kept of a Batch API job, so it can be collected later, by this kernel or another one.

A job is one ``map(mode="batch")`` call: our id, the model, where it was sent, its rows (index and
request key), and the provider batches that carry them (a large job is several; a row the provider
did not answer is carried again by a later one). Each row's result is recorded once.
``BatchJobStore`` is what the runner (batch.py) needs; ``MemoryBatchJobs`` keeps jobs for this
process only, store/batch_jobs.py keeps them in the SQLite store (``%chat batches`` lists them).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Literal, Protocol

from .rows import RowResult

JobStatus = Literal["running", "completed", "cancelled"]  # completed: every row has its result (done or failed)


def new_job_id() -> str:
    """Our id for a job (the provider's ids name its batches): ``job_`` and 20 hex digits."""
    return "job_" + uuid.uuid4().hex[:20]


@dataclass
class BatchSubmission:
    """One provider batch of a job, as last seen."""

    id: str  # the provider's batch id
    input_file_id: str
    status: str = "validating"
    rows: int = 0  # rows it carries
    completed: int = 0  # the provider's request counts
    failed: int = 0
    output_file_id: str | None = None
    error_file_id: str | None = None
    collected: bool = False  # its rows' results are recorded (and the rows it left, handed on)
    created: float = field(default_factory=time.time)


@dataclass
class BatchJob:
    """One job: where it went, its rows, its batches; ``done``/``failed`` count recorded results."""

    id: str
    model: str
    endpoint: str  # the base URL it was sent to, as it may be shown (secrets redacted)
    rows: int
    created: float = field(default_factory=time.time)
    session: str | None = None
    status: JobStatus = "running"
    submissions: list[BatchSubmission] = field(default_factory=list)
    done: int = 0
    failed: int = 0
    cost: float | None = 0.0  # USD at the batch price, of the rows recorded (None: a price unknown)
    tokens: int = 0  # prompt and completion tokens of the rows recorded

    @property
    def pending(self) -> int:
        return self.rows - self.done - self.failed


class BatchJobStore(Protocol):
    """Where jobs are kept. Thread-safe; ``record`` is atomic, so two kernels collecting the same
    job record (and bill) each row once."""

    def add_job(self, job: BatchJob, keys: Sequence[tuple[int, str]]) -> None:
        """Keep a new job and its rows (index, request key), every one pending."""

    def add_submission(self, job_id: str, submission: BatchSubmission, rows: Sequence[int]) -> None:
        """Keep a provider batch of the job; ``rows`` (indices) are carried by it from now on."""

    def update_submission(self, job_id: str, submission: BatchSubmission) -> None:
        """Save what was last seen of a provider batch (status, counts, files, collected)."""

    def set_status(self, job_id: str, status: JobStatus) -> None: ...

    def job(self, job_id: str) -> BatchJob | None:
        """The job with this id, or the one a provider batch with this id belongs to."""

    def jobs(self) -> list[BatchJob]:
        """Every job, newest first."""

    def carried(self, job_id: str, batch_id: str) -> dict[int, tuple[str, int]]:
        """The rows without a result that batch ``batch_id`` carries: index -> (key, batches that carried it)."""

    def reusable(self, keys: Sequence[str]) -> dict[str, tuple[str, int]]:
        """Of these request keys, those a job has answered, or a running job carries without a result
        yet (an answer first): key -> (job id, index). The same request is never paid twice."""

    def record(self, job_id: str, results: Sequence[RowResult]) -> list[RowResult]:
        """Record the results of rows still without one; returns those recorded now (a row
        recorded before, by this kernel or another, is left as it was)."""

    def reprice(self, job_id: str, costs: Sequence[tuple[int, float | None]]) -> None:
        """Set the cost of recorded rows (index, USD): what a reply listener made of it (the offline
        demo's answers cost nothing)."""

    def results(self, job_id: str) -> list[RowResult]:
        """Every row of the job in index order: its result, or status "pending"."""


@dataclass
class _Row:
    key: str
    batch: str | None = None
    attempts: int = 0
    result: RowResult | None = None


class MemoryBatchJobs:
    """A BatchJobStore for this process only (a bot without a store)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._jobs: dict[str, BatchJob] = {}
        self._rows: dict[str, dict[int, _Row]] = {}

    def add_job(self, job: BatchJob, keys: Sequence[tuple[int, str]]) -> None:
        with self._lock:
            self._jobs[job.id] = replace(job, submissions=list(job.submissions))
            self._rows[job.id] = {index: _Row(key) for index, key in keys}

    def add_submission(self, job_id: str, submission: BatchSubmission, rows: Sequence[int]) -> None:
        with self._lock:
            self._jobs[job_id].submissions.append(replace(submission))
            for index in rows:
                row = self._rows[job_id][index]
                row.batch, row.attempts = submission.id, row.attempts + 1

    def update_submission(self, job_id: str, submission: BatchSubmission) -> None:
        with self._lock:
            kept = self._jobs[job_id].submissions
            kept[:] = [replace(submission) if s.id == submission.id else s for s in kept]

    def set_status(self, job_id: str, status: JobStatus) -> None:
        with self._lock:
            self._jobs[job_id].status = status

    def job(self, job_id: str) -> BatchJob | None:
        with self._lock:
            found = self._jobs.get(job_id) or next(
                (job for job in self._jobs.values() if any(s.id == job_id for s in job.submissions)), None)
            return self._copy(found) if found is not None else None

    def jobs(self) -> list[BatchJob]:
        with self._lock:
            return [self._copy(job) for job in sorted(self._jobs.values(), key=lambda j: j.created, reverse=True)]

    def carried(self, job_id: str, batch_id: str) -> dict[int, tuple[str, int]]:
        with self._lock:
            return {index: (row.key, row.attempts) for index, row in sorted(self._rows[job_id].items())
                    if row.batch == batch_id and row.result is None}

    def reusable(self, keys: Sequence[str]) -> dict[str, tuple[str, int]]:
        wanted = set(keys)
        answered: dict[str, tuple[str, int]] = {}
        carried: dict[str, tuple[str, int]] = {}
        with self._lock:
            for job_id, rows in self._rows.items():
                running = self._jobs[job_id].status == "running"
                for index, row in sorted(rows.items()):
                    if row.key not in wanted:
                        continue
                    if row.result is not None and row.result.status == "done":
                        answered.setdefault(row.key, (job_id, index))
                    elif row.result is None and running:
                        carried.setdefault(row.key, (job_id, index))
        return {**carried, **answered}

    def record(self, job_id: str, results: Sequence[RowResult]) -> list[RowResult]:
        with self._lock:
            rows = self._rows[job_id]
            recorded = []
            for result in results:
                row = rows[result.index]
                if row.result is None:
                    row.result = replace(result, attempts=row.attempts)
                    recorded.append(row.result)
            return recorded

    def reprice(self, job_id: str, costs: Sequence[tuple[int, float | None]]) -> None:
        with self._lock:
            rows = self._rows[job_id]
            for index, cost in costs:
                result = rows[index].result
                if result is not None:
                    result.cost = cost

    def results(self, job_id: str) -> list[RowResult]:
        with self._lock:
            return [replace(row.result) if row.result is not None else
                    RowResult(index, row.key, "pending", attempts=row.attempts)
                    for index, row in sorted(self._rows[job_id].items())]

    def _copy(self, job: BatchJob) -> BatchJob:
        """A copy with the counts of what is recorded."""
        results = [row.result for row in self._rows[job.id].values() if row.result is not None]
        costs = [result.cost for result in results]
        return replace(job, submissions=[replace(s) for s in job.submissions],
                       done=sum(result.status == "done" for result in results),
                       failed=sum(result.status == "failed" for result in results),
                       tokens=sum(result.usage.total_tokens for result in results if result.usage is not None),
                       cost=None if any(cost is None and result.usage is not None
                                        for cost, result in zip(costs, results)) else sum(c or 0.0 for c in costs))
