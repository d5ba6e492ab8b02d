"""core/batch_jobs.py: job ids, a job's pending count, and what MemoryBatchJobs keeps beyond the
contract it shares with the store's jobs (that contract: tests/store/test_batch_jobs.py, run on
both): what it hands out are copies, a recorded row keeps the attempts it counted and its parsed
value, a job's cost is unknown once a billed row's is, a running job's rows are reused, a finished
job's pending ones are not, and two threads recording one job record each row once."""

from __future__ import annotations

import re
import threading

from jupyter_llmchat.core.batch_jobs import BatchJob, BatchSubmission, MemoryBatchJobs, new_job_id
from jupyter_llmchat.core.reply import Usage
from jupyter_llmchat.core.rows import RowResult


def a_job(job_id: str = "job_1", rows: int = 3, created: float = 100.0) -> BatchJob:
    return BatchJob(job_id, "gpt-4o-mini", "https://api.openai.com/v1", rows, created=created, session="s1")


def kept(rows: int = 3) -> MemoryBatchJobs:
    """A store with job_1: ``rows`` rows (keys k0, k1, ...) carried by batch_a."""
    jobs = MemoryBatchJobs()
    jobs.add_job(a_job(rows=rows), [(i, f"k{i}") for i in range(rows)])
    jobs.add_submission("job_1", BatchSubmission("batch_a", "file-a", rows=rows, created=101.0), list(range(rows)))
    return jobs


def test_a_job_id_is_job_and_20_hex_digits_and_new_each_time() -> None:
    ids = {new_job_id() for _ in range(100)}
    assert len(ids) == 100 and all(re.fullmatch(r"job_[0-9a-f]{20}", job_id) for job_id in ids)


def test_pending_is_what_is_neither_done_nor_failed() -> None:
    assert BatchJob("job_1", "m", "u", 10, done=6, failed=3).pending == 1
    assert a_job(rows=3).pending == 3


def test_a_new_store_has_no_jobs() -> None:
    jobs = MemoryBatchJobs()
    assert (jobs.jobs(), jobs.job("job_1"), jobs.reusable(["k"])) == ([], None, {})


def test_what_it_hands_out_is_a_copy() -> None:
    given = a_job()
    jobs = MemoryBatchJobs()
    jobs.add_job(given, [(0, "k0"), (1, "k1"), (2, "k2")])
    given.submissions.append(BatchSubmission("batch_x", "file-x"))  # the caller's job is not the one kept
    jobs.add_submission("job_1", BatchSubmission("batch_a", "file-a", rows=3, created=101.0), [0, 1, 2])
    jobs.record("job_1", [RowResult(0, "k0", "done", text="yes")])
    job = jobs.job("job_1")
    assert job is not None
    job.status, job.rows = "cancelled", 99
    job.submissions[0].status = "completed"
    job.submissions.append(BatchSubmission("batch_y", "file-y"))
    jobs.jobs()[0].submissions.clear()
    jobs.results("job_1")[0].text = "changed"
    again = jobs.job("job_1")
    assert again is not None and (again.status, again.rows) == ("running", 3)
    assert again.submissions == [BatchSubmission("batch_a", "file-a", rows=3, created=101.0)]
    assert jobs.results("job_1")[0].text == "yes"


def test_a_recorded_row_keeps_the_attempts_counted_here_and_its_parsed_value() -> None:
    jobs = kept(2)
    jobs.add_submission("job_1", BatchSubmission("batch_b", "file-b", rows=1, created=102.0), [1])  # row 1: twice
    recorded = jobs.record("job_1", [RowResult(0, "k0", "done", text='{"a": 1}', parsed={"a": 1}, attempts=7),
                                     RowResult(1, "k1", "done", text="b", attempts=0)])
    assert [(r.index, r.attempts) for r in recorded] == [(0, 1), (1, 2)]
    assert [(r.index, r.parsed, r.attempts) for r in jobs.results("job_1")] == [(0, {"a": 1}, 1), (1, None, 2)]


def test_a_row_is_recorded_once_and_later_results_for_it_are_ignored() -> None:
    jobs = kept(2)
    assert [r.text for r in jobs.record("job_1", [RowResult(0, "k0", "done", text="first")])] == ["first"]
    recorded = jobs.record("job_1", [RowResult(0, "k0", "failed", error="late"), RowResult(1, "k1", "done", text="b")])
    assert [(r.index, r.text) for r in recorded] == [(1, "b")]
    assert [(r.status, r.text, r.error) for r in jobs.results("job_1")] == [("done", "first", None),
                                                                            ("done", "b", None)]


