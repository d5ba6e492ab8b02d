"""Tool calls on the loopback server through the real openai SDK: scripted calls (parallel, streamed
in fragments, malformed arguments), the whole-body form, usage that counts the definitions and the
calls, OpenAI's 400s for what it rejects (an orphan tool message, unanswered calls, strict schemas
that break its rules, tool_choice without tools), and the offline demo running the loop."""

from __future__ import annotations

import json
from typing import Any

import openai
import pytest
from openai import OpenAI

from jupyter_llmchat.core.tokens import TokenCounter, count_prompt_tokens
from jupyter_llmchat.server import DISCLOSURE, LoopbackServer

KEY = "sk-test-loopback-tools"
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The weather now.",
    "parameters": {"type": "object", "additionalProperties": False, "required": ["city", "unit"],
                   "properties": {"city": {"type": "string"},
                                  "unit": {"anyOf": [{"type": "string", "enum": ["c", "f"]}, {"type": "null"}]}}},
    "strict": True}}
ADD = {"type": "function", "function": {"name": "add", "parameters": {
    "type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer", "default": 0}},
    "required": ["a"]}}}


def sdk(server: LoopbackServer) -> OpenAI:
    return OpenAI(base_url=server.base_url, api_key=KEY, max_retries=0)


def stream(client: OpenAI, messages: list[dict[str, Any]], **kwargs: Any) -> list[Any]:
    return list(client.chat.completions.create(model="gpt-4o-mini", messages=messages, stream=True,
                                               stream_options={"include_usage": True}, **kwargs))


def call_deltas(chunks: list[Any]) -> list[dict[str, Any]]:
    return [call.model_dump(exclude_none=True) for chunk in chunks for choice in chunk.choices
            for call in choice.delta.tool_calls or []]


QUESTION = [{"role": "user", "content": "Weather in Paris, and 2+3?"}]


def test_parallel_calls_stream_their_arguments_in_fragments(loopback):
    loopback.queue(tool_calls=[{"name": "get_weather", "arguments": {"city": "Paris", "unit": None}, "id": "call_w"},
                               {"name": "add", "arguments": {"a": 2, "b": 3}, "id": "call_a"}], fragment=5)
    chunks = stream(sdk(loopback), QUESTION, tools=[WEATHER, ADD])
    deltas = call_deltas(chunks)
    weather_args, add_args = '{"city": "Paris", "unit": null}', '{"a": 2, "b": 3}'
    assert deltas[0] == {"index": 0, "id": "call_w", "type": "function",
                         "function": {"name": "get_weather", "arguments": ""}}
    fragments = [d["function"]["arguments"] for d in deltas if d["index"] == 0 and "id" not in d]
    assert fragments == [weather_args[i:i + 5] for i in range(0, len(weather_args), 5)]
    assert "".join(d["function"]["arguments"] for d in deltas if d["index"] == 1) == add_args
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"
    assert all(not (c.choices and c.choices[0].delta.content) for c in chunks)  # a call alone: no text
    usage = chunks[-1].usage
    counter = TokenCounter("gpt-4o-mini")
    assert usage.completion_tokens == counter.count_calls([("", "get_weather", weather_args), ("", "add", add_args)])
    assert usage.prompt_tokens == count_prompt_tokens(QUESTION, "gpt-4o-mini", [WEATHER, ADD])


def test_text_before_calls_and_malformed_arguments_are_sent_as_scripted(loopback):
    loopback.queue(reply="Let me check.", tool_calls=[{"name": "add", "arguments": '{"a": 2,'}])
    chunks = stream(sdk(loopback), QUESTION, tools=[ADD])
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Let me check."
    assert "".join(d["function"].get("arguments", "") for d in call_deltas(chunks)) == '{"a": 2,'


