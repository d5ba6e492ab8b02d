"""``%chat batches``: the tables (unit), and a Batch API job that outlives its kernel, in real
kernels (nbclient): one kernel submits a job and dies while the provider holds it; a new kernel
lists it with ``%chat batches``, collects it with ``%chat batches JOB`` (its ledger at the batch
price, ``%chat usage`` says so) and ``bot.map_results(JOB)`` returns the same rows, billing nothing
again."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from nbclient.exceptions import DeadKernelError
from support.kernel_notebook import run_cells

from jupyter_llmchat.core.batch_jobs import BatchJob, BatchSubmission
from jupyter_llmchat.core.models import format_cost
from jupyter_llmchat.core.rows import RowResult
from jupyter_llmchat.notebook.batch_tables import JOBS_NUMERIC, ROWS_NUMERIC, ROWS_SHOWN, cut, jobs_table, rows_table
from jupyter_llmchat.notebook.tables import table_bundle
from jupyter_llmchat.server import LoopbackServer
from jupyter_llmchat.server.batches import DEFAULT_SPEEDUP
from jupyter_llmchat.store.store import Store


def test_the_jobs_table_says_where_each_job_stands() -> None:
    running = BatchJob("job_b", "gpt-4o-mini", "https://api.openai.com/v1", 1200, created=0.0, session="s",
                       submissions=[BatchSubmission("batch_1", "f", "in_progress"),
                                    BatchSubmission("batch_2", "f", "completed", collected=True)],
                       done=600, failed=2, cost=0.0123)
    done = BatchJob("job_a", "gpt-4o", "https://api.openai.com/v1", 3, created=0.0, status="completed", done=3,
                    cost=None)
    created = time.strftime("%Y-%m-%d %H:%M", time.localtime(0.0))
    assert jobs_table([running, done]) == [
        ("job", "session", "model", "created", "rows", "done", "failed", "pending", "status", "cost (batch price)"),
        ("job_b", "s", "gpt-4o-mini", created, "1,200", "600", "2", "598", "running (in progress)", "$0.012"),
        ("job_a", "", "gpt-4o", created, "3", "3", "0", "0", "completed", "unknown")]


def test_the_rows_table_shows_the_first_rows_as_one_line_text() -> None:
    rows = [RowResult(i, f"k{i}", "done", text=f"answer {i}\n<b>bold</b> " + "x" * 80) for i in range(ROWS_SHOWN + 2)]
    rows[1] = RowResult(1, "k1", "failed", error="request rejected (400): bad")
    rows[2] = RowResult(2, "k2", "pending")
    table, note = rows_table("job_x", rows)
    assert len(table) == ROWS_SHOWN + 1
    assert table[1] == ("0", "done", "answer 0 <b>bold</b> " + "x" * 38 + "…", "")
    assert table[2:4] == [("1", "failed", "", "request rejected (400): bad"), ("2", "pending", "", "")]
    assert note == (f"job job_x: {ROWS_SHOWN:,} of {ROWS_SHOWN + 2} rows done, 1 failed, 1 pending; the first "
                    f"{ROWS_SHOWN} are shown. bot.map_results('job_x') returns every row.")
    markdown = table_bundle(table)["text/markdown"]
    assert "<b>" not in markdown and "\\<b\\>bold\\</b\\>" in markdown  # a model's markup stays text
    assert cut("a\n b   c", 5) == "a b c" and cut("abcdef", 5) == "abcd…"


@pytest.fixture
def server(loopback: LoopbackServer) -> Iterator[LoopbackServer]:
    loopback.batches.speedup = 0  # the provider holds the job while the first kernel waits on it
    yield loopback
    loopback.batches.speedup = DEFAULT_SPEEDUP


def test_a_job_submitted_by_a_kernel_that_died_is_collected_by_a_new_kernel(server: LoopbackServer,
                                                                           tmp_path: Path) -> None:
    store_path = tmp_path / "chat.sqlite3"
    env = {"OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": "sk-test", "JUPYTER_LLMCHAT_STORE": str(store_path),
           "IPYTHONDIR": str(tmp_path / "ipython")}
    submit = f"""
