"""%chat usage: rows per session and model from every finished reply, with prices from the table."""

from __future__ import annotations

from jupyter_llmchat.core.chatbot import Chatbot
from jupyter_llmchat.core.models import model_info
from jupyter_llmchat.core.reply import NullSink, Reply
from jupyter_llmchat.store.usage import Entry, UsageLedger, to_markdown, to_text, usage_rows


def test_rows_sum_per_session_and_model_with_a_total() -> None:
    entries = [Entry("a", "gpt-4o-mini", 1000, 200, 0, model_info("gpt-4o-mini").cost(1000, 200)),
               Entry("a", "gpt-4o-mini", 500, 100, 400, model_info("gpt-4o-mini").cost(500, 100, 400)),
               Entry("b", "my-local-model", 10, 5, 0, None),
               Entry("a", "gpt-4o-mini", 1000, 200, 0, 0.0, from_cache=True)]
    rows = usage_rows(entries)
    # worked example: 1000*0.15 + 200*0.60 = 270 -> $0.00027; 100*0.15 + 400*0.075 + 100*0.60 = 105 -> $0.000105
    assert rows[0] == {"session": "a", "model": "gpt-4o-mini", "requests": 3, "prompt_tokens": 1500,
                       "cached_tokens": 400, "completion_tokens": 300, "total_tokens": 1800,
                       "cost_usd": rows[0]["cost_usd"]}
    assert round(rows[0]["cost_usd"], 9) == 0.000375
    assert rows[1]["cost_usd"] is None  # price unknown, and said so
    assert rows[2]["session"] == "total" and rows[2]["requests"] == 4 and rows[2]["cost_usd"] is None
    assert to_markdown(rows).splitlines()[:3] == [
        "| session | model | requests | prompt_tokens | cached_tokens | completion_tokens | total_tokens | cost_usd |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
        "| a | gpt-4o-mini | 3 | 1500 | 400 | 300 | 1800 | $0.000375 |"]
    assert to_text(rows).splitlines()[2].split() == ["b", "my-local-model", "1", "10", "0", "5", "15", "unknown"]


def test_empty_ledger_says_so() -> None:
    assert usage_rows([]) == []
    assert to_markdown([]) == to_text([]) == "No replies yet in this kernel."


def test_ledger_hears_every_reply_including_one_off_questions(loopback) -> None:
    loopback.queue(reply="one")
    loopback.queue(reply="two")
    bot = Chatbot("gpt-4o-mini", base_url=loopback.base_url, max_retries=0)
    ledger = UsageLedger()
    ledger.attach(bot, "s")
    first = bot.ask("q1", sink=NullSink())
    second = bot.ask("q2", sink=NullSink(), history=False)
    rows = ledger.rows()
    assert rows[0]["requests"] == 2
    assert rows[0]["prompt_tokens"] == first.usage.prompt_tokens + second.usage.prompt_tokens
    assert rows[0]["completion_tokens"] == first.usage.completion_tokens + second.usage.completion_tokens
    assert rows[0]["cost_usd"] == first.cost + second.cost
    ledger.record("s", Reply(text="", model="gpt-4o-mini", status="failed", usage=None))
    assert ledger.rows()[0]["requests"] == 2  # a request that failed before any usage is not a row