def test_carried_lists_the_rows_of_a_batch_still_without_a_result() -> None:
    jobs = kept(3)
    jobs.record("job_1", [RowResult(1, "k1", "done", text="b")])
    assert jobs.carried("job_1", "batch_a") == {0: ("k0", 1), 2: ("k2", 1)}
    assert jobs.carried("job_1", "batch_elsewhere") == {}


def test_counts_tokens_and_cost_are_those_of_the_rows_recorded() -> None:
    jobs = kept(4)
    jobs.record("job_1", [RowResult(0, "k0", "done", text="a", usage=Usage(10, 5), cost=0.25),
                          RowResult(1, "k1", "done", text="b", usage=Usage(20, 1), cost=0.5),
                          RowResult(2, "k2", "failed", error="request rejected (400): no")])  # no usage, no cost
    job = jobs.job("job_1")
    assert job is not None
    assert (job.done, job.failed, job.pending, job.tokens, job.cost) == (2, 1, 1, 36, 0.75)


def test_a_job_s_cost_is_unknown_once_a_billed_row_s_price_is() -> None:
    jobs = kept(2)
    jobs.record("job_1", [RowResult(0, "k0", "done", text="a", usage=Usage(10, 5), cost=0.25),
                          RowResult(1, "k1", "done", text="b", usage=Usage(3, 2), cost=None)])  # a model without a price
    job = jobs.job("job_1")
    assert job is not None and (job.tokens, job.cost) == (20, None)
    jobs.reprice("job_1", [(1, 0.0)])  # a listener priced it
    assert jobs.job("job_1").cost == 0.25  # type: ignore[union-attr]


def test_repricing_a_row_without_a_result_changes_nothing() -> None:
    jobs = kept(2)
    jobs.record("job_1", [RowResult(0, "k0", "done", text="a", usage=Usage(1, 1), cost=0.5)])
    jobs.reprice("job_1", [(1, 9.0), (0, 0.0)])
    assert [(r.status, r.cost) for r in jobs.results("job_1")] == [("done", 0.0), ("pending", None)]


def test_an_answered_row_is_reused_before_one_a_running_job_still_carries() -> None:
    jobs = MemoryBatchJobs()
    jobs.add_job(a_job("job_old", rows=1, created=100.0), [(0, "same")])
    jobs.add_job(a_job("job_new", rows=2, created=200.0), [(0, "other"), (1, "same")])
    assert jobs.reusable(["same"]) == {"same": ("job_old", 0)}  # both carry it: the first job asked
    jobs.record("job_new", [RowResult(1, "same", "done", text="yes")])
    assert jobs.reusable(["same", "other"]) == {"same": ("job_new", 1), "other": ("job_new", 0)}  # an answer first


def test_a_finished_job_s_rows_without_an_answer_are_not_reused() -> None:
    jobs = kept(3)
    jobs.record("job_1", [RowResult(0, "k0", "done", text="a"), RowResult(1, "k1", "failed", error="no")])
    jobs.set_status("job_1", "cancelled")
    assert jobs.reusable(["k0", "k1", "k2"]) == {"k0": ("job_1", 0)}


def test_update_submission_replaces_only_that_batch_and_keeps_the_order() -> None:
    jobs = kept(2)
    jobs.add_submission("job_1", BatchSubmission("batch_b", "file-b", rows=1, created=102.0), [1])
    seen = BatchSubmission("batch_a", "file-a", "completed", 2, 1, 1, "file-out", "file-err", True, 101.0)
    jobs.update_submission("job_1", seen)
    jobs.update_submission("job_1", BatchSubmission("batch_unknown", "file-z"))  # not the job's: nothing changes
    job = jobs.job("batch_b")  # a provider batch id finds its job
    assert job is not None and job.submissions == [seen, BatchSubmission("batch_b", "file-b", rows=1, created=102.0)]


def test_two_threads_recording_one_job_record_each_row_once() -> None:
    rows = 200
    jobs = kept(rows)
    start = threading.Barrier(2)
    recorded: list[list[RowResult]] = [[], []]

    def collect(which: int) -> None:
        start.wait()
        for index in range(rows):
            recorded[which] += jobs.record("job_1", [RowResult(index, f"k{index}", "done", text=f"t{which}")])

    threads = [threading.Thread(target=collect, args=(which,)) for which in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    first, second = ({r.index for r in found} for found in recorded)
    assert first.isdisjoint(second) and first | second == set(range(rows))
    kept_texts = {r.index: r.text for r in jobs.results("job_1")}
    assert kept_texts == {r.index: r.text for found in recorded for r in found}  # what each thread was told
    assert jobs.job("job_1").done == rows  # type: ignore[union-attr]
