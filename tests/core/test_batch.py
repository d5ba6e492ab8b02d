"""The Batch API runner end to end on the loopback server, through the real openai SDK: rows in,
results out in input order, matched by custom_id; per-row errors; expired, cancelled and refused
batches; only the missing rows sent again (also by a runner that never saw the rows: a restart);
the wait stopped without stopping the job; the batch price told to the ledger."""

from __future__ import annotations

import threading
from typing import Any

import pandas as pd
import pydantic
import pytest
from openai import OpenAI
from support.batch_rows import FAST, MODEL, batch_lines, client_for, rows

from jupyter_llmchat.core import batch as batch_module
from jupyter_llmchat.core.batch import BatchProgress, BatchRunner, collect_job, run_batch
from jupyter_llmchat.core.batch_jobs import MemoryBatchJobs
from jupyter_llmchat.core.chatbot import Chatbot
from jupyter_llmchat.core.client import ChatClient
from jupyter_llmchat.core.errors import BatchError
from jupyter_llmchat.core.models import model_info
from jupyter_llmchat.core.reply import Reply
from jupyter_llmchat.core.rows import RowRequest
from jupyter_llmchat.server import LoopbackServer
from jupyter_llmchat.server.batches import BatchScript


def direct_answer(server: LoopbackServer, row: RowRequest) -> Any:
    """What /v1/chat/completions answers the same request (not a batch)."""
    sdk = OpenAI(base_url=server.base_url, api_key="x", max_retries=0)
    return sdk.chat.completions.create(model=row.model, messages=row.messages, **row.params)  # type: ignore[arg-type]


def test_rows_go_out_as_one_batch_and_come_back_in_input_order_at_the_batch_price(server: LoopbackServer) -> None:
    requests = rows(4)
    told: list[Reply] = []
    shown: list[BatchProgress] = []
    job_id, results = run_batch(client_for(server), MemoryBatchJobs(), requests[::-1], notify=told.append,
                                progress=shown.append, poll=FAST)
    assert job_id.startswith("job_")
    (batch_id,) = server.batches.batch_ids()
    lines = server.batches.input_lines(batch_id)
    assert [line["custom_id"] for line in lines] == ["row-3", "row-2", "row-1", "row-0"]
    assert lines[0] == {"custom_id": "row-3", "method": "POST", "url": "/v1/chat/completions",
                        "body": {"model": MODEL, "messages": [{"role": "user", "content": "Classify item 3"}]}}
    assert [result.index for result in results] == [0, 1, 2, 3]
    assert [result.key for result in results] == [request.key for request in requests]
    info = model_info(MODEL)
    for result, request in zip(results, requests):
        direct = direct_answer(server, request)
        assert (result.status, result.text, result.error, result.attempts) == (
            "done", direct.choices[0].message.content, None, 1)
        assert result.usage is not None and result.usage.prompt_tokens == direct.usage.prompt_tokens
        assert result.usage.completion_tokens == direct.usage.completion_tokens
        standard = info.cost(result.usage.prompt_tokens, result.usage.completion_tokens)
        assert standard is not None and result.cost == pytest.approx(standard / 2)
    assert [reply.batch for reply in told] == [True] * 4
    assert [(reply.status, reply.finish_reason, reply.model) for reply in told] == [("complete", "stop", MODEL)] * 4
    assert sorted(reply.cost for reply in told) == sorted(result.cost for result in results)  # type: ignore[type-var]
    last = shown[-1]
    assert (last.job_id, last.total, last.done, last.failed, last.status) == (job_id, 4, 4, 0, "completed")
    assert last.tokens == sum(r.usage.total_tokens for r in results if r.usage)
    assert last.cost == pytest.approx(sum(r.cost for r in results if r.cost))


def test_a_listener_that_prices_a_reply_prices_its_row(server: LoopbackServer) -> None:
    """The offline demo's marker makes its answers free before the ledger sees them: the rows say so too."""
    jobs = MemoryBatchJobs()

    def demo(reply: Reply) -> None:
        reply.demo, reply.cost = True, 0.0

    job_id, results = run_batch(client_for(server), jobs, rows(2), notify=demo, poll=FAST)
    assert [r.cost for r in results] == [0.0, 0.0]
    assert jobs.job(job_id).cost == 0.0  # type: ignore[union-attr]


