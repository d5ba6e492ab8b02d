"""Chatbot.map end to end through the real openai SDK against the loopback server: answers in input
order for lists, Series and DataFrames (typed columns), each row an independent request, per-row
errors that never abort the rest, retries and adaptive concurrency under scripted faults, identical
rows asked once, exact estimates, resuming from the store (after a failure, an interrupt, a killed
process), KeyboardInterrupt and stop() returning what is done, the batch mode, the ledger."""

from __future__ import annotations

import _thread
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import pydantic
import pytest
from openai import OpenAI

from jupyter_llmchat.core.chatbot import Chatbot
from jupyter_llmchat.core.errors import ConfigurationError
from jupyter_llmchat.core.map_items import MapResults
from jupyter_llmchat.core.mapping import NOT_ASKED, MapEstimate
from jupyter_llmchat.core.models import format_cost, model_info
from jupyter_llmchat.core.reply import NullSink, Reply
from jupyter_llmchat.core.structured import response_format_for
from jupyter_llmchat.core.tokens import count_prompt_tokens, get_encoding
from jupyter_llmchat.server import LoopbackServer
from jupyter_llmchat.server.batches import DEFAULT_SPEEDUP
from jupyter_llmchat.store.store import Store

MODEL = "gpt-4o-mini"
ROOT = Path(__file__).resolve().parents[2]


def make_bot(server: LoopbackServer, **options: Any) -> Chatbot:
    return Chatbot(options.pop("model", MODEL), base_url=server.base_url, api_key="sk-map", **options)


def direct(server: LoopbackServer, question: str, *, system: str | None = None, **params: Any) -> str:
    """What /v1/chat/completions answers this question asked on its own (the fault-free reference)."""
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": question}]
    sdk = OpenAI(base_url=server.base_url, api_key="x", max_retries=0)
    return sdk.chat.completions.create(model=MODEL, messages=messages, **params).choices[0].message.content or ""


def chat_requests(server: LoopbackServer) -> list[Any]:
    return [entry for entry in server.requests if entry.path == "/v1/chat/completions"]


def asked(server: LoopbackServer) -> list[str]:
    """The user question of each chat request the server received whole, in arrival order (a stop
    may cut a request while it is being sent: the server never reads a question from it)."""
    return [entry.body["messages"][-1]["content"] for entry in chat_requests(server) if entry.body is not None]