def test_the_whole_body_form_carries_the_calls(loopback):
    loopback.queue(tool_calls=[{"name": "add", "arguments": {"a": 1}, "id": "call_1"}])
    completion = sdk(loopback).chat.completions.create(model="gpt-4o-mini", messages=QUESTION, tools=[ADD])
    choice = completion.choices[0]
    assert (choice.finish_reason, choice.message.content) == ("tool_calls", None)
    assert [(c.id, c.type, c.function.name, c.function.arguments) for c in choice.message.tool_calls] == [
        ("call_1", "function", "add", '{"a": 1}')]


def test_a_full_round_trip_is_accepted(loopback):
    loopback.queue(tool_calls=[{"name": "add", "arguments": {"a": 1}, "id": "call_1"}])
    loopback.queue(reply="1")
    client = sdk(loopback)
    first = client.chat.completions.create(model="gpt-4o-mini", messages=QUESTION, tools=[ADD])
    messages = QUESTION + [first.choices[0].message.model_dump(exclude_none=True),
                           {"role": "tool", "tool_call_id": "call_1", "content": "1"}]
    second = client.chat.completions.create(model="gpt-4o-mini", messages=messages, tools=[ADD])
    assert second.choices[0].message.content == "1"
    assert second.usage.prompt_tokens == count_prompt_tokens(messages, "gpt-4o-mini", [ADD])


# -- what OpenAI rejects ---------------------------------------------------------------------------
ASKING = {"role": "assistant", "content": None, "tool_calls": [
    {"id": "call_1", "type": "function", "function": {"name": "add", "arguments": "{}"}},
    {"id": "call_2", "type": "function", "function": {"name": "add", "arguments": "{}"}}]}


@pytest.mark.parametrize("messages, extra, said, param", [
    ([{"role": "user", "content": "q"}, {"role": "tool", "tool_call_id": "call_1", "content": "1"}], {},
     "Invalid parameter: messages with role 'tool' must be a response to a preceeding message with 'tool_calls'.",
     "messages.[1].role"),
    ([{"role": "user", "content": "q"}, ASKING, {"role": "tool", "tool_call_id": "call_1", "content": "1"},
      {"role": "user", "content": "next"}], {},
     "An assistant message with 'tool_calls' must be followed by tool messages responding to each 'tool_call_id'. "
     "The following tool_call_ids did not have response messages: call_2", "messages.[1].role"),
    ([{"role": "user", "content": "q"}, ASKING, {"role": "tool", "tool_call_id": "call_9", "content": "1"}], {},
     "Invalid parameter: 'tool_call_id' of 'call_9' not found in 'tool_calls' of previous message.",
     "messages.[2].tool_call_id"),
    ([{"role": "user", "content": "q"}, ASKING, {"role": "tool", "content": "1"}], {},
     "Missing required parameter: 'messages[2].tool_call_id'.", "messages[2].tool_call_id"),
    (QUESTION, {"tool_choice": "auto"},
     "Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' are specified.", "tool_choice"),
    (QUESTION, {"tools": [{"type": "function", "function": {"name": "get weather"}}]},
     "Invalid 'tools[0].function.name': string does not match pattern. Expected a string that matches the pattern "
     "'^[a-zA-Z0-9_-]+$'.", "tools[0].function.name"),
    (QUESTION, {"tools": [{**ADD, "function": {**ADD["function"], "strict": True}}]},
     "Invalid schema for function 'add': In context=(), 'additionalProperties' is required to be supplied and to be "
     "false.", "tools[0].function.parameters"),
    (QUESTION, {"tools": [{"type": "function", "function": {"name": "f", "strict": True, "parameters": {
        "type": "object", "additionalProperties": False, "properties": {"x": {"type": "integer"}}, "required": []}}}]},
     "Invalid schema for function 'f': In context=(), 'required' is required to be supplied and to be an array "
     "including every key in properties. Missing 'x'.", "tools[0].function.parameters"),
    (QUESTION, {"tools": [{"type": "function", "function": {"name": "f", "strict": True, "parameters": {
        "type": "object", "additionalProperties": False, "required": ["x"],
        "properties": {"x": {"type": "integer", "default": 1}}}}}]},
     "Invalid schema for function 'f': In context=('properties', 'x'), 'default' is not permitted.",
     "tools[0].function.parameters"),
])
def test_what_openai_rejects_is_a_400_in_its_words(loopback, messages, extra, said, param):
    loopback.queue(reply="never sent")
    with pytest.raises(openai.BadRequestError) as caught:
        sdk(loopback).chat.completions.create(model="gpt-4o-mini", messages=messages, **extra)
    error = caught.value.body
    assert (error["message"], error["param"]) == (said, param)
    assert loopback.pending == 1  # a rejected request leaves the script for the next one


