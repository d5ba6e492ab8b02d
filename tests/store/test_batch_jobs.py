"""Batch API jobs kept in the store: the same contract as the in-memory jobs, each row recorded
once even by two "kernels" (two Store objects on one file), migration 5 from a schema-4 file, the
batch price in the ledger, and a job reattached by a new Chatbot through the store."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from jupyter_llmchat.core.batch import PollPolicy, run_batch
from jupyter_llmchat.core.batch_jobs import BatchJob, BatchJobStore, BatchSubmission, MemoryBatchJobs
from jupyter_llmchat.core.chatbot import Chatbot
from jupyter_llmchat.core.models import model_info
from jupyter_llmchat.core.reply import Reply, Usage
from jupyter_llmchat.core.rows import RowRequest, RowResult
from jupyter_llmchat.server import LoopbackServer
from jupyter_llmchat.server.batches import DEFAULT_SPEEDUP
from jupyter_llmchat.store import ledger
from jupyter_llmchat.store.database import Database
from jupyter_llmchat.store.migrations import MIGRATIONS, Migrations, schema_version
from jupyter_llmchat.store.store import Store

FAST = PollPolicy(first=0.01, factor=1.0, most=0.01)


@pytest.fixture(params=["memory", "store"])
def jobs(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BatchJobStore]:
    if request.param == "memory":
        yield MemoryBatchJobs()
        return
    with Store(tmp_path / "store.sqlite3") as store:
        yield store.batch_jobs(session="s1")


def a_job(job_id: str = "job_1", rows: int = 3, created: float = 100.0) -> BatchJob:
    return BatchJob(job_id, "gpt-4o-mini", "https://api.openai.com/v1", rows, created=created, session="s1")


def test_a_job_its_batches_and_its_rows_are_kept(jobs: BatchJobStore) -> None:
    jobs.add_job(a_job(), [(0, "k0"), (1, "k1"), (2, "k2")])
    jobs.add_submission("job_1", BatchSubmission("batch_a", "file-a", rows=3, created=101.0), [0, 1, 2])
    assert jobs.carried("job_1", "batch_a") == {0: ("k0", 1), 1: ("k1", 1), 2: ("k2", 1)}
    usage = Usage(10, 5)
    recorded = jobs.record("job_1", [RowResult(0, "k0", "done", text="yes", usage=usage, cost=0.5),
                                     RowResult(2, "k2", "failed", error="request rejected (400): no")])
    assert [(r.index, r.status, r.attempts) for r in recorded] == [(0, "done", 1), (2, "failed", 1)]
    assert jobs.record("job_1", [RowResult(0, "k0", "done", text="again")]) == []  # recorded once
    # answered (k0), or pending in a running job (k1); a failed row (k2) is asked again
    assert jobs.reusable(["k2", "k1", "k0", "elsewhere"]) == {"k0": ("job_1", 0), "k1": ("job_1", 1)}
    jobs.add_submission("job_1", BatchSubmission("batch_b", "file-b", rows=1, created=102.0), [1])
    assert jobs.carried("job_1", "batch_a") == {}
    assert jobs.carried("job_1", "batch_b") == {1: ("k1", 2)}
    submission = BatchSubmission("batch_a", "file-a", "completed", 3, 1, 1, "file-out", "file-err", True, 101.0)
    jobs.update_submission("job_1", submission)
    job = jobs.job("batch_a")  # a provider batch id finds its job
    assert job is not None and job.id == "job_1"
    assert (job.model, job.session, job.rows, job.status, job.done, job.failed, job.pending, job.cost,
            job.tokens) == ("gpt-4o-mini", "s1", 3, "running", 1, 1, 1, 0.5, 15)
    assert job.submissions == [submission, BatchSubmission("batch_b", "file-b", rows=1, created=102.0)]
    assert [(r.index, r.key, r.status, r.text, r.error, r.usage, r.cost, r.attempts) for r in jobs.results("job_1")] == [
        (0, "k0", "done", "yes", None, usage, 0.5, 1), (1, "k1", "pending", None, None, None, None, 2),
        (2, "k2", "failed", None, "request rejected (400): no", None, None, 1)]
    jobs.reprice("job_1", [(0, 0.0)])  # a reply listener priced it (the offline demo's: nothing)
    assert [r.cost for r in jobs.results("job_1")] == [0.0, None, None]
    jobs.set_status("job_1", "completed")
    assert jobs.reusable(["k1", "k0"]) == {"k0": ("job_1", 0)}  # a finished job's pending rows: not waited for
    jobs.add_job(a_job("job_2", rows=1, created=200.0), [(0, "x")])
    assert [(j.id, j.status) for j in jobs.jobs()] == [("job_2", "running"), ("job_1", "completed")]
    assert jobs.job("job_nope") is None


def test_two_kernels_collecting_one_job_record_each_row_once(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite3"
    with Store(path) as first, Store(path) as second:
        one, two = first.batch_jobs(), second.batch_jobs()
        one.add_job(a_job(rows=2), [(0, "k0"), (1, "k1")])
        results = [RowResult(0, "k0", "done", text="a"), RowResult(1, "k1", "done", text="b")]
        assert [r.index for r in one.record("job_1", results[:1])] == [0]
        assert [r.index for r in two.record("job_1", results)] == [1]  # row 0 was the other kernel's
        assert [r.text for r in one.results("job_1")] == ["a", "b"]


def test_migration_5_brings_a_schema_4_file_up_with_the_ledger_rows_at_the_standard_price(tmp_path: Path) -> None:
    path = tmp_path / "v4.sqlite3"
    Database(path, migrations=Migrations(list(MIGRATIONS)[:4])).close()
    with closing(sqlite3.connect(path)) as db:
        assert schema_version(db) == 4
        db.execute("INSERT INTO ledger (session, conversation, model, time, prompt_tokens, completion_tokens, "
                   "cached_tokens, cost, saved, from_cache, status, total_time) VALUES ('s', 1, 'gpt-4o', 1.0, 10, "
                   "5, 0, 0.000075, NULL, 0, 'complete', 1.0)")
        db.commit()
    with Store(path) as store:
        assert store.query("SELECT cost, batch FROM ledger") == [{"cost": 0.000075, "batch": 0}]
        assert store.batch_jobs().jobs() == []
        store.batch_jobs().add_job(a_job(rows=1), [(0, "k")])  # the new tables take rows
    with closing(sqlite3.connect(path)) as db:
        assert schema_version(db) >= 5
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert {"batch_jobs", "batch_submissions", "batch_rows"} <= tables


def test_the_ledger_bills_a_batch_reply_at_the_batch_price(tmp_path: Path) -> None:
    usage = Usage(1000, 500)
    standard = model_info("gpt-4o").cost(1000, 500)
    assert standard is not None
    with Store(tmp_path / "store.sqlite3") as store:
        for batch in (False, True):
            store.record_reply(Reply(text="x", model="gpt-4o", usage=usage, batch=batch), session="s")
        assert store.query("SELECT cost, batch FROM ledger ORDER BY id") == [
            {"cost": pytest.approx(standard), "batch": 0}, {"cost": pytest.approx(standard / 2), "batch": 1}]
        (row,) = store.usage_summary(())
        assert (row.requests, row.batch, row.cost) == (2, 1, pytest.approx(standard * 1.5))
    assert ledger.price("gpt-4o", 1000, 500, batch=True) == pytest.approx(standard / 2)


@pytest.fixture
def server(loopback: LoopbackServer) -> Iterator[LoopbackServer]:
    loopback.batches.speedup = 0  # held: the first "kernel" leaves before the batch is done
    yield loopback
    loopback.batches.speedup = DEFAULT_SPEEDUP


def ledger_rows(path: Path) -> list[dict[str, Any]]:
    with Store(path) as store:
        return store.query("SELECT session, model, status, batch, cost FROM ledger ORDER BY id")


def test_a_new_chatbot_reattaches_to_a_job_through_the_store_and_bills_each_row_once(
        server: LoopbackServer, tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite3"
    requests = [RowRequest(i, "gpt-4o-mini", [{"role": "user", "content": f"Q{i}"}], {}) for i in range(3)]
    with Store(path) as store:
        bot = Chatbot("gpt-4o-mini", base_url=server.base_url)
        store.attach(bot, "first")
        job_id, results = run_batch(bot.client, bot.batch_jobs, requests, wait=False, notify=bot._notify)
        assert [r.status for r in results] == ["pending"] * 3
    assert isinstance(bot.batch_jobs, MemoryBatchJobs)  # the closed store keeps no more jobs for it
    server.batches.speedup = 1e6
    with Store(path) as store:  # a new kernel
        (job,) = store.batch_jobs().jobs()
        assert (job.id, job.session, job.status, job.pending) == (job_id, "first", "running", 3)
        later = Chatbot("gpt-4o-mini", base_url=server.base_url)
        store.attach(later, "second")
        collected = later.map_results(job_id, poll=FAST, progress=False)
        assert [(r.index, r.status, r.text is not None) for r in collected.rows] == [
            (0, "done", True), (1, "done", True), (2, "done", True)]
        assert list(collected) == [r.text for r in collected.rows] and collected.job_id == job_id
        again = later.map_results(job_id, progress=False)  # collected already: nothing sent, nothing billed again
        assert again == collected and again.rows == collected.rows
        assert store.batch_jobs().job(job_id).status == "completed"  # type: ignore[union-attr]
    rows = ledger_rows(path)
    assert [(r["session"], r["model"], r["status"], r["batch"]) for r in rows] == [
        ("second", "gpt-4o-mini", "complete", 1)] * 3
    assert [r["cost"] for r in rows] == pytest.approx([result.cost for result in collected.rows])