# -- answers in order ---------------------------------------------------------------------------------
def test_a_list_comes_back_in_input_order_whatever_order_the_answers_arrive_in(loopback) -> None:
    questions = [f"Summarise item {n}" for n in range(4)]
    expected = [direct(loopback, q, system="Be brief.", temperature=0) for q in questions]
    loopback.reset()
    for delay in (0.4, 0.3, 0.2, 0.1):  # the first request to arrive answers last
        loopback.queue(delay=delay)
    bot = make_bot(loopback, system="Be brief.", temperature=0)
    results = bot.map(questions, concurrency=4, progress=False)
    assert isinstance(results, MapResults)
    assert results == expected and results.errors == {} and not results.interrupted
    # each row its own request: the bot's system message and parameters, no history read or written
    bodies = sorted((entry.body for entry in chat_requests(loopback)), key=lambda body: body["messages"][-1]["content"])
    assert [body["messages"] for body in bodies] == [
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": q}] for q in questions]
    assert {body["temperature"] for body in bodies} == {0} and all("stream" not in body for body in bodies)
    assert bot.history == [] and [row.attempts for row in results.rows] == [1, 1, 1, 1]


def test_a_template_fills_from_dicts_and_a_named_series_comes_back_as_a_list(loopback) -> None:
    bot = make_bot(loopback)
    rows = [{"title": "Refund", "body": "It broke {twice}."}, {"title": "Hello", "body": "Nice!"}]
    results = bot.map(rows, "Classify: {title}\n{body}", progress=False)
    assert sorted(asked(loopback)) == ["Classify: Hello\nNice!", "Classify: Refund\nIt broke {twice}."]
    assert results == [direct(loopback, "Classify: Refund\nIt broke {twice}."), direct(loopback, "Classify: Hello\nNice!")]
    loopback.reset()
    series = pd.Series(["cats", "dogs"], index=["b", "a"], name="animal")
    results = bot.map(series, "Say something about {animal}", progress=False)
    assert isinstance(results, MapResults) and results == [direct(loopback, "Say something about cats"),
                                                          direct(loopback, "Say something about dogs")]


class Ticket(pydantic.BaseModel):
    label: Literal["bug", "question"]
    votes: int
    urgent: bool


def test_a_dataframe_comes_back_as_typed_columns_with_error_and_cost_on_its_index(loopback) -> None:
    frame = pd.DataFrame({"title": ["Crash", "How?", "Slow"], "body": ["on save", "to export", "startup"]},
                         index=[101, 102, 103])
    # one at a time, so the scripted answers meet their rows in order
    loopback.queue(reply='{"label": "bug", "votes": 7, "urgent": true}')
    loopback.queue(fault="server_error")  # row 102 fails for good: no retries
    loopback.queue(reply='{"label": "bug", "votes": 1, "urgent": false}')
    bot = make_bot(loopback)
    result = bot.map(frame, "Classify: {title}\n{body}", schema=Ticket, concurrency=1, retries=0, progress=False)
    assert list(result.columns) == ["label", "votes", "urgent", "error", "cost"]
    assert list(result.index) == [101, 102, 103]
    assert {name: str(dtype) for name, dtype in result.dtypes.items()} == {
        "label": "category", "votes": "Int64", "urgent": "boolean", "error": "string", "cost": "Float64"}
    assert result["label"].astype("string").tolist() == ["bug", pd.NA, "bug"]
    assert result["votes"].tolist() == [7, pd.NA, 1] and result["urgent"].tolist() == [True, pd.NA, False]
    where = loopback.base_url
    assert result["error"].tolist() == [
        pd.NA, f"server error (500) at {where}: The server had an error while processing your request. "
               "Sorry about that!; try again later", pd.NA]
    # strict json_schema went out with each row (gpt-4o-mini takes Structured Outputs)
    body = chat_requests(loopback)[0].body
    assert body["response_format"]["type"] == "json_schema" and body["response_format"]["json_schema"]["strict"]
    first, _, third = chat_requests(loopback)
    assert result["cost"].tolist() == [cost_of(first.body, '{"label": "bug", "votes": 7, "urgent": true}'), pd.NA,
                                       cost_of(third.body, '{"label": "bug", "votes": 1, "urgent": false}')]
    assert result.attrs["map"] == {"interrupted": False, "stopped": None, "job_id": None, "rows": 3, "failed": 1}


def cost_of(body: dict[str, Any], reply: str) -> float:
    """What a request answered with ``reply`` costs: its prompt as OpenAI counts it, the reply's tokens."""
    prompt = count_prompt_tokens(body["messages"], MODEL)
    return model_info(MODEL).cost(prompt, len(get_encoding("o200k_base").encode(reply)))


# -- per-row failures ---------------------------------------------------------------------------------
def test_each_row_fails_alone_with_its_reason_and_an_invalid_answer_gets_one_repair_round(loopback) -> None:
    loopback.queue(fault="context_length")  # row 0: rejected (400): not retried
    loopback.queue(fault="refusal")  # row 1
    loopback.queue(fault="length_cut")  # row 2: cut at max_tokens: never parsed
    loopback.queue(fault="schema_invalid")  # row 3: invalid, repaired by the next answer
    loopback.queue(reply='{"label": "question", "votes": 2, "urgent": false}')
    loopback.queue(fault="schema_invalid", times=2)  # row 4: invalid twice: failed, raw text kept
    loopback.queue(reply='{"label": "bug", "votes": 3, "urgent": true}')  # row 5
    bot = make_bot(loopback)
    results = bot.map([f"ticket {n}" for n in range(6)], "Classify {}", schema=Ticket, concurrency=1, progress=False)
    assert results[3] == Ticket(label="question", votes=2, urgent=False)
    assert results[5] == Ticket(label="bug", votes=3, urgent=True)
    assert results[:3] == [None, None, None] and results[4] is None
    errors = results.errors
    assert errors[0].startswith("the endpoint says the prompt exceeds the model's context window")
    assert errors[1] == "the model refused: I'm sorry, but I can't help with that request."
    assert errors[2] == ("answer truncated: it reached an output token limit (finish_reason=length): raise max_tokens")
    assert errors[4] == ("the answer does not match Ticket: label: Field required (after one repair round; the raw "
                         "answer is the row's text)")
    assert results.rows[4].text == '{"votes": 0, "urgent": false}'  # the schema's first property left out
    assert [row.attempts for row in results.rows] == [1, 1, 1, 2, 2, 1]
    # the repair round sent the invalid answer back with the reason
    repair = chat_requests(loopback)[4].body["messages"]
    assert repair[-2:] == [{"role": "assistant", "content": '{"votes": 0, "urgent": false}'},
                           {"role": "user", "content": "That answer is not valid: the answer does not match Ticket: "
                                                       "label: Field required. Reply with only the corrected JSON "
                                                       "object."}]
    # both rounds were paid for
    rounds = chat_requests(loopback)[3:5]
    assert results.rows[3].usage.prompt_tokens == sum(count_prompt_tokens(entry.body["messages"], MODEL)
                                                      for entry in rounds)


def test_transient_failures_are_retried_until_every_row_matches_a_fault_free_run(loopback) -> None:
    questions = [f"row {n}" for n in range(6)]
    expected = [direct(loopback, q) for q in questions]
    loopback.reset()
    loopback.queue(fault="rate_limit", retry_after=0.05)
    loopback.queue(fault="server_error")
    loopback.queue(fault="disconnect")
    loopback.queue(fault="malformed")
    loopback.queue(fault="server_error", times=2)
    results = make_bot(loopback).map(questions, concurrency=2, backoff=0.01, progress=False)
    assert results == expected and results.errors == {}
    assert len(chat_requests(loopback)) == 12 and sum(row.attempts for row in results.rows) == 12
    outcomes = sorted(str(entry.outcome) for entry in chat_requests(loopback))
    assert outcomes == sorted(["fault:rate_limit", "fault:server_error", "fault:disconnect", "fault:malformed",
                               "fault:server_error", "fault:server_error"] + ["complete"] * 6)


def test_a_row_out_of_retries_fails_with_the_last_error(loopback) -> None:
    loopback.queue(fault="server_error", times=3)
    results = make_bot(loopback).map(["only"], retries=2, backoff=0.01, progress=False)
    assert results == [None] and [row.attempts for row in results.rows] == [3]
    assert results.errors == {0: f"server error (500) after 2 retries at {loopback.base_url}: The "
                                 "server had an error while processing your request. Sorry about that!; try again "
                                 "later"}


def test_429s_halve_the_concurrency_once_per_round_and_answers_grow_it_back(loopback) -> None:
    questions = [f"row {n}" for n in range(40)]
    expected = [direct(loopback, q) for q in questions]
    loopback.reset()
    # The first 8 requests (all sent at once, at concurrency 8) get a 429 after 0.2 s: every one of
    # them was sent before the first 429 came back, so the limit is halved once, not eight times.
    loopback.queue(fault="rate_limit", retry_after=0.05, delay=0.2, times=8)
    results = make_bot(loopback).map(questions, concurrency=8, progress=False)
    assert results == expected
    stats = results.stats
    assert (stats.throttled, stats.cuts, stats.lowest, stats.history, stats.peak_in_flight) == (8, 1, 4.0, [4.0], 8)
    grown = 4.0
    for _ in range(40):  # each of the 40 answers adds 1/limit (additive increase), up to the ceiling
        grown = min(8.0, grown + 1 / grown)
    assert stats.final == pytest.approx(grown) and grown > 7
    assert sum(row.attempts for row in results.rows) == 48 and len(chat_requests(loopback)) == 48
    # retry-after was honoured: no row was asked again sooner than the server asked
    by_row: dict[str, list[Any]] = {}
    for entry in chat_requests(loopback):
        by_row.setdefault(entry.body["messages"][-1]["content"], []).append(entry)
    for first, *again in (entries for entries in by_row.values() if len(entries) == 2):
        assert again[0].time - first.time >= 0.2 + 0.05


def test_identical_rows_are_asked_once_and_answered_at_each_place(loopback) -> None:
    results = make_bot(loopback).map(["same", "other", "same"], progress=False)
    assert sorted(asked(loopback)) == ["other", "same"]
    assert results == [direct(loopback, "same"), direct(loopback, "other"), direct(loopback, "same")]
    first, _, again = results.rows
    assert (first.attempts, again.attempts, again.cost, again.usage) == (1, 0, 0.0, None)  # paid once


def test_an_endpoint_wide_failure_stops_sending_and_says_so_in_every_row(loopback) -> None:
    loopback.queue(fault="unauthorized", times=2)
    results = make_bot(loopback).map([f"row {n}" for n in range(30)], concurrency=2, progress=False)
    said = (f"authentication failed (401) at {loopback.base_url}: the API key was rejected or lacks access; set "
            "OPENAI_API_KEY, pass api_key=, or point OPENAI_BASE_URL (base_url=) at a local OpenAI-compatible server")
    assert results.stopped == said and results == [None] * 30
    assert len(chat_requests(loopback)) == 2  # the two in flight; nothing after
    assert set(results.errors.values()) == {said, f"not asked: {said}"}
    assert sum(1 for error in results.errors.values() if error == said) == 2


# -- estimates ------------------------------------------------------------------------------------------
def test_the_estimate_counts_prompt_tokens_exactly_and_prices_the_range_before_anything_is_sent(loopback) -> None:
    bot = make_bot(loopback, system="Answer in one word.", max_tokens=20)
    items = [f"Is {n} prime?" for n in range(5)] + ["Is 0 prime?"]  # the duplicate is asked once
    estimate = bot.estimate_map(items)
    assert chat_requests(loopback) == []
    assert bot.map(items, dry_run=True) == estimate
    prompt = sum(count_prompt_tokens([{"role": "system", "content": "Answer in one word."},
                                      {"role": "user", "content": item}], MODEL) for item in items[:5])
    info = model_info(MODEL)
    assert estimate == MapEstimate(MODEL, 6, 0, 5, prompt, 20, True, info.cost(prompt, 0), info.cost(prompt, 100))
    results = bot.map(items, progress=False)
    assert sum(row.usage.prompt_tokens for row in results.rows if row.usage) == prompt  # as the server counted
    assert str(estimate) == (f"{MODEL}: 6 rows, 5 to ask; {prompt} prompt tokens; cost "
                             f"{format_cost(info.cost(prompt, 0))} to {format_cost(info.cost(prompt, 100))} (answers "
                             "of 0 to 20 tokens each, max_tokens)")
    unbounded = make_bot(loopback).estimate_map(["x"])
    assert (unbounded.max_tokens, unbounded.max_tokens_set) == (info.max_output, False)
    assert "the model's output limit: set max_tokens= for a tighter bound" in str(unbounded)


def test_bad_arguments_are_one_line_before_anything_is_sent(loopback) -> None:
    bot = make_bot(loopback)
    cases = [
        (lambda: bot.map(["x"], concurrency=0), "concurrency must be a whole number >= 1, got 0"),
        (lambda: bot.map(["x"], mode="fast"), 'mode must be "concurrent" or "batch", got \'fast\''),
        (lambda: bot.map(["x"], temperature=5), "temperature must be between 0 and 2, got 5"),
        (lambda: bot.map(["x"], schema=Ticket, response_format={"type": "json_object"}),
         "schema= sets response_format itself: leave response_format out"),
        (lambda: bot.map([{"a": 1}]), 'rows with fields need a template to become questions, e.g. template="Classify: '
                                      '{a}" (fields: a)'),
        (lambda: bot.map(["x"], store=42), "store= takes a Store (or its map_rows()), None or False, got int"),
    ]
    for call, said in cases:
        with pytest.raises(ConfigurationError) as caught:
            call()
        assert str(caught.value) == said
    assert chat_requests(loopback) == []


# -- resuming ---------------------------------------------------------------------------------------------
def test_the_same_call_asks_only_the_rows_not_answered_before(loopback, tmp_path) -> None:
    store = Store(tmp_path / "rows.sqlite3")
    bot = make_bot(loopback)
    store.attach(bot, "mapping")
    questions = [f"row {n}" for n in range(5)]
    loopback.queue(fault="server_error", times=2)  # rows 0 and 1 fail (no retries)
    first = bot.map(questions, concurrency=1, retries=0, progress=False)
    assert sorted(first.errors) == [0, 1]
    loopback.reset()
    again = bot.map(questions, concurrency=1, progress=False)
    assert asked(loopback) == ["row 0", "row 1"]  # only the failed rows
    assert again == [direct(loopback, q) for q in questions]
    assert [row.attempts for row in again.rows] == [1, 1, 1, 1, 1]
    # a new bot, the same store file (a kernel restart): nothing to ask
    loopback.reset()
    with Store(tmp_path / "rows.sqlite3") as reopened:
        fresh = make_bot(loopback)
        assert fresh.map(questions, store=reopened, progress=False) == again
        assert fresh.estimate_map(questions, store=reopened).to_ask == 0
        assert chat_requests(loopback) == []
        assert len(fresh.map(questions, store=reopened, resume=False, progress=False).rows) == 5  # asks them all
        assert len(chat_requests(loopback)) == 5
    # every request went to the ledger once
    (summary,) = store.usage_summary(())
    assert summary.requests == 2 + 3 + 2
    store.close()
    assert bot.row_store is None  # a closed store keeps no more rows


def test_answers_in_the_response_cache_are_not_asked_again(loopback) -> None:
    store = Store(":memory:", cache=True)
    bot = make_bot(loopback, temperature=0)  # temperature 0: the cache keeps its answers
    store.attach(bot, "cached")
    bot.row_store = None  # only the cache
    bot.ask("row 0", history=False, sink=NullSink())  # the same request as map's row "row 0"
    loopback.reset()
    first = bot.map(["row 0", "row 1"], progress=False)
    assert asked(loopback) == ["row 1"]
    loopback.reset()
    again = bot.map(["row 0", "row 1", "row 2"], progress=False)
    assert asked(loopback) == ["row 2"]  # row 1 was kept in the cache by the first map
    assert again[:2] == first and first.rows[0].cost == 0.0
    store.close()


KILLED_RUN = r"""
import sys
from jupyter_llmchat.core.chatbot import Chatbot
from jupyter_llmchat.store.store import Store

base_url, path = sys.argv[1:3]
store = Store(path)
bot = Chatbot("gpt-4o-mini", base_url=base_url, api_key="sk-map")
bot.map([f"row {n}" for n in range(40)], concurrency=2, store=store, progress=False)
print("FINISHED", flush=True)
"""


def test_a_run_killed_mid_way_is_resumed_by_asking_only_what_was_not_recorded(loopback, tmp_path) -> None:
    loopback.latency = 0.1  # 40 rows at 2 at once: about 2 s, killed half way
    path = tmp_path / "killed.sqlite3"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen([sys.executable, "-c", KILLED_RUN, loopback.base_url, str(path)], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while recorded(path) < 20 and time.monotonic() < deadline and child.poll() is None:
            time.sleep(0.02)
        child.send_signal(signal.SIGKILL)
    finally:
        out, err = child.communicate(timeout=30)
    assert "FINISHED" not in out, err
    kept = recorded(path)
    assert 20 <= kept < 40
    before = len(asked(loopback))
    loopback.latency = 0.0
    with Store(path) as store:
        results = make_bot(loopback).map([f"row {n}" for n in range(40)], store=store, progress=False)
    sent = asked(loopback)[before:]
    assert len(sent) == 40 - kept  # only the rows the killed run had not recorded
    assert results == [direct(loopback, f"row {n}") for n in range(40)]
    assert len(set(sent)) == len(sent)


def recorded(path: Path) -> int:
    import sqlite3
    from contextlib import closing

    if not path.exists():
        return 0
    try:
        with closing(sqlite3.connect(path, timeout=5)) as db:
            return int(db.execute("SELECT COUNT(*) FROM map_rows").fetchone()[0])
    except sqlite3.OperationalError:  # not made yet
        return 0


# -- stopping -----------------------------------------------------------------------------------------------
@pytest.fixture
def slow(loopback: LoopbackServer) -> Iterator[LoopbackServer]:
    loopback.latency = 0.3
    yield loopback


def when_answered(server: LoopbackServer, count: int, action) -> threading.Thread:
    """Run ``action`` in a thread once ``count`` chat requests have been answered."""
    def watch() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if sum(1 for entry in chat_requests(server) if entry.outcome == "complete") >= count:
                action()
                return
            time.sleep(0.005)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("how", ["KeyboardInterrupt", "stop()"])
def test_an_interrupt_returns_what_is_done_and_the_same_call_asks_the_rest(slow, how) -> None:
    store = Store(":memory:")
    bot = make_bot(slow)
    questions = [f"row {n}" for n in range(20)]
    when_answered(slow, 4, _thread.interrupt_main if how == "KeyboardInterrupt" else bot.stop)
    results = bot.map(questions, concurrency=2, store=store, progress=False)
    assert results.interrupted
    done = [n for n, row in enumerate(results.rows) if row.status == "done"]
    assert 0 < len(done) < 20  # (an answer on its way when the stop came is dropped: it is asked again)
    assert all(results[n] == direct(slow, questions[n]) for n in done)
    assert {results.errors[n] for n in range(20) if n not in done} == {NOT_ASKED}
    assert not bot.busy
    # the requests in flight were cut, not left to finish
    deadline = time.monotonic() + 10
    while any(entry.outcome is None for entry in chat_requests(slow)) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert {entry.outcome for entry in chat_requests(slow) if entry.body is not None} <= {"complete", "client_closed"}
    before = len(asked(slow))
    slow.latency = 0.0
    rest = bot.map(questions, concurrency=2, store=store, progress=False)
    assert sorted(asked(slow)[before:]) == sorted(q for n, q in enumerate(questions) if n not in done)
    assert rest == [direct(slow, q) for q in questions]
    store.close()


# -- the batch mode and the ledger ------------------------------------------------------------------------
def test_the_batch_mode_sends_the_same_rows_through_the_batch_api(loopback) -> None:
    loopback.batches.speedup = 1e6
    try:
        bot = make_bot(loopback)
        told: list[Reply] = []
        bot.reply_listeners.append(told.append)
        results = bot.map([f"row {n}" for n in range(3)], schema=Ticket, mode="batch", progress=False)
        assert results.job_id is not None and results.job_id.startswith("job_")
        assert chat_requests(loopback) == []  # no chat request: one batch
        params, _ = response_format_for(Ticket, model_info(MODEL))
        answer = Ticket.model_validate_json(direct(loopback, "row 0", **params))
        assert results == [answer] * 3 and results.errors == {}
        assert len(told) == 3
    finally:
        loopback.batches.speedup = DEFAULT_SPEEDUP


def test_every_asked_row_reaches_the_reply_listeners_as_a_reply(loopback) -> None:
    bot = make_bot(loopback)
    told: list[Reply] = []
    bot.reply_listeners.append(told.append)
    loopback.queue(fault="server_error")
    results = bot.map(["a", "b", "a"], concurrency=1, retries=0, progress=False)
    assert sorted((reply.status, reply.text) for reply in told) == [("complete", results[1]), ("failed", "")]
    assert all(reply.request["map"] for reply in told)



def test_the_data_notebook_runs_offline_and_shows_typed_columns() -> None:
    import nbformat
    from support.kernel_notebook import run_cells

    notebook = nbformat.read(ROOT / "notebooks" / "data.ipynb", as_version=4)
    cells = [cell.source for cell in notebook.cells if cell.cell_type == "code"]
    run = run_cells(cells, drop_env=("OPENAI_API_KEY", "OPENAI_BASE_URL"), cwd=ROOT / "notebooks")
    texts = {index: run.displays(index, "text/plain") for index in range(len(cells))}
    dtypes = next(text for shown in texts.values() for text in shown if text.startswith("category"))
    assert dtypes.split() == ["category", "category", "urgency", "Int64", "needs_reply", "boolean", "summary", "string",
                              "error", "string", "cost", "Float64", "dtype:", "object"]
    estimate = next(text for shown in texts.values() for text in shown if text.startswith("gpt-4o-mini: 12 rows"))
    assert "12 to ask" in estimate and "(answers of 0 to 150 tokens each, max_tokens)" in estimate
    printed = "".join(run.stdout(index) for index in range(len(cells)))
    assert "map: 12 of 12 rows done, 0 failed;" in printed
    assert "map: 10 of 12 rows done, 2 failed;" in printed  # the two scripted failures
    assert "map: 12 of 12 rows done (10 answered before), 0 failed;" in printed  # the re-run asked only them
    assert "rows with an error now: 0\n" in printed
    assert "14 requests, " in printed  # the ledger: 12 (two of them failed) + the 2 asked again
    assert all(run.stderr(index) == "" and run.error(index) is None for index in range(len(cells)))


def test_interrupting_a_real_kernel_returns_what_is_done_and_the_rerun_asks_the_rest(slow, tmp_path) -> None:
    from jupyter_client.manager import start_new_kernel

    env = {**os.environ, "PYTHONPATH": str(ROOT), "XDG_DATA_HOME": str(tmp_path)}
    manager, client = start_new_kernel(kernel_name="python3", env=env)

    def run(code: str, *, interrupt_after: int | None = None) -> tuple[str, str]:
        """Execute ``code``; interrupt the kernel (as the stop button does) once that many answers
        were sent. Returns (stdout, the execute reply's status)."""
        msg_id = client.execute(code)
        if interrupt_after is not None:
            deadline = time.monotonic() + 60
            while sum(1 for e in chat_requests(slow) if e.outcome == "complete") < interrupt_after:
                assert time.monotonic() < deadline
                time.sleep(0.005)
            manager.interrupt_kernel()
        out = []
        while True:
            message = client.get_iopub_msg(timeout=60)
            if message["parent_header"].get("msg_id") != msg_id:
                continue
            if message["msg_type"] == "stream" and message["content"]["name"] == "stdout":
                out.append(message["content"]["text"])
            if message["msg_type"] == "status" and message["content"]["execution_state"] == "idle":
                break
        return "".join(out), client.get_shell_msg(timeout=60)["content"]["status"]

    try:
        setup = (f"from jupyter_llmchat.core.chatbot import Chatbot\nfrom jupyter_llmchat.store.store import Store\n"
                 f"bot = Chatbot({MODEL!r}, base_url={slow.base_url!r}, api_key='k')\n"
                 "Store(':memory:').attach(bot, 'kernel')\nquestions = [f'row {n}' for n in range(20)]")
        assert run(setup) == ("", "ok")
        out, status = run("results = bot.map(questions, concurrency=2)", interrupt_after=4)
        assert status == "ok"  # the cell ended normally, with what was done
        assert SUMMARY.fullmatch(out), out
        done = int(SUMMARY.fullmatch(out).group(1))
        shown, _ = run("print(results.interrupted, [n for n, r in enumerate(results.rows) if r.status == 'done'])")
        assert shown.startswith("True [")
        answered = [int(n) for n in shown.split("[", 1)[1].rstrip("]\n").split(", ")]
        assert len(answered) == done and 0 < done < 20
        before = len(asked(slow))
        slow.latency = 0.0
        out, _ = run("again = bot.map(questions, concurrency=2)\nprint(again.interrupted, len(again.errors))")
        assert out.endswith("False 0\n")
        assert sorted(asked(slow)[before:]) == sorted(f"row {n}" for n in range(20) if n not in answered)
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)


SUMMARY = re.compile(r"map: (\d+) of 20 rows done, 0 failed; [\d,]+ tokens, \$[\d.]+; \d+\.\d s; interrupted: the "
                     r"same call asks the rows not answered\n")