def test_an_answer_cut_at_max_tokens_fails_its_row_as_the_concurrent_map_does(server: LoopbackServer) -> None:
    requests = rows(2)
    requests[1] = RowRequest(1, MODEL, requests[1].messages, {"max_tokens": 5})
    told: list[Reply] = []
    _, results = run_batch(client_for(server), MemoryBatchJobs(), requests, notify=told.append, poll=FAST)
    cut = results[1]
    assert (results[0].status, cut.status) == ("done", "failed")
    assert cut.text == direct_answer(server, requests[1]).choices[0].message.content  # kept
    assert cut.error == "answer truncated: it reached an output token limit (finish_reason=length): raise max_tokens"
    assert cut.usage is not None and cut.usage.completion_tokens == 5 and cut.cost is not None  # paid for
    assert sorted((reply.status, reply.finish_reason) for reply in told) == [("complete", "stop"),
                                                                             ("truncated", "length")]


def test_a_row_the_endpoint_rejects_fails_alone_in_one_line(server: LoopbackServer) -> None:
    requests = rows(3)
    requests[1] = RowRequest(1, MODEL, requests[1].messages, {"temperature": 5})
    told: list[Reply] = []
    _, results = run_batch(client_for(server), MemoryBatchJobs(), requests, notify=told.append, poll=FAST)
    assert [result.status for result in results] == ["done", "failed", "done"]
    assert results[1].error == ("request rejected (400, decimal_above_max_value): Invalid 'temperature': decimal "
                                "above maximum value. Expected a value <= 2, but got 5 instead.")
    assert results[1].text is None and results[1].cost is None
    assert len(batch_lines(server)) == 1  # a rejected row is not sent again: it would fail again
    failed = [reply for reply in told if reply.status == "failed"]
    assert len(told) == 3 and len(failed) == 1 and failed[0].cost == 0.0 and failed[0].error == results[1].error


def test_an_expired_batch_sends_only_its_missing_rows_again(server: LoopbackServer) -> None:
    server.batches.queue(BatchScript(expire_after=2))
    told: list[Reply] = []
    _, results = run_batch(client_for(server), MemoryBatchJobs(), rows(5), notify=told.append, poll=FAST)
    assert batch_lines(server) == [["row-0", "row-1", "row-2", "row-3", "row-4"], ["row-2", "row-3", "row-4"]]
    second = server.batches.input_lines(server.batches.batch_ids()[1])
    assert second == server.batches.input_lines(server.batches.batch_ids()[0])[2:]  # as first sent
    assert [(r.status, r.attempts) for r in results] == [("done", 1), ("done", 1), ("done", 2), ("done", 2),
                                                         ("done", 2)]
    assert len(told) == 5  # each row billed once


def test_a_row_missing_again_after_its_resubmissions_fails(server: LoopbackServer) -> None:
    server.batches.queue(BatchScript(expire_after=1))
    server.batches.queue(BatchScript(expire_after=0))
    _, results = run_batch(client_for(server), MemoryBatchJobs(), rows(2), poll=FAST, resubmit=1)
    first, second = server.batches.batch_ids()
    assert results[0].status == "done"
    assert (results[1].status, results[1].attempts) == ("failed", 2)
    assert results[1].error == f"not answered: batch {second} expired before answering it (sent in 2 batches)"
    assert first != second


def test_a_refused_batch_fails_its_rows_with_the_reason(server: LoopbackServer) -> None:
    server.batches.queue(BatchScript(fail="Enqueued token limit reached for gpt-4o-mini."))
    _, results = run_batch(client_for(server), MemoryBatchJobs(), rows(2), poll=FAST)
    (batch_id,) = server.batches.batch_ids()
    assert [(r.status, r.error) for r in results] == [
        ("failed", f"the provider rejected batch {batch_id}: line 1: invalid_request: Enqueued token limit reached "
                   "for gpt-4o-mini.")] * 2


def test_cancelling_keeps_the_answered_rows_and_fails_the_others(server: LoopbackServer) -> None:
    server.batches.speedup = 0
    jobs = MemoryBatchJobs()
    runner = BatchRunner(client_for(server), jobs, poll=FAST)
    job = runner.submit(rows(4))
    server.batches.clock.advance(10.0 + 0.25)  # validated, two rows answered
    job = runner.cancel(job.id)
    assert [s.status for s in job.submissions] == ["cancelling"]
    server.batches.clock.advance(3600.0)
    results = runner.wait(job.id)
    (batch_id,) = server.batches.batch_ids()
    assert [r.status for r in results] == ["done", "done", "failed", "failed"]
    assert results[2].error == f"batch {batch_id} was cancelled before this row was answered"
    assert jobs.job(job.id).status == "cancelled"  # type: ignore[union-attr]
    assert len(batch_lines(server)) == 1  # cancelled rows are not sent again