import os, threading, time
from jupyter_llmchat import Chatbot
from jupyter_llmchat.store.store import Store

store = Store({str(store_path)!r})
bot = Chatbot("gpt-4o-mini")
store.attach(bot, "first")

def die_once_submitted():  # the kernel dies while it waits for the provider
    while not store.batch_jobs().jobs():
        time.sleep(0.02)
    os._exit(1)

threading.Thread(target=die_once_submitted, daemon=True).start()
bot.map([f"Classify item {{i}}" for i in range(3)], mode="batch")
"""
    with pytest.raises(DeadKernelError):
        run_cells(["%load_ext jupyter_llmchat", submit], env=env, cwd=tmp_path, timeout=60)
    with Store(store_path) as store:
        (job,) = store.batch_jobs().jobs()
    assert (job.session, job.status, job.rows, job.pending) == ("first", "running", 3, 3)
    (batch_id,) = server.batches.batch_ids()
    assert [s.id for s in job.submissions] == [batch_id]

    server.batches.speedup = 1e6  # the provider finishes the job while no kernel is there
    collect = f"""
from jupyter_llmchat import Chatbot
from jupyter_llmchat.store.store import Store
later = Chatbot("gpt-4o-mini")
store = Store({str(store_path)!r})
store.attach(later, "python")
answers = later.map_results({job.id!r}, progress=False)
print([(row.index, row.status) for row in answers.rows], answers == [row.text for row in answers.rows])
"""
    run = run_cells(["%load_ext jupyter_llmchat", "%chat batches", f"%chat batches {job.id}", "%chat usage",
                     collect, "%chat batches"], env=env, cwd=tmp_path)
    created = time.strftime("%Y-%m-%d %H:%M", time.localtime(job.created))
    assert jobs_table([job])[1] == (job.id, "first", "gpt-4o-mini", created, "3", "0", "0", "3",
                                    "running (validating)", "$0")
    assert run.displays(1, "text/plain") == [table_bundle(jobs_table([job]), numeric=JOBS_NUMERIC)["text/plain"]]
    with Store(store_path) as store:
        rows = store.batch_jobs().results(job.id)
        (finished,) = store.batch_jobs().jobs()
        ledger = store.query("SELECT session, batch, cost FROM ledger ORDER BY id")
    assert [row.status for row in rows] == ["done"] * 3 and finished.status == "completed"
    table, note = rows_table(job.id, rows)
    bar, shown = run.displays(2, "text/plain")  # the progress bar (a widget: its first text form), the rows
    assert bar.startswith(f"batch {job.id}:   0%|")
    assert shown == table_bundle(table, numeric=ROWS_NUMERIC, note=note)["text/plain"]
    tokens = sum(row.usage.total_tokens for row in rows if row.usage)
    spent = format_cost(sum(row.cost or 0.0 for row in rows))
    assert re.fullmatch(rf"batch {job.id}: 3 of 3 rows done, 0 failed; {tokens:,} tokens, {re.escape(spent)}; "
                        r"\d+\.\d s\n", run.stdout(2)), run.stdout(2)  # the bar's last word, as text
    assert note == (f"job {job.id}: 3 of 3 rows done, 0 failed, 0 pending. bot.map_results('{job.id}') returns "
                    "every row.")
    # the rows were billed once, to the session that collected them, at the batch price
    assert [(entry["session"], entry["batch"]) for entry in ledger] == [("default", 1)] * 3
    assert [entry["cost"] for entry in ledger] == pytest.approx([row.cost for row in rows])
    assert run.displays(3, "text/plain")[0].endswith(
        "3 of 3 replies came through the Batch API, billed at its price (half the standard one).")
    assert run.stdout(4) == "[(0, 'done'), (1, 'done'), (2, 'done')] True\n"
    assert jobs_table([finished])[1][4:] == ("3", "3", "0", "0", "completed", format_cost(finished.cost))
    assert run.displays(5, "text/plain") == [table_bundle(jobs_table([finished]), numeric=JOBS_NUMERIC)["text/plain"]]
    assert server.batches.batch_ids() == [batch_id]  # nothing was sent again
