"""Chatbot.estimate and the cost guard, through the real SDK against the loopback server: the estimate
is exactly what ask then sends (prompt tokens as the server counts them, the same turns left out),
priced from an empty answer to the longest allowed; nothing is sent by an estimate or by a refused
question (the server's log as witness); the trimming notice's figures reach the Reply."""

from __future__ import annotations

import pytest
from support.loopback_client import chat_bodies

from jupyter_llmchat.core import errors
from jupyter_llmchat.core.chatbot import Chatbot
from jupyter_llmchat.core.estimate import (
    QuestionEstimate,
    completion_bound,
    fit_target,
    raised_limit,
    trimmed_notice,
)
from jupyter_llmchat.core.models import model_info
from jupyter_llmchat.core.reply import NullSink

KEY = "sk-test-estimate-0000"


def make_bot(loopback, model: str = "gpt-4o", **kwargs) -> Chatbot:
    return Chatbot(model, base_url=loopback.base_url, api_key=KEY, max_retries=0, **kwargs)


def converse(loopback, bot: Chatbot, turns: int, words: int) -> None:
    for index in range(turns):
        loopback.queue(reply="word " * words)
        bot.ask(f"Question {index}?", sink=NullSink())


def test_the_estimate_is_what_ask_then_sends_and_sends_nothing(loopback):
    bot = make_bot(loopback, context_window=900, max_tokens=200, system="Be brief.")
    converse(loopback, bot, 6, 150)
    sent_before = len(loopback.requests)
    estimate = bot.estimate("And now?")
    assert len(loopback.requests) == sent_before  # nothing sent, not even a model list
    loopback.queue(reply="ok")
    reply = bot.ask("And now?", sink=NullSink())
    body = chat_bodies(loopback)[-1]
    info = model_info("gpt-4o")
    assert estimate == QuestionEstimate(
        model="gpt-4o", prompt_tokens=reply.usage.prompt_tokens, turns_sent=4, trimmed_turns=2, system=True,
        fit="the 900-token window", budget=700, max_completion=200, max_tokens_set=True,
        cost_low=info.cost(reply.usage.prompt_tokens, 0), cost_high=info.cost(reply.usage.prompt_tokens, 200))
    assert len(body["messages"]) == 1 + 2 * 4 + 1  # system, the 4 turns kept, the question
    assert (reply.trimmed_turns, reply.request["fit"]) == (2, "the 900-token window")
    assert str(estimate) == (
        "gpt-4o (nothing was sent)\n"
        f"prompt: {reply.usage.prompt_tokens:,} tokens (the system message, 4 earlier turns and the question); "
        "2 earlier turns left out to fit the 900-token window\n"
        "answer: 0 to 200 tokens (max_tokens)\n"
        "cost: $0.0017 to $0.0037")


def test_an_estimate_without_max_tokens_bounds_the_answer_by_the_output_limit(loopback):
    estimate = make_bot(loopback).estimate("Hello there", temperature=0.2)
    assert (estimate.max_completion, estimate.max_tokens_set, estimate.trimmed_turns) == (16_384, False, 0)
    assert str(estimate).splitlines()[1:] == [
        "prompt: 9 tokens (the question)",
        "answer: 0 to 16,384 tokens (the model's output limit: set max_tokens= for a tighter bound)",
        "cost: $0.000023 to $0.16"]
    assert chat_bodies(loopback) == []


def test_an_unknown_price_has_no_cost_range_and_is_not_guarded(loopback):
    bot = make_bot(loopback, "loopback-demo", max_cost_per_question=0.0001)
    estimate = bot.estimate("hi")
    assert (estimate.cost_low, estimate.cost_high, estimate.over_limit) == (None, None, False)
    assert str(estimate).splitlines()[-1] == "cost: unknown (no price for loopback-demo in the model table)"
    loopback.queue(reply="sent")
    assert bot.ask("hi", sink=NullSink()).text == "sent"


