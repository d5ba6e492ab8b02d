"""MapRunner on its own: when a failed attempt is asked again (retry-after as asked, backoff with
jitter, never past the retries or a retry-after too long), rows sent in input order, a failure
every row would meet ending the run, stop() cancelling what is in flight. Real SDK, loopback server."""

from __future__ import annotations

import queue
import time
from typing import Any

import pytest

from jupyter_llmchat.core.client import AsyncChat, AttemptFailed, ChatClient
from jupyter_llmchat.core.map_runner import MAX_BACKOFF, MAX_RETRY_AFTER, MapRunner, RunOptions
from jupyter_llmchat.core.models import model_info
from jupyter_llmchat.core.rows import RowRequest, RowResult

MODEL = "gpt-4o-mini"


def runner(chat: Any = None, rows: list[RowRequest] | None = None, client: ChatClient | None = None,
           **options: Any) -> tuple[MapRunner, queue.SimpleQueue[RowResult]]:
    rows = rows or []
    outbox: queue.SimpleQueue[RowResult] = queue.SimpleQueue()
    describe = client.map_error if client is not None else None
    return MapRunner(chat, rows, [row.key for row in rows], outbox, describe=describe, info=model_info(MODEL),
                     options=RunOptions(**options)), outbox


def failed(**said: Any) -> AttemptFailed:
    return AttemptFailed(RuntimeError("x"), **{"retryable": True, **said})


def test_the_wait_before_asking_again() -> None:
    run, _ = runner(retries=3, backoff=0.5)
    assert run._wait(failed(retryable=False), 1) is None  # a 400: asking again would not help
    assert run._wait(failed(), 4) is None  # out of retries: 3 after the first
    assert run._wait(failed(retry_after=MAX_RETRY_AFTER + 1), 1) is None  # longer than a run should stall
    for tries in (1, 2, 3):
        for _ in range(50):
            wait = run._wait(failed(retry_after=2.0), tries)
            assert 2.0 <= wait <= 2.2  # as the server asked, plus up to a tenth: not all at once
            backoff = min(0.5 * 2 ** (tries - 1), MAX_BACKOFF)
            assert backoff / 2 <= run._wait(failed(), tries) <= backoff  # exponential, with jitter
    run, _ = runner(retries=30, backoff=0.5)
    assert MAX_BACKOFF / 2 <= run._wait(failed(), 20) <= MAX_BACKOFF


def rows(count: int) -> list[RowRequest]:
    return [RowRequest(n, MODEL, [{"role": "user", "content": f"row {n}"}]) for n in range(count)]


def run_all(client: ChatClient, asked: list[RowRequest], **options: Any) -> tuple[MapRunner, list[RowResult]]:
    with AsyncChat(client.sdk) as chat:
        run, outbox = runner(chat, asked, client, **options)
        chat.submit(run.run()).result(timeout=60)
    finished = []
    while not outbox.empty():
        finished.append(outbox.get())
    return run, finished


def test_rows_go_out_in_input_order_and_each_finished_row_is_handed_over_once(loopback) -> None:
    loopback.queue(fault="server_error")  # row 0 fails for good (no retries); the others go on
    client = ChatClient(base_url=loopback.base_url, api_key="k")
    run, finished = run_all(client, rows(5), concurrency=1, retries=0)
    assert [entry.body["messages"][0]["content"] for entry in loopback.requests] == [f"row {n}" for n in range(5)]
    assert sorted(row.index for row in finished) == [0, 1, 2, 3, 4]
    by_index = {row.index: row for row in finished}
    assert by_index[0].status == "failed" and by_index[0].error.startswith("server error (500)")
    assert all(by_index[n].status == "done" and by_index[n].attempts == 1 for n in range(1, 5))
    assert run.fatal is None and run.limit.stats.peak_in_flight == 1


def test_a_failure_every_row_would_meet_ends_the_run(loopback) -> None:
    loopback.queue(fault="model_not_found", times=2)
    client = ChatClient(base_url=loopback.base_url, api_key="k")
    run, finished = run_all(client, rows(20), concurrency=2)
    assert str(run.fatal).startswith(f"model '{MODEL}' is not available at {loopback.base_url} (404")
    assert len(loopback.requests) == 2  # the two first rows; nothing after
    assert sorted((row.index, row.error == str(run.fatal)) for row in finished) == [(0, True), (1, True)]


def test_stop_cancels_what_is_in_flight_and_keeps_what_finished(loopback) -> None:
    loopback.latency = 0.3
    client = ChatClient(base_url=loopback.base_url, api_key="k")
    with AsyncChat(client.sdk) as chat:
        run, outbox = runner(chat, rows(10), client, concurrency=2)
        future = chat.submit(run.run())
        first = outbox.get(timeout=30)  # one answered
        chat.call_soon(run.stop)
        future.result(timeout=5)  # the run ends at once: no row waits out its latency
    finished = [first]
    while not outbox.empty():
        finished.append(outbox.get())
    assert 1 <= len(finished) < 10 and all(row.status == "done" for row in finished)
    deadline = time.monotonic() + 10
    while any(entry.outcome is None for entry in loopback.requests) and time.monotonic() < deadline:
        time.sleep(0.01)
    outcomes = [entry.outcome for entry in loopback.requests]
    assert outcomes.count("complete") >= len(finished) and set(outcomes) <= {"complete", "client_closed"}
    assert len(loopback.requests) < 10  # the rows not begun were never sent


@pytest.mark.parametrize("concurrency", [1, 3])
def test_more_workers_than_the_limit_never_put_more_in_flight(loopback, concurrency) -> None:
    loopback.latency = 0.05
    client = ChatClient(base_url=loopback.base_url, api_key="k")
    run, finished = run_all(client, rows(12), concurrency=concurrency)
    assert len(finished) == 12 and run.limit.stats.peak_in_flight == concurrency