def test_stopping_the_wait_leaves_the_job_running_and_it_is_collected_later(server: LoopbackServer) -> None:
    server.batches.speedup = 0  # the batch waits in "validating"
    jobs = MemoryBatchJobs()
    client = client_for(server)
    runner = BatchRunner(client, jobs, poll=FAST)
    job = runner.submit(rows(2))
    got: list[Any] = []
    waiting = threading.Thread(target=lambda: got.append(runner.wait(job.id)))
    waiting.start()
    while not any(r.method == "GET" and r.path.startswith("/v1/batches/") for r in server.requests):
        threading.Event().wait(0.01)
    runner.stop()
    waiting.join(timeout=10)
    assert not waiting.is_alive()
    (results,) = got
    note = f"not answered yet: batch job {job.id} runs on at the provider; bot.map_results('{job.id}') collects it"
    assert [(r.status, r.error) for r in results] == [("pending", note)] * 2
    server.batches.clock.advance(3600.0)
    (batch_id,) = server.batches.batch_ids()
    again = collect_job(client, jobs, batch_id, poll=FAST, progress=False)  # a provider batch id finds its job
    assert [r.status for r in again.rows] == ["done", "done"]
    assert again.job_id == job.id and not again.interrupted
    assert list(again) == [r.text for r in again.rows]  # the answers, as map returns them


def test_a_new_runner_sends_the_missing_rows_again_from_the_input_file(server: LoopbackServer) -> None:
    """After a restart the rows are not in memory: the resubmission is read from the provider's copy."""
    server.batches.speedup = 0
    server.batches.queue(BatchScript(expire_after=1))
    jobs = MemoryBatchJobs()
    client = client_for(server)
    job = BatchRunner(client, jobs, poll=FAST).submit(rows(3, temperature=0.5))
    server.batches.speedup = 1e6
    results = collect_job(client, jobs, job.id, poll=FAST, progress=False)  # a runner of its own: no rows in memory
    first, second = server.batches.batch_ids()
    assert server.batches.input_lines(second) == server.batches.input_lines(first)[1:]
    assert [r.status for r in results.rows] == ["done"] * 3


def test_rows_a_running_job_carries_are_waited_for_not_sent_again(server: LoopbackServer) -> None:
    """The same call asked again (its kernel died, or stopped waiting) sends only the rows no job carries."""
    server.batches.speedup = 0
    jobs = MemoryBatchJobs()
    client = client_for(server)
    first_id, _ = run_batch(client, jobs, rows(3), wait=False)
    server.batches.speedup = 1e6
    again = rows(4)[::-1]  # the same three rows and a new one, in another order
    runner = BatchRunner(client, jobs, poll=FAST)
    job_ids, results = runner.run(again)
    assert job_ids[0] == first_id and len(job_ids) == 2
    assert batch_lines(server) == [["row-0", "row-1", "row-2"], ["row-3"]]
    assert [(r.index, r.key, r.status) for r in results] == [(r.index, r.key, "done") for r in again[::-1]]
    assert [job.status for job in jobs.jobs()] == ["completed", "completed"]


