"""Chatbot.ask(question, schema=...) through the real SDK against the loopback server: each schema
kind parsed, strict json_schema vs JSON mode as sent, the repair round (with and without history),
its failure holding the raw text, a length cut, a content filter and a refusal reported as such and
never parsed, the sink seeing one answer, a refusal replayed from the response cache."""

from __future__ import annotations

import dataclasses
import json
from typing import TypedDict

import pydantic
import pytest
from support.recording import RecordingSink

from jupyter_llmchat.core.chatbot import Chatbot
from jupyter_llmchat.core.errors import ConfigurationError, StructuredAnswerError
from jupyter_llmchat.core.reply import NullSink
from jupyter_llmchat.core.structured import schema_instruction
from jupyter_llmchat.server.structured import REFUSAL, SOURCE
from jupyter_llmchat.store import Store


class Movie(pydantic.BaseModel):
    title: str
    year: int


@dataclasses.dataclass
class Ticket:
    seat: str
    price: float


class Cast(TypedDict):
    name: str
    films: list[str]


LABEL = {"title": "Label", "type": "object", "properties": {"label": {"enum": ["spam", "ham"]}}, "required": ["label"]}
STRICT_MOVIE = {"type": "json_schema", "json_schema": {"name": "Movie", "strict": True, "schema": {
    "title": "Movie", "type": "object", "additionalProperties": False, "required": ["title", "year"],
    "properties": {"title": {"title": "Title", "type": "string"}, "year": {"title": "Year", "type": "integer"}}}}}


def make_bot(loopback, model: str = "gpt-4o-mini", **kwargs) -> Chatbot:
    return Chatbot(model, base_url=loopback.base_url, api_key="sk-test", max_retries=0, **kwargs)


def bodies(loopback) -> list[dict]:
    return [r.body for r in loopback.requests if r.path.endswith("/chat/completions")]


@pytest.mark.parametrize(("schema", "expected"), [
    (Movie, Movie(title=SOURCE, year=0)),
    (Ticket, Ticket(seat=SOURCE, price=0)),
    (Cast, {"name": SOURCE, "films": [SOURCE]}),
    (LABEL, {"label": "spam"}),
])
def test_each_schema_kind_comes_back_parsed(loopback, schema, expected):
    reply = make_bot(loopback).ask("Tell me.", schema=schema, sink=NullSink())
    assert reply.parsed == expected and type(reply.parsed) is type(expected)
    assert reply.status == "complete" and reply.refusal is None and reply.rounds == 1
    assert json.loads(reply.text) == (dataclasses.asdict(expected) if dataclasses.is_dataclass(expected) else
                                      expected.model_dump() if isinstance(expected, pydantic.BaseModel) else expected)


def test_a_model_with_structured_outputs_gets_strict_json_schema(loopback):
    make_bot(loopback, system="Be terse.").ask("A film?", schema=Movie, sink=NullSink())
    (body,) = bodies(loopback)
    assert body["response_format"] == STRICT_MOVIE
    assert body["messages"] == [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "A film?"}]


def test_a_model_without_them_gets_json_mode_and_the_schema_in_the_system_message(loopback):
    reply = make_bot(loopback, "gpt-4", system="Be terse.").ask("A film?", schema=Movie, sink=NullSink())
    (body,) = bodies(loopback)
    assert body["response_format"] == {"type": "json_object"}
    assert body["messages"][0] == {"role": "system", "content": f"Be terse.\n\n{schema_instruction(Movie)}"}
    assert reply.parsed == Movie(title=SOURCE, year=0)  # the server, like a model, read the schema there


def test_a_schema_that_cannot_be_strict_gets_json_mode_on_any_model(loopback):
    counts = {"type": "object", "properties": {"counts": {"type": "object", "additionalProperties": {"type": "integer"}}}}
    loopback.queue(reply='{"counts": {"a": 2}}')
    reply = make_bot(loopback, "gpt-4o").ask("Count.", schema=counts, sink=NullSink(), system="Count well.")
    (body,) = bodies(loopback)
    assert body["response_format"] == {"type": "json_object"}
    assert body["messages"][0]["content"] == f"Count well.\n\n{schema_instruction(counts)}"
    assert reply.parsed == {"counts": {"a": 2}}