def test_a_bad_script_is_refused_with_what_is_wrong(loopback):
    for calls, said in (([], "tool_calls must be a non-empty list"), ([{"arguments": {}}], 'each tool call needs a '
                                                                      '"name" string'),
                        ([{"name": "f", "args": {}}], "unknown tool call field(s) args"),
                        ([{"name": "f", "arguments": 3}], "a tool call's arguments must be an object, or a string")):
        with pytest.raises(ValueError, match=f"^{said}".replace("(", r"\(").replace(")", r"\)")):
            loopback.queue(tool_calls=calls)
    with pytest.raises(ValueError, match="^fragment must be >= 1, got 0$"):
        loopback.queue(tool_calls=[{"name": "f"}], fragment=0)


# -- the offline demo ------------------------------------------------------------------------------
def run_demo_loop(client: OpenAI, question: str, tools: list[dict[str, Any]], **kwargs: Any) -> tuple[list, str]:
    """What a client of the demo does: ask, answer each call with a made-up result, ask again."""
    messages: list[dict[str, Any]] = [{"role": "user", "content": question}]
    calls: list = []
    for _ in range(3):
        message = client.chat.completions.create(model="loopback-demo", messages=messages, tools=tools,
                                                 **kwargs).choices[0].message
        if not message.tool_calls:
            return calls, message.content or ""
        calls += [(call.function.name, json.loads(call.function.arguments)) for call in message.tool_calls]
        messages.append(message.model_dump(exclude_none=True))
        messages += [{"role": "tool", "tool_call_id": call.id, "content": f"result of {call.function.name}"}
                     for call in message.tool_calls]
    raise AssertionError("the demo never answered")


def test_the_demo_calls_the_tools_a_question_names_then_says_what_they_returned(loopback):
    calls, text = run_demo_loop(sdk(loopback), 'Use add, then get_weather for "Lyon"', [WEATHER, ADD])
    assert calls == [("add", {"a": 0}), ("get_weather", {"city": "Lyon", "unit": None})]  # in the order named
    assert text == (f"{DISCLOSURE}\n\nThe tools answered:\n\n- `add` returned: result of add\n"
                    "- `get_weather` returned: result of get_weather\n")


def test_the_demo_answers_a_question_naming_no_tool_in_text_and_obeys_tool_choice(loopback):
    client = sdk(loopback)
    loopback.default_tokens = 20
    calls, text = run_demo_loop(client, "Hello there", [WEATHER])
    assert calls == [] and text.startswith(DISCLOSURE)
    assert run_demo_loop(client, "Call a tool please", [WEATHER, ADD])[0] == [
        ("get_weather", {"city": "jupyter_llmchat offline demo server, not a model", "unit": None})]
    assert run_demo_loop(client, "Hello", [WEATHER, ADD], tool_choice="required")[0][0][0] == "get_weather"
    assert run_demo_loop(client, "Hello", [WEATHER, ADD],
                         tool_choice={"type": "function", "function": {"name": "add"}})[0] == [("add", {"a": 0})]
    assert run_demo_loop(client, "Use add", [ADD], tool_choice="none")[0] == []