def test_the_cost_guard_refuses_before_sending_and_says_how_to_raise_it(loopback):
    bot = make_bot(loopback, max_tokens=2000, max_cost_per_question=0.025)
    converse(loopback, bot, 1, 20)
    sent, history = len(loopback.requests), bot.history
    question = "Summarise this: " + "lorem ipsum " * 2000
    estimate = bot.estimate(question)
    assert estimate.over_limit and str(estimate).endswith(
        "over max_cost_per_question=$0.025: asking would be refused")
    with pytest.raises(errors.CostLimitError) as caught:
        bot.ask(question, sink=NullSink())
    expected = (f"this question could cost up to $0.030 on gpt-4o ({estimate.prompt_tokens:,} prompt tokens and an "
                "answer of up to 2,000 tokens), over max_cost_per_question=$0.025")
    assert caught.value.figures == expected
    assert str(caught.value) == (f"{expected}: raise max_cost_per_question to $0.031 or more, lower max_tokens, "
                                 "or send less history (reset(), or history=False); nothing was sent")
    assert (caught.value.cost, caught.value.limit) == (estimate.cost_high, 0.025)
    assert len(loopback.requests) == sent and bot.history == history  # nothing sent, nothing recorded
    bot.max_cost_per_question = 0.031
    loopback.queue(reply="Summarised.")
    assert bot.ask(question, sink=NullSink()).text == "Summarised."


def test_a_prompt_bounded_by_its_bytes_is_counted_before_it_is_refused(loopback):
    # Bytes bound the tokens from above: a limit between the exact worst case and the bound's lets
    # the question through, whether the vocabulary was loaded already (exact at once) or not.
    question = "a " * 3000  # 6,000 bytes, about 3,000 tokens
    exact = make_bot(loopback, max_tokens=10).estimate(question)
    info = model_info("gpt-4o")
    bounded = info.cost(len(question.encode()), 10)
    assert exact.cost_high is not None and exact.cost_high < bounded
    bot = make_bot(loopback, max_tokens=10, max_cost_per_question=(exact.cost_high + bounded) / 2)
    loopback.queue(reply="fine")
    assert bot.ask(question, sink=NullSink()).text == "fine"


@pytest.mark.parametrize("value", [0, -1, float("nan"), float("inf"), True, "1"])
def test_a_bad_limit_is_one_line(loopback, value):
    with pytest.raises(errors.ConfigurationError) as caught:
        make_bot(loopback, max_cost_per_question=value)
    assert str(caught.value) == (f"max_cost_per_question must be a number of dollars > 0 (or None for no limit), "
                                 f"got {value!r}")


def test_the_fingerprint_and_the_seed_sent_reach_the_reply(loopback):
    bot = make_bot(loopback, seed=11)
    loopback.queue(reply="one", times=2)
    first = bot.ask("a", sink=NullSink())
    second = bot.ask("b", sink=NullSink(), seed=12)
    assert [(r.system_fingerprint, r.seed, r.trimmed_turns) for r in (first, second)] == [
        ("fp_loopback", 11, 0), ("fp_loopback", 12, 0)]
    assert "fit" not in first.request


def test_a_prompt_token_limit_is_what_the_turns_were_left_out_to_fit(loopback):
    bot = make_bot(loopback, prompt_token_limit=300)
    converse(loopback, bot, 4, 100)
    loopback.queue(reply="ok")
    reply = bot.ask("Last one?", sink=NullSink())
    assert (reply.trimmed_turns, reply.request["fit"]) == (2, "prompt_token_limit=300")


def test_the_pieces():
    info = model_info("gpt-4o")
    assert completion_bound(info, 120_000, None) == 8_000  # what the window leaves
    assert completion_bound(info, 100, None) == 16_384 and completion_bound(info, 100, 50) == 50
    assert fit_target(info, 2000, 2000) == "prompt_token_limit=2,000"
    assert fit_target(info, 2000, 5000) == "the 128,000-token window"
    assert trimmed_notice(1, "the 8,192-token window") == "1 earlier turn left out to fit the 8,192-token window"
    assert trimmed_notice(3, "x") == "3 earlier turns left out to fit x"
    assert [raised_limit(c) for c in (0.0302, 0.03, 1.234, 12.5, 0.0)] == [0.031, 0.031, 1.3, 13.0, 0.01]


def test_turns_left_out_between_tool_rounds_are_counted(loopback):
    def dump() -> str:
        return "row " * 2500

    bot = make_bot(loopback, tools=[dump], context_window=4096, max_tokens=500)
    converse(loopback, bot, 3, 400)
    loopback.queue(tool_calls=[{"name": "dump", "arguments": {}}])
    loopback.queue(reply="A lot of rows.")
    reply = bot.ask("Dump it", sink=NullSink())
    first, second = chat_bodies(loopback)[-2:]
    assert (len(first["messages"]), len(second["messages"])) == (7, 7)  # 3 turns + question; 2 + question + round
    assert (reply.trimmed_turns, reply.request["fit"]) == (1, "the 4,096-token window")
