"""The loopback server's structured answers through the real openai SDK: schema-conforming answers
(bounds, formats, refs, unions), a schema read from the prompt in JSON mode, the scripted faults
(schema_invalid, refusal streamed in delta.refusal, length_cut), and strict schemas that break
OpenAI's rules rejected with its wording."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import openai
import pytest
from openai import OpenAI
from support.loopback_client import stream, streamed_text

from jupyter_llmchat.server import LoopbackServer
from jupyter_llmchat.server.structured import REFUSAL, SOURCE, schema_in_prompt

QUESTION = [{"role": "user", "content": "Describe a film."}]
FILM = {"type": "object", "additionalProperties": False, "required": ["title", "year", "rating", "genres", "released",
                                                                       "director", "cast"],
        "properties": {
            "title": {"type": "string"},
            "year": {"type": "integer", "minimum": 1888, "maximum": 2100},
            "rating": {"anyOf": [{"type": "null"}, {"type": "number", "exclusiveMinimum": 0}]},
            "genres": {"type": "array", "items": {"enum": ["drama", "horror"]}, "minItems": 2},
            "released": {"type": "string", "format": "date"},
            "director": {"$ref": "#/$defs/person"},
            "cast": {"type": "array", "items": {"$ref": "#/$defs/person"}, "maxItems": 1}},
        "$defs": {"person": {"type": "object", "additionalProperties": False, "required": ["name"],
                             "properties": {"name": {"type": "string"}}}}}


def sdk(server: LoopbackServer) -> OpenAI:
    return OpenAI(base_url=server.base_url, api_key="sk-test", max_retries=0)


def schema_format(schema: dict[str, Any], *, strict: bool = True, name: str = "film") -> dict[str, Any]:
    return {"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": strict}}


def streamed(client: OpenAI, **kwargs: Any) -> tuple[str, str, str | None]:
    """(content, refusal, finish_reason) of a streamed answer."""
    content, refusal, finish = [], [], None
    for chunk in client.chat.completions.create(model="gpt-4o-mini", messages=kwargs.pop("messages", QUESTION),
                                                stream=True, **kwargs):
        for choice in chunk.choices:
            content.append(choice.delta.content or "")
            refusal.append(choice.delta.refusal or "")
            finish = choice.finish_reason or finish
    return "".join(content), "".join(refusal), finish


def test_the_default_answer_conforms_to_the_schema(loopback):
    text, refusal, finish = streamed(sdk(loopback), response_format=schema_format(FILM))
    value = json.loads(text)
    jsonschema.validate(value, FILM)
    assert value == {"title": SOURCE, "year": 1888, "rating": 1, "genres": ["drama", "drama"],
                     "released": "2024-01-01", "director": {"name": SOURCE}, "cast": [{"name": SOURCE}]}
    assert (refusal, finish) == ("", "stop")


def test_json_mode_answers_with_an_instance_of_the_schema_written_in_the_prompt(loopback):
    messages = [{"role": "system", "content": "Be brief.\n\nAnswer with one JSON object that matches this JSON "
                                              f"Schema:\n{json.dumps(FILM)}"},
                *QUESTION]
    reply = sdk(loopback).chat.completions.create(model="gpt-4o-mini", messages=messages,
                                                  response_format={"type": "json_object"})
    jsonschema.validate(json.loads(reply.choices[0].message.content), FILM)


def test_schema_in_prompt_takes_the_last_schema_and_skips_other_braces() -> None:
    first = {"type": "object", "properties": {"a": {"type": "string"}}}
    last = {"type": "object", "properties": {"b": {"type": "integer"}}}
    messages = [{"role": "system", "content": f"old: {json.dumps(first)}"},
                {"role": "user", "content": f"a set {{1, 2}} and {{not json}}, then {json.dumps(last)} ok"},
                {"role": "assistant", "content": json.dumps(first)}]
    assert schema_in_prompt(messages) == last
    assert schema_in_prompt([{"role": "user", "content": '{"no": "schema"}'}]) is None


def test_schema_invalid_leaves_out_the_first_property(loopback):
    loopback.queue(fault="schema_invalid")
    text, _, finish = streamed(sdk(loopback), response_format=schema_format(FILM))
    value = json.loads(text)
    assert "title" not in value and value["year"] == 1888 and finish == "stop"
    with pytest.raises(jsonschema.ValidationError, match="'title' is a required property"):
        jsonschema.validate(value, FILM)


def test_length_cut_stops_half_way_with_finish_reason_length(loopback):
    whole, _, _ = streamed(sdk(loopback), response_format=schema_format(FILM))
    loopback.queue(fault="length_cut")
    text, _, finish = streamed(sdk(loopback), response_format=schema_format(FILM))
    assert finish == "length" and text == whole[: len(whole) // 2]
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)


def test_a_refusal_streams_in_delta_refusal_with_no_content(loopback):
    loopback.queue(fault="refusal")
    assert streamed(sdk(loopback), response_format=schema_format(FILM)) == ("", REFUSAL, "stop")
    loopback.queue(fault="refusal", reply="No films today.")
    reply = sdk(loopback).chat.completions.create(model="gpt-4o-mini", messages=QUESTION,
                                                  response_format=schema_format(FILM))
    message = reply.choices[0].message
    assert (message.content, message.refusal, reply.choices[0].finish_reason) == (None, "No films today.", "stop")


@pytest.mark.parametrize(("schema", "message"), [
    ({"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]},
     "Invalid schema for response_format 'film': In context=(), 'additionalProperties' is required to be supplied "
     "and to be false."),
    ({"type": "object", "additionalProperties": False, "properties": {"a": {"type": "string"}, "b": {"type": "string"}},
      "required": ["a"]},
     "Invalid schema for response_format 'film': In context=(), 'required' is required to be supplied and to be an "
     "array including every key in properties. Missing 'b'."),
    ({"type": "object", "additionalProperties": False, "required": ["a"],
      "properties": {"a": {"type": "string", "default": "x"}}},
     "Invalid schema for response_format 'film': In context=('properties', 'a'), 'default' is not permitted."),
    ({"type": "object", "additionalProperties": False, "required": ["a"], "properties": {"a": {"$ref": "#/$defs/p"}},
      "$defs": {"p": {"type": "object", "properties": {"n": {"type": "string"}}}}},
     "Invalid schema for response_format 'film': In context=('$defs', 'p'), 'additionalProperties' is required to be "
     "supplied and to be false."),
    ({"type": "array", "items": {"type": "string"}},
     "Invalid schema for response_format 'film': schema must be a JSON Schema of 'type: \"object\"', got "
     "'type: \"array\"'."),
])
def test_a_strict_schema_breaking_openais_rules_is_a_400(loopback, schema, message):
    with pytest.raises(openai.BadRequestError) as caught:
        sdk(loopback).chat.completions.create(model="gpt-4o-mini", messages=QUESTION,
                                              response_format=schema_format(schema))
    assert caught.value.body["message"] == message and caught.value.body["param"] == "response_format"
    # the same schema without strict is accepted, as OpenAI accepts it
    sdk(loopback).chat.completions.create(model="gpt-4o-mini", messages=QUESTION,
                                          response_format=schema_format(schema, strict=False))


def test_json_mode_default_replies_parse(loopback):
    client = sdk(loopback)
    messages = [{"role": "user", "content": "Reply in JSON: what is 2+2?"}]
    reply = client.chat.completions.create(model="gpt-4o-mini", messages=messages,
                                           response_format={"type": "json_object"})
    assert json.loads(reply.choices[0].message.content) == {
        "source": "jupyter_llmchat offline demo server, not a model", "question": messages[0]["content"]}
    schema = {"type": "object", "additionalProperties": False, "required": ["answer", "steps", "unit"],
              "properties": {"answer": {"type": "integer"},
                             "steps": {"type": "array", "items": {"$ref": "#/$defs/step"}},
                             "unit": {"anyOf": [{"type": "string", "enum": ["none", "apples"]},
                                                {"type": "null"}]}},
              "$defs": {"step": {"type": "object", "additionalProperties": False, "required": ["text", "ok"],
                                 "properties": {"text": {"type": "string"}, "ok": {"type": "boolean"}}}}}
    chunks = stream(client, messages, response_format={
        "type": "json_schema", "json_schema": {"name": "sum", "schema": schema, "strict": True}})
    assert json.loads(streamed_text(chunks)) == {
        "answer": 0, "steps": [{"text": "jupyter_llmchat offline demo server, not a model", "ok": False}],
        "unit": "none"}
