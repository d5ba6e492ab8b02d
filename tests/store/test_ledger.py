"""The usage ledger: one row per answer with costs from the price table (worked examples, cached
input priced as the provider prices it), cache hits at zero cost, totals per session, model and
day, and the text and HTML tables with bars."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from jupyter_llmchat.core.chatbot import Chatbot
from jupyter_llmchat.core.reply import NullSink, Reply, Usage
from jupyter_llmchat.store.ledger import ledger_row, price, reply_usage, total
from jupyter_llmchat.store.store import Store, StoreError

KEY = "sk-test-ledger-77"
LONG_SYSTEM = "You are a meticulous assistant who explains every step. " * 120  # > 1024 tokens


def make_bot(loopback, model: str = "gpt-4o-mini", **kwargs) -> Chatbot:
    return Chatbot(model, base_url=loopback.base_url, api_key=KEY, max_retries=0, **kwargs)


@pytest.fixture
def store(tmp_path: Path):
    with Store(tmp_path / "store.sqlite3") as opened:
        yield opened


@pytest.mark.parametrize("model, prompt, completion, cached, expected", [
    # gpt-4o-mini: $0.15 in, $0.075 cached in, $0.60 out per million tokens.
    ("gpt-4o-mini", 1_000, 500, 0, 0.000450),             # 1000*0.15 + 500*0.60 = 450 per 1e6
    ("gpt-4o-mini", 2_048, 100, 1_024, 0.0002904),        # 1024*0.15 + 1024*0.075 + 100*0.60
    # gpt-4o: $2.50 in, $1.25 cached in, $10 out.
    ("gpt-4o", 10_000, 2_000, 4_096, 0.03988),            # 5904*2.5 + 4096*1.25 + 2000*10
    # gpt-4 has no cached price: cached tokens cost as input ($30 in, $60 out).
    ("gpt-4", 1_500, 300, 1_024, 0.063),                  # 1500*30 + 300*60
    # a dated snapshot is priced as its family
    ("gpt-4.1-2025-04-14", 1_000_000, 0, 0, 2.0),
])
def test_costs_match_the_price_table_on_worked_examples(model, prompt, completion, cached, expected):
    assert price(model, prompt, completion, cached) == pytest.approx(expected, rel=1e-12)
    reply = Reply(text="x", model=model, usage=Usage(prompt, completion, cached))
    row = ledger_row(reply, session="s", at=1.0)
    assert row["cost"] == pytest.approx(expected, rel=1e-12)
    assert (row["prompt_tokens"], row["completion_tokens"], row["cached_tokens"], row["from_cache"]) == (
        prompt, completion, cached, 0)


def test_unknown_models_have_no_cost_but_the_requested_name_can_price_them():
    usage = Usage(100, 10, 0)
    assert ledger_row(Reply("x", "llama3.1:8b", usage=usage))["cost"] is None
    priced = ledger_row(Reply("x", "my-azure-deployment", usage=usage, request={"model": "gpt-4o"}))
    assert priced["cost"] == pytest.approx((100 * 2.5 + 10 * 10) / 1e6)


def test_cache_hits_cost_nothing_and_record_what_they_saved():
    hit = Reply("x", "gpt-4o-mini", usage=Usage(1_000, 500, 0), from_cache=True, cost=0.0)
    row = ledger_row(hit)
    assert (row["prompt_tokens"], row["completion_tokens"], row["cost"], row["from_cache"]) == (0, 0, 0.0, 1)
    assert row["saved"] == pytest.approx(0.000450)


def test_a_reply_without_usage_is_one_request_of_zero_tokens_marked_missing():
    # No text arrived: nothing was generated, so nothing was billed.
    failed = ledger_row(Reply("", "gpt-4o", status="failed", error="boom"), at=1.0)
    # Text arrived but no usage: tokens were generated and billed, how many is unknown.
    cut = ledger_row(Reply("partial", "gpt-4o", status="interrupted"), at=1.0)
    for row, cost in ((failed, 0.0), (cut, None)):
        assert {key: row[key] for key in ("prompt_tokens", "completion_tokens", "cached_tokens", "cost",
                                          "saved", "from_cache", "usage_source")} == {
            "prompt_tokens": 0, "completion_tokens": 0, "cached_tokens": 0, "cost": cost, "saved": None,
            "from_cache": 0, "usage_source": "missing"}
    reported = ledger_row(Reply("x", "gpt-4o", usage=Usage(10, 2)))
    hit_without_usage = ledger_row(Reply("x", "gpt-4o", from_cache=True, cost=0.0))  # known: it billed nothing
    assert (reported["usage_source"], hit_without_usage["usage_source"]) == ("reported", "reported")
    assert (hit_without_usage["cost"], hit_without_usage["saved"]) == (0.0, None)
    assert reply_usage(Reply("x", "gpt-4o")) == (None, "missing")
    assert reply_usage(Reply("x", "gpt-4o", usage=Usage(10, 2))) == (Usage(10, 2), "reported")


def test_demo_replies_cost_nothing_and_are_counted_as_the_demo_s(store: Store):
    # The offline demo server's replies: real token counts, but no model wrote them.
    demo = Reply("placeholder", "gpt-4o-mini", usage=Usage(1_000, 500, 0), cost=0.0, demo=True)
    row = ledger_row(demo, session="s", at=1.0)
    assert {key: row[key] for key in ("prompt_tokens", "completion_tokens", "cost", "saved", "demo")} == {
        "prompt_tokens": 1_000, "completion_tokens": 500, "cost": 0.0, "saved": None, "demo": 1}
    assert ledger_row(Reply("x", "gpt-4o-mini", usage=Usage(1_000, 500, 0)))["demo"] == 0
    store.record_reply(demo, session="s")
    store.record_reply(Reply("real", "gpt-4o-mini", usage=Usage(1_000, 500, 0)), session="s")
    (summary,) = store.usage_summary(())
    assert (summary.requests, summary.demo, summary.prompt_tokens) == (2, 1, 2_000)
    assert summary.cost == pytest.approx(0.000450)  # the real reply's price alone


class InterruptingSink(NullSink):
    """Raises KeyboardInterrupt at the third delta, as a kernel interrupt would: text, no usage."""

    def __init__(self) -> None:
        self.seen = 0

    def write(self, text: str) -> None:
        self.seen += 1
        if self.seen == 3:
            raise KeyboardInterrupt


def test_replies_without_usage_are_counted_in_the_summary(store: Store, loopback):
    from jupyter_llmchat.core import errors

    bot = make_bot(loopback)
    store.attach(bot, "local")
    loopback.queue(reply="with usage")
    answered = bot.ask("one", sink=NullSink())
    loopback.queue(tokens=400)
    cut = bot.ask("two", sink=InterruptingSink())
    loopback.queue(fault="unauthorized")
    with pytest.raises(errors.AuthenticationError):
        bot.ask("three", sink=NullSink())
    # The cut answer's text arrived without usage: the core counted what it sent and received.
    assert (cut.status, cut.usage.source, bool(cut.text)) == ("interrupted", "counted", True)
    assert store.query("SELECT status, prompt_tokens, cost IS NULL AS unknown, usage_source FROM ledger "
                       "ORDER BY id") == [
        {"status": "complete", "prompt_tokens": answered.usage.prompt_tokens, "unknown": 0,
         "usage_source": "reported"},
        {"status": "interrupted", "prompt_tokens": cut.usage.prompt_tokens, "unknown": 0, "usage_source": "counted"},
        {"status": "failed", "prompt_tokens": 0, "unknown": 0, "usage_source": "missing"}]
    (row,) = store.usage_summary(("session",))
    assert (row.requests, row.unreported, row.unpriced, row.prompt_tokens) == (
        3, 1, 0, answered.usage.prompt_tokens + cut.usage.prompt_tokens)
    assert row.cost == pytest.approx(answered.cost + cut.cost, rel=1e-12)


def test_every_answer_gets_a_row_priced_from_the_reported_usage(store: Store, loopback):
    bot = make_bot(loopback, system=LONG_SYSTEM)
    store.attach(bot, "costly")
    loopback.queue(reply="First.", times=1)
    loopback.queue(reply="Second.", times=1)
    first = bot.ask("one", sink=NullSink())
    second = bot.ask("two", sink=NullSink())
    assert first.usage.cached_tokens == 0 and second.usage.cached_tokens >= 1024  # the server's prompt cache
    rows = store.query("SELECT session, model, prompt_tokens, completion_tokens, cached_tokens, cost, "
                       "from_cache, status FROM ledger ORDER BY id")
    for row, reply in zip(rows, (first, second)):
        usage = reply.usage
        expected = ((usage.prompt_tokens - usage.cached_tokens) * 0.15 + usage.cached_tokens * 0.075
                    + usage.completion_tokens * 0.60) / 1e6
        assert row == {"session": "costly", "model": "gpt-4o-mini", "prompt_tokens": usage.prompt_tokens,
                       "completion_tokens": usage.completion_tokens, "cached_tokens": usage.cached_tokens,
                       "cost": pytest.approx(expected, rel=1e-12), "from_cache": 0, "status": "complete"}
        assert row["cost"] == pytest.approx(reply.cost, rel=1e-12)  # the Reply's footer agrees


def test_one_off_questions_and_failures_are_in_the_ledger(store: Store, loopback):
    from jupyter_llmchat.core import errors

    bot = make_bot(loopback)
    store.attach(bot, "mixed")
    loopback.queue(reply="aside")
    aside = bot.ask("quick", history=False, sink=NullSink())
    loopback.queue(fault="unauthorized")
    with pytest.raises(errors.AuthenticationError):
        bot.ask("denied", sink=NullSink())
    assert bot.history == [] and aside.cost > 0
    assert store.query("SELECT session, status, cost FROM ledger ORDER BY id") == [
        {"session": "mixed", "status": "complete", "cost": pytest.approx(aside.cost, rel=1e-12)},
        {"session": "mixed", "status": "failed", "cost": 0.0}]


def insert(store: Store, **row) -> None:
    base = {"session": "s", "conversation": None, "model": "gpt-4o-mini", "time": 0.0, "prompt_tokens": 0,
            "completion_tokens": 0, "cached_tokens": 0, "cost": 0.0, "saved": None, "from_cache": 0,
            "status": "complete", "total_time": 0.0}
    base.update(row)
    with store.transaction() as db:
        db.execute(f"INSERT INTO ledger ({', '.join(base)}) VALUES ({', '.join('?' * len(base))})",
                   tuple(base.values()))


def noon(day: int) -> float:
    """Local noon on 2026-03-<day>, so the day a row falls on does not depend on the time zone."""
    return time.mktime((2026, 3, day, 12, 0, 0, 0, 0, -1))


@pytest.fixture
def ledger(store: Store) -> Store:
    insert(store, session="alpha", model="gpt-4o", time=noon(1), prompt_tokens=1000, completion_tokens=100,
           cost=0.0035)
    insert(store, session="alpha", model="gpt-4o", time=noon(1), prompt_tokens=2000, completion_tokens=200,
           cached_tokens=1024, cost=0.00572)
    insert(store, session="alpha", model="gpt-4o-mini", time=noon(2), from_cache=1, saved=0.0009)
    insert(store, session="beta", model="llama3", time=noon(2), prompt_tokens=50, completion_tokens=5,
           cost=None)
    return store


def test_usage_summary_groups_by_session_model_and_day(ledger: Store):
    rows = ledger.usage_summary()
    assert [(r.keys, r.requests, r.cache_hits, r.prompt_tokens, r.completion_tokens, r.cached_tokens,
             round(r.cost, 6), r.unpriced, round(r.saved, 6)) for r in rows] == [
        ({"session": "alpha", "model": "gpt-4o", "day": "2026-03-01"}, 2, 0, 3000, 300, 1024, 0.00922, 0, 0),
        ({"session": "alpha", "model": "gpt-4o-mini", "day": "2026-03-02"}, 1, 1, 0, 0, 0, 0, 0, 0.0009),
        ({"session": "beta", "model": "llama3", "day": "2026-03-02"}, 1, 0, 50, 5, 0, 0, 1, 0)]
    by_day = ledger.usage_summary("day")
    assert [(r.keys["day"], r.requests, round(r.cost, 6)) for r in by_day] == [
        ("2026-03-01", 2, 0.00922), ("2026-03-02", 2, 0.0)]
    everything = ledger.usage_summary(())
    assert len(everything) == 1 and everything[0].requests == 4 and everything[0] == total(by_day)
    assert [r.keys for r in ledger.usage_summary("model", session="beta")] == [{"model": "llama3"}]
    assert [r.requests for r in ledger.usage_summary((), since=noon(2))] == [2]


def test_usage_summary_rejects_unknown_groupings(ledger: Store):
    with pytest.raises(StoreError) as caught:
        ledger.usage_summary(("session", "week"))
    assert str(caught.value) == "cannot group usage by 'week'; choose from session, model, day"


def test_empty_ledger(store: Store):
    assert store.usage_summary() == [] and store.usage_summary(()) == []
