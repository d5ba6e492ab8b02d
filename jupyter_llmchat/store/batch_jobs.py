"""Batch API jobs kept in the store: a BatchJobStore (core/batch_jobs.py) on the SQLite file.

Tables of migration 5: ``batch_jobs`` (one row a job), ``batch_submissions`` (the provider batches
carrying its rows) and ``batch_rows`` (each row's request key, the batch carrying it, how many
batches have carried it, its result once recorded). Each write is one transaction; ``record``
fills a row only while it is pending, so two kernels collecting the same job record each row once
and only the one that recorded it tells the ledger.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from ..core.batch_jobs import BatchJob, BatchSubmission, JobStatus
from ..core.reply import Usage
from ..core.rows import RowResult

if TYPE_CHECKING:
    from .database import Database

_KEYS_PER_QUERY = 500  # request keys looked up per query (SQLite's limit of parameters is 999 on old builds)
_SUBMISSION_COLUMNS = ("id", "input_file_id", "status", "rows", "completed", "failed", "output_file_id",
                       "error_file_id", "collected", "created")
_JOB_COUNTS = """SELECT COALESCE(SUM(status = 'done'), 0) AS done, COALESCE(SUM(status = 'failed'), 0) AS failed,
                 COALESCE(SUM(cost), 0.0) AS cost, COALESCE(SUM(cost IS NULL AND usage IS NOT NULL), 0) AS unpriced,
                 COALESCE(SUM(json_extract(usage, '$.prompt_tokens') + json_extract(usage, '$.completion_tokens')),
                          0) AS tokens
                 FROM batch_rows WHERE job = ?"""


class StoreBatchJobs:
    """Jobs in ``database``; a job added here without a session gets ``session`` (the recorder's)."""

    def __init__(self, database: Database, *, session: str | None = None) -> None:
        self.database = database
        self.session = session

    def add_job(self, job: BatchJob, keys: Sequence[tuple[int, str]]) -> None:
        now = time.time()
        with self.database.transaction() as db:
            db.execute("INSERT INTO batch_jobs (id, created, updated, session, model, endpoint, rows, status) "
                       "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                       (job.id, job.created, now, job.session or self.session, job.model, job.endpoint, job.rows,
                        job.status))
            db.executemany("INSERT INTO batch_rows (job, idx, key) VALUES (?, ?, ?)",
                           ((job.id, index, key) for index, key in keys))
            for submission in job.submissions:
                _insert_submission(db, job.id, submission)

    def add_submission(self, job_id: str, submission: BatchSubmission, rows: Sequence[int]) -> None:
        with self.database.transaction() as db:
            _insert_submission(db, job_id, submission)
            db.executemany("UPDATE batch_rows SET batch = ?, attempts = attempts + 1 WHERE job = ? AND idx = ?",
                           ((submission.id, job_id, index) for index in rows))
            db.execute("UPDATE batch_jobs SET updated = ? WHERE id = ?", (time.time(), job_id))

    def update_submission(self, job_id: str, submission: BatchSubmission) -> None:
        with self.database.transaction() as db:
            db.execute("UPDATE batch_submissions SET status = ?, completed = ?, failed = ?, output_file_id = ?, "
                       "error_file_id = ?, collected = ? WHERE id = ? AND job = ?",
                       (submission.status, submission.completed, submission.failed, submission.output_file_id,
                        submission.error_file_id, int(submission.collected), submission.id, job_id))
            db.execute("UPDATE batch_jobs SET updated = ? WHERE id = ?", (time.time(), job_id))

    def set_status(self, job_id: str, status: JobStatus) -> None:
        with self.database.transaction() as db:
            db.execute("UPDATE batch_jobs SET status = ?, updated = ? WHERE id = ?", (status, time.time(), job_id))

    def job(self, job_id: str) -> BatchJob | None:
        rows = self.database.query("SELECT * FROM batch_jobs WHERE id = ? OR id = (SELECT job FROM "
                                   "batch_submissions WHERE id = ?)", (job_id, job_id))
        return self._job(rows[0]) if rows else None

    def jobs(self) -> list[BatchJob]:
        return [self._job(row) for row in self.database.query("SELECT * FROM batch_jobs ORDER BY created DESC, id")]

    def carried(self, job_id: str, batch_id: str) -> dict[int, tuple[str, int]]:
        rows = self.database.query("SELECT idx, key, attempts FROM batch_rows WHERE job = ? AND batch = ? AND "
                                   "status = 'pending' ORDER BY idx", (job_id, batch_id))
        return {row["idx"]: (row["key"], row["attempts"]) for row in rows}

    def reusable(self, keys: Sequence[str]) -> dict[str, tuple[str, int]]:
        found: dict[str, tuple[str, int]] = {}
        unique = list(dict.fromkeys(keys))
        for start in range(0, len(unique), _KEYS_PER_QUERY):
            chunk = unique[start:start + _KEYS_PER_QUERY]
            rows = self.database.query(
                "SELECT r.key, r.job, r.idx FROM batch_rows r JOIN batch_jobs j ON j.id = r.job WHERE r.key IN "
                f"({', '.join('?' * len(chunk))}) AND (r.status = 'done' OR (r.status = 'pending' AND j.status = "
                "'running')) ORDER BY r.status = 'done' DESC, j.created, r.job, r.idx", tuple(chunk))
            for row in rows:
                found.setdefault(row["key"], (row["job"], row["idx"]))  # an answer first
        return found

    def record(self, job_id: str, results: Sequence[RowResult]) -> list[RowResult]:
        recorded: list[RowResult] = []
        with self.database.transaction() as db:
            for result in results:
                found = db.execute(
                    "UPDATE batch_rows SET status = ?, text = ?, error = ?, usage = ?, cost = ? WHERE job = ? AND "
                    "idx = ? AND status = 'pending' RETURNING attempts",
                    (result.status, result.text, result.error, _usage_json(result.usage), result.cost, job_id,
                     result.index)).fetchone()
                if found is not None:
                    recorded.append(RowResult(result.index, result.key, result.status, result.text, result.parsed,
                                              result.error, result.usage, result.cost, found[0]))
            db.execute("UPDATE batch_jobs SET updated = ? WHERE id = ?", (time.time(), job_id))
        return recorded

    def reprice(self, job_id: str, costs: Sequence[tuple[int, float | None]]) -> None:
        with self.database.transaction() as db:
            db.executemany("UPDATE batch_rows SET cost = ? WHERE job = ? AND idx = ? AND status != 'pending'",
                           ((cost, job_id, index) for index, cost in costs))

    def results(self, job_id: str) -> list[RowResult]:
        rows = self.database.query("SELECT idx, key, attempts, status, text, error, usage, cost FROM batch_rows "
                                   "WHERE job = ? ORDER BY idx", (job_id,))
        return [RowResult(row["idx"], row["key"], row["status"], row["text"], None, row["error"],
                          _usage_from(row["usage"]), row["cost"], row["attempts"]) for row in rows]

    def _job(self, row: dict[str, Any]) -> BatchJob:
        submissions = [BatchSubmission(**{**found, "collected": bool(found["collected"])})
                       for found in self.database.query(
                           f"SELECT {', '.join(_SUBMISSION_COLUMNS)} FROM batch_submissions WHERE job = ? "
                           "ORDER BY created, rowid", (row["id"],))]
        counts = self.database.query(_JOB_COUNTS, (row["id"],))[0]
        return BatchJob(row["id"], row["model"], row["endpoint"], row["rows"], row["created"], row["session"],
                        row["status"], submissions, counts["done"], counts["failed"],
                        None if counts["unpriced"] else counts["cost"], counts["tokens"])

    def __repr__(self) -> str:
        return f"StoreBatchJobs({self.database.path!r})"


def _insert_submission(db: Any, job_id: str, submission: BatchSubmission) -> None:
    values = asdict(submission)
    values["collected"] = int(values["collected"])
    db.execute(f"INSERT INTO batch_submissions (job, {', '.join(_SUBMISSION_COLUMNS)}) VALUES "
               f"(?, {', '.join('?' * len(_SUBMISSION_COLUMNS))})",
               (job_id, *(values[name] for name in _SUBMISSION_COLUMNS)))


def _usage_json(usage: Usage | None) -> str | None:
    return json.dumps(asdict(usage)) if usage is not None else None


def _usage_from(text: str | None) -> Usage | None:
    return Usage(**json.loads(text)) if text else None