def test_an_invalid_answer_gets_one_repair_round_with_the_error(loopback):
    bot = make_bot(loopback)
    loopback.queue(fault="schema_invalid")
    sink = RecordingSink()
    reply = bot.ask("A film?", schema=Movie, sink=sink)
    first, second = bodies(loopback)
    assert second["messages"] == [
        {"role": "user", "content": "A film?"},
        {"role": "assistant", "content": '{"year": 0}'},
        {"role": "user", "content": "That answer is not valid: the answer does not match Movie: title: Field required. "
                                    "Reply with only the corrected JSON object."}]
    assert first["response_format"] == second["response_format"] == STRICT_MOVIE
    assert reply.parsed == Movie(title=SOURCE, year=0) and reply.rounds == 2
    assert reply.request["repair_rounds"] == 1
    assert [m.role for m in bot.history] == ["user", "assistant", "user", "assistant"]
    # the sink saw one answer: one start, both rounds' text with a note between, one finish
    assert sink.started == ["gpt-4o-mini"] and sink.finished == [reply]
    assert "".join(sink.deltas) == ('{"year": 0}\n\n[the answer did not match Movie (the answer does not match Movie: '
                                    'title: Field required); asking once more]\n\n' + reply.text)


def test_usage_and_cost_are_summed_over_the_rounds(loopback):
    seen = []
    bot = make_bot(loopback)
    bot.reply_listeners.append(seen.append)
    loopback.queue(fault="schema_invalid")
    reply = bot.ask("A film?", schema=Movie, sink=NullSink())
    assert len(seen) == 2 and seen[1] is not reply  # each round is one ledger row
    assert reply.usage.prompt_tokens == seen[0].usage.prompt_tokens + seen[1].usage.prompt_tokens
    assert reply.usage.completion_tokens == seen[0].usage.completion_tokens + seen[1].usage.completion_tokens
    assert reply.cost == pytest.approx(seen[0].cost + seen[1].cost)


def test_without_history_the_repair_quotes_question_and_answer_and_keeps_nothing(loopback):
    bot = make_bot(loopback)
    loopback.queue(reply='{"title": "Alien"}')
    reply = bot.ask("A film?", schema=Movie, sink=NullSink(), history=False)
    assert bodies(loopback)[1]["messages"] == [{"role": "user", "content": (
        'The question was:\nA film?\n\nYour answer was:\n{"title": "Alien"}\n\nThat answer is not valid: the answer '
        "does not match Movie: year: Field required. Reply with only the corrected JSON object.")}]
    assert reply.parsed == Movie(title=SOURCE, year=0) and bot.history == []


def test_an_answer_still_invalid_after_the_repair_is_a_clear_error_holding_the_raw_text(loopback):
    sink = RecordingSink()
    loopback.queue(reply="Sure! Alien (1979).")
    loopback.queue(reply='{"title": "Alien", "year": "nineteen seventy-nine"}')
    with pytest.raises(StructuredAnswerError) as caught:
        make_bot(loopback).ask("A film?", schema=Movie, sink=sink)
    error = caught.value
    assert str(error) == (
        "the answer does not match Movie: year: Input should be a valid integer, unable to parse string as an "
        "integer (after one repair round; the raw answer is in .text: '{\"title\": \"Alien\", \"year\": \"nineteen "
        "seventy-nine\"}')")
    assert error.text == '{"title": "Alien", "year": "nineteen seventy-nine"}' and error.reason == "invalid"
    assert error.reply.parsed is None and error.reply.rounds == 2 and sink.finished == [error.reply]
    assert len(bodies(loopback)) == 2  # one repair round, no more


