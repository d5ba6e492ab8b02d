"""What ``%chat batches`` shows: the Batch API jobs kept in the store, and the rows of one job.

Cells are plain text (tables.py escapes them for Markdown): answers and errors come from a model or
an endpoint and stay text, cut to one short line; the whole rows are ``bot.map_results(job_id)``'s.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from ..core.batch_jobs import BatchJob
from ..core.models import format_cost
from ..core.rows import RowResult

ROWS_SHOWN = 20  # rows of a job listed by %chat batches JOB; map_results returns them all
CELL = 60  # characters of an answer or an error shown in a cell
JOBS_NUMERIC = (4, 5, 6, 7, 9)  # right-aligned columns of jobs_table
ROWS_NUMERIC = (0,)  # ... and of rows_table


def jobs_table(jobs: Sequence[BatchJob]) -> list[tuple[str, ...]]:
    """One line per job, newest first: id, session, model, when, rows, done, failed, pending, status, cost."""
    table: list[tuple[str, ...]] = [("job", "session", "model", "created", "rows", "done", "failed", "pending",
                                     "status", "cost (batch price)")]
    for job in jobs:
        created = time.strftime("%Y-%m-%d %H:%M", time.localtime(job.created))
        table.append((job.id, job.session or "", job.model, created, f"{job.rows:,}", f"{job.done:,}",
                      f"{job.failed:,}", f"{job.pending:,}", _status(job), format_cost(job.cost)))
    return table


def rows_table(job_id: str, rows: Sequence[RowResult]) -> tuple[list[tuple[str, ...]], str]:
    """The first ``ROWS_SHOWN`` rows of a job (row, status, answer or error) and the line under them."""
    table: list[tuple[str, ...]] = [("row", "status", "answer", "error")]
    for row in rows[:ROWS_SHOWN]:
        table.append((str(row.index), row.status, cut(row.text or ""), cut(row.error or "")))
    done = sum(row.status == "done" for row in rows)
    failed = sum(row.status == "failed" for row in rows)
    more = f"; the first {ROWS_SHOWN} are shown" if len(rows) > ROWS_SHOWN else ""
    note = (f"job {job_id}: {done:,} of {len(rows):,} rows done, {failed:,} failed, "
            f"{len(rows) - done - failed:,} pending{more}. bot.map_results({job_id!r}) returns every row.")
    return table, note


def cut(text: str, limit: int = CELL) -> str:
    """``text`` on one line, at most ``limit`` characters (an ellipsis says it was cut)."""
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _status(job: BatchJob) -> str:
    """The job's status, with its open batches' provider statuses while it runs."""
    if job.status != "running":
        return job.status
    open_ = sorted({s.status.replace("_", " ") for s in job.submissions if not s.collected})
    return f"running ({', '.join(open_)})" if open_ else "running"