def test_large_jobs_are_cut_into_batches_of_at_most_max_lines(server: LoopbackServer,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(batch_module, "MAX_LINES", 2)
    _, results = run_batch(client_for(server), MemoryBatchJobs(), rows(5), poll=FAST)
    assert batch_lines(server) == [["row-0", "row-1"], ["row-2", "row-3"], ["row-4"]]
    assert [r.status for r in results] == ["done"] * 5


def test_an_endpoint_without_the_batch_api_says_so_and_keeps_nothing(server: LoopbackServer) -> None:
    client = ChatClient(base_url=server.root_url + "/no-api", max_retries=0)
    jobs = MemoryBatchJobs()
    with pytest.raises(BatchError) as caught:
        run_batch(client, jobs, rows(1), poll=FAST)
    assert str(caught.value) == (f"{server.root_url}/no-api has no Batch API (POST /files answered 404: Invalid URL "
                                 "(POST /no-api/files)): use map() without mode='batch', or an endpoint that has "
                                 "one (OpenAI, an Azure batch deployment)")
    assert jobs.jobs() == []


def test_an_unknown_job_is_one_line(server: LoopbackServer) -> None:
    with pytest.raises(BatchError) as caught:
        collect_job(client_for(server), MemoryBatchJobs(), "job_nope", progress=False)
    assert str(caught.value) == "no batch job 'job_nope' in the store (jobs: none yet); %chat batches lists them"


def test_answers_are_parsed_with_a_schema_and_a_bad_one_fails_its_row(server: LoopbackServer) -> None:
    schema = {"type": "object", "properties": {"label": {"type": "string"}}, "required": ["label"],
              "additionalProperties": False}
    fmt = {"type": "json_schema", "json_schema": {"name": "Label", "schema": schema, "strict": True}}
    requests = [RowRequest(0, MODEL, [{"role": "user", "content": "a"}], {"response_format": fmt}),
                RowRequest(1, MODEL, [{"role": "user", "content": "b"}], {"loopback": {"reply": "not json"}})]
    _, results = run_batch(client_for(server), MemoryBatchJobs(), requests, poll=FAST, schema=schema)
    assert results[0].status == "done" and isinstance(results[0].parsed, dict) and "label" in results[0].parsed
    assert (results[1].status, results[1].text, results[1].parsed) == ("failed", "not json", None)
    assert results[1].error == "the answer is not JSON (Expecting value at line 1 column 1); expected answer"


# -- through Chatbot.map(mode="batch") ----------------------------------------------------------------
class Label(pydantic.BaseModel):
    label: str
    votes: int


def test_map_in_batch_mode_answers_as_the_concurrent_map_does_at_half_the_price(server: LoopbackServer) -> None:
    items = [f"Classify ticket {i}" for i in range(4)]
    told: list[Reply] = []
    batch_bot = Chatbot(MODEL, base_url=server.base_url)
    batch_bot.reply_listeners.append(told.append)
    batched = batch_bot.map(items, mode="batch", progress=False)
    assert len(server.batches.batch_ids()) == 1 and not [r for r in server.requests if r.path.endswith("/completions")]
    asked = Chatbot(MODEL, base_url=server.base_url).map(items, progress=False)
    assert list(batched) == list(asked)  # the same answers, in input order
    assert [row.cost for row in batched.rows] == pytest.approx([row.cost / 2 for row in asked.rows])  # type: ignore[operator]
    assert batched.job_id is not None and batched.job_id.startswith("job_") and asked.job_id is None
    assert [(reply.batch, reply.status) for reply in told] == [(True, "complete")] * 4  # the ledger's view


def test_a_dataframe_in_batch_mode_comes_back_as_typed_columns(server: LoopbackServer) -> None:
    frame = pd.DataFrame({"title": ["Crash", "How?"]}, index=[7, 9])
    result = Chatbot(MODEL, base_url=server.base_url).map(frame, "Classify: {title}", schema=Label, mode="batch",
                                                          progress=False)
    assert list(result.columns) == ["label", "votes", "error", "cost"] and list(result.index) == [7, 9]
    assert result["error"].isna().all() and result.attrs["map"]["job_id"].startswith("job_")
    (batch_id,) = server.batches.batch_ids()
    lines = server.batches.input_lines(batch_id)
    assert [line["body"]["messages"][-1]["content"] for line in lines] == ["Classify: Crash", "Classify: How?"]
    assert lines[0]["body"]["response_format"]["json_schema"]["strict"] is True


def test_the_same_map_call_after_its_wait_stopped_waits_for_its_job_and_pays_nothing_twice(
        server: LoopbackServer) -> None:
    server.batches.speedup = 0  # the provider holds the job
    bot = Chatbot(MODEL, base_url=server.base_url)
    items = ["one", "two", "three"]
    got: list[Any] = []
    waiting = threading.Thread(target=lambda: got.append(bot.map(items, mode="batch", progress=False)))
    waiting.start()
    while not any(r.method == "GET" and r.path.startswith("/v1/batches/") for r in server.requests):
        threading.Event().wait(0.01)
    bot.stop()  # the wait ends; the job runs on
    waiting.join(timeout=10)
    (first,) = got
    assert first.interrupted and first == [None, None, None] and first.job_id is not None
    server.batches.speedup = 1e6
    again = bot.map(items + ["four"], mode="batch", progress=False)
    assert [len(server.batches.input_lines(b)) for b in server.batches.batch_ids()] == [3, 1]  # only "four" is new
    assert not again.interrupted and all(answer is not None for answer in again)
    third = bot.map(items, mode="batch", progress=False)  # every row answered before: nothing is sent
    assert len(server.batches.batch_ids()) == 2 and list(third) == list(again)[:3]