def test_a_length_cut_is_reported_as_such_and_never_repaired_or_parsed(loopback):
    loopback.queue(fault="length_cut")
    sink = RecordingSink()
    with pytest.raises(StructuredAnswerError) as caught:
        make_bot(loopback).ask("A film?", schema=Movie, sink=sink)
    assert str(caught.value) == ("nothing was parsed: answer truncated: it reached the model's or the server's output "
                                 "limit; max_tokens was not set (finish_reason=length)")  # none was set
    assert caught.value.reason == "truncated" and caught.value.text == '{"title": "jupyter_llmchat offline d'
    assert caught.value.reply.status == "truncated" and sink.finished == [caught.value.reply]
    assert len(bodies(loopback)) == 1


def test_max_tokens_reached_is_the_same_length_cut(loopback):
    with pytest.raises(StructuredAnswerError) as caught:
        make_bot(loopback).ask("A film?", schema=Movie, sink=NullSink(), max_tokens=4)
    assert str(caught.value) == "nothing was parsed: answer truncated: it reached max_tokens=4 (finish_reason=length)"
    assert caught.value.reason == "truncated" and caught.value.reply.finish_reason == "length"
    assert len(bodies(loopback)) == 1


def test_a_content_filter_stop_is_reported_as_such(loopback):
    loopback.queue(reply='{"title": "Al', finish_reason="content_filter")
    with pytest.raises(StructuredAnswerError) as caught:
        make_bot(loopback).ask("A film?", schema=Movie, sink=NullSink())
    assert str(caught.value) == ("nothing was parsed: answer stopped by the provider's content filter "
                                 "(finish_reason=content_filter)")
    assert caught.value.reason == "filtered" and len(bodies(loopback)) == 1


def test_a_refusal_comes_back_as_refusal_with_nothing_parsed(loopback):
    loopback.queue(fault="refusal")
    sink = RecordingSink()
    reply = make_bot(loopback).ask("A film?", schema=Movie, sink=sink)
    assert (reply.refusal, reply.parsed, reply.text, reply.status) == (REFUSAL, None, "", "complete")
    assert reply.notice == f"the model refused to answer: {REFUSAL}"
    assert sink.finished == [reply] and len(bodies(loopback)) == 1


def test_a_refusal_sent_whole_is_read_too(loopback):
    loopback.queue(fault="refusal", reply="Not that one.")
    loopback.queue(fault="json_body")
    reply = make_bot(loopback).ask("A film?", schema=Movie, sink=NullSink())
    assert reply.refusal == "Not that one." and reply.parsed is None


def test_a_refusal_is_replayed_from_the_response_cache(loopback):
    with Store(":memory:", cache=True) as store:
        bot = make_bot(loopback, temperature=0)
        store.attach(bot, "s")
        loopback.queue(fault="refusal")
        first = bot.ask("A film?", schema=Movie, sink=NullSink(), history=False)
        again = bot.ask("A film?", schema=Movie, sink=NullSink(), history=False)
        assert again.from_cache and again.refusal == first.refusal == REFUSAL and again.parsed is None
        assert len(bodies(loopback)) == 1


def test_response_format_beside_schema_is_refused_before_sending(loopback):
    with pytest.raises(ConfigurationError, match=r"^schema= sets response_format itself: leave response_format out$"):
        make_bot(loopback).ask("A film?", schema=Movie, response_format={"type": "json_object"}, sink=NullSink())
    with pytest.raises(ConfigurationError, match=r"^schema= takes a pydantic model"):
        make_bot(loopback).ask("A film?", schema=3, sink=NullSink())
    assert bodies(loopback) == []


def test_the_rounds_sink_offers_what_the_real_sink_offers() -> None:
    from jupyter_llmchat.core.structured_ask import Rounds

    class ToolView(RecordingSink):
        def approve_tool(self, call) -> bool:
            return True

    rounds = Rounds(ToolView())
    assert rounds.approve_tool(None) is True  # a cell's approval buttons reach the tool loop through it
    assert not hasattr(Rounds(RecordingSink()), "approve_tool")
