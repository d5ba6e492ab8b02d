"""structured: each schema kind (pydantic model, dataclass, TypedDict, JSON Schema dict) becomes the
response_format sent (strict json_schema or JSON mode, by model and by schema) and the parser of
its answers, whose errors are one line naming what is wrong and keeping the raw text."""

from __future__ import annotations

import dataclasses
import typing
from typing import Literal, NotRequired, Optional, TypedDict

import pydantic
import pytest
import typing_extensions

from jupyter_llmchat.core.errors import ConfigurationError, StructuredAnswerError
from jupyter_llmchat.core.models import model_info
from jupyter_llmchat.core.structured import (
    answer_schema,
    parse_answer,
    response_format_for,
    schema_instruction,
    supports_strict,
)


class Movie(pydantic.BaseModel):
    """A film and what we think of it."""

    title: str
    year: int
    rating: float | None = None


@dataclasses.dataclass
class Ticket:
    seat: str
    price: float = 10.0


class Cast(TypedDict):
    name: str


class Credits(TypedDict, total=False):  # typing.TypedDict, which pydantic refuses before Python 3.12
    film: str
    cast: list[Cast]
    note: NotRequired[Optional[str]]  # noqa: UP045 - the typing spelling users write is the point


LABEL = {"title": "Label", "type": "object", "properties": {
    "label": {"enum": ["spam", "ham"]}, "score": {"type": "number", "minimum": 0, "maximum": 1}},
    "required": ["label"]}
FREE_MAP = {"type": "object", "properties": {"counts": {"type": "object", "additionalProperties": {"type": "integer"}}}}


def test_a_pydantic_model_is_sent_strict_and_parsed_into_an_instance() -> None:
    params, strict = response_format_for(Movie, model_info("gpt-4o-mini"))
    assert strict is True
    assert params == {"response_format": {"type": "json_schema", "json_schema": {
        "name": "Movie", "strict": True, "description": "A film and what we think of it.",
        "schema": {"title": "Movie", "description": "A film and what we think of it.", "type": "object",
                   "additionalProperties": False, "required": ["title", "year", "rating"],
                   "properties": {"title": {"title": "Title", "type": "string"},
                                  "year": {"title": "Year", "type": "integer"},
                                  "rating": {"anyOf": [{"type": "number"}, {"type": "null"}], "title": "Rating"}}}}}}
    assert parse_answer('{"title": "Alien", "year": 1979, "rating": null}', Movie) == Movie(
        title="Alien", year=1979, rating=None)


def test_a_dataclass_is_parsed_into_a_dataclass_instance() -> None:
    params, strict = response_format_for(Ticket, model_info("gpt-4.1"))
    assert strict is True
    schema = params["response_format"]["json_schema"]["schema"]
    assert schema["required"] == ["seat", "price"] and "default" not in schema["properties"]["price"]
    assert parse_answer('{"seat": "12A", "price": 9.5}', Ticket) == Ticket("12A", 9.5)


def test_a_typing_typeddict_nested_and_optional_keys_included_is_parsed_into_a_dict() -> None:
    assert answer_schema(Credits).kind == "typeddict"
    params, strict = response_format_for(Credits, model_info("gpt-5-mini"))
    assert strict is True
    sent = params["response_format"]["json_schema"]["schema"]
    assert sent["required"] == ["film", "cast", "note"]
    assert sent["$defs"]["Cast"] == {"title": "Cast", "type": "object", "additionalProperties": False,
                                     "required": ["name"], "properties": {"name": {"title": "Name", "type": "string"}}}
    parsed = parse_answer('{"film": "Alien", "cast": [{"name": "Sigourney Weaver"}]}', Credits)
    assert parsed == {"film": "Alien", "cast": [{"name": "Sigourney Weaver"}]} and type(parsed) is dict


def test_a_typing_extensions_typeddict_works_as_it_is() -> None:
    class Point(typing_extensions.TypedDict):
        x: int
        y: int

    assert parse_answer('{"x": 1, "y": 2}', Point) == {"x": 1, "y": 2}


def test_a_json_schema_dict_is_sent_under_its_title_and_parsed_into_a_dict() -> None:
    params, strict = response_format_for(LABEL, model_info("gpt-4o"))
    assert strict is True
    assert params["response_format"]["json_schema"]["name"] == "Label"
    assert params["response_format"]["json_schema"]["schema"]["required"] == ["label", "score"]
    assert parse_answer('{"label": "spam", "score": 0.9}', LABEL) == {"label": "spam", "score": 0.9}


@pytest.mark.parametrize("model", ["gpt-4", "gpt-3.5-turbo", "gpt-4-turbo", "gpt-4o-2024-05-13", "chatgpt-4o-latest",
                                   "llama3.2", "my-azure-deployment"])
def test_models_without_structured_outputs_get_json_mode(model) -> None:
    assert not supports_strict(model_info(model))
    assert response_format_for(Movie, model_info(model)) == ({"response_format": {"type": "json_object"}}, False)


@pytest.mark.parametrize("model", ["gpt-4o", "gpt-4o-2024-08-06", "gpt-4o-mini", "gpt-4.1-nano", "gpt-5", "o1",
                                   "o3-mini", "o4-mini"])
def test_models_with_structured_outputs_get_strict(model) -> None:
    assert supports_strict(model_info(model))


def test_a_schema_that_cannot_be_strict_gets_json_mode_even_on_a_strict_model() -> None:
    assert answer_schema(FREE_MAP).not_strict == "counts is an open object (a dict with free keys)"
    assert response_format_for(FREE_MAP, model_info("gpt-4o")) == ({"response_format": {"type": "json_object"}}, False)
    assert parse_answer('{"counts": {"a": 1}}', FREE_MAP) == {"counts": {"a": 1}}


def test_the_json_mode_instruction_names_json_and_carries_the_full_schema() -> None:
    assert schema_instruction(LABEL) == (
        "Answer with one JSON object only (no prose, no code fence) that matches this JSON Schema:\n"
        '{"title":"Label","type":"object","properties":{"label":{"enum":["spam","ham"]},'
        '"score":{"type":"number","minimum":0,"maximum":1}},"required":["label"]}')


def test_an_answer_wrapped_in_a_json_fence_is_read() -> None:
    assert parse_answer('```json\n{"seat": "1B"}\n```\n', Ticket) == Ticket("1B")


@pytest.mark.parametrize(("text", "schema", "message"), [
    ("", Movie, "the answer is empty; expected Movie"),
    ("Sure! Here it is", Movie, "the answer is not JSON (Expecting value at line 1 column 1); expected Movie"),
    ('{"title": "Alien"', Movie, "the answer is not JSON (Expecting ',' delimiter at line 1 column 18); expected Movie"),
    ('{"title": "Alien", "year": "late seventies"}', Movie,
     "the answer does not match Movie: year: Input should be a valid integer, unable to parse string as an integer"),
    ('{"price": 3}', Ticket, "the answer does not match Ticket: seat: Field required"),
    ('{"cast": [{}], "film": 3}', Credits,
     "the answer does not match Credits: film: Input should be a valid string; cast.0.name: Field required"),
    ('{"label": "eggs", "score": 2}', LABEL,
     "the answer does not match Label: $.label: 'eggs' is not one of ['spam', 'ham']; "
     "$.score: 2 is greater than the maximum of 1"),
    ("[1, 2]", LABEL, "the answer does not match Label: $: [1, 2] is not of type 'object'"),
])
def test_an_invalid_answer_is_one_line_holding_the_raw_text(text, schema, message) -> None:
    with pytest.raises(StructuredAnswerError) as caught:
        parse_answer(text, schema)
    assert str(caught.value) == message
    assert caught.value.text == text and caught.value.reason == "invalid"


def test_many_validation_errors_are_counted_not_listed() -> None:
    schema = {"type": "object", "properties": {k: {"type": "integer"} for k in "abcde"}}
    with pytest.raises(StructuredAnswerError) as caught:
        parse_answer('{"a": "1", "b": "2", "c": "3", "d": "4", "e": "5"}', schema)
    assert str(caught.value) == ("the answer does not match answer: $.a: '1' is not of type 'integer'; "
                                 "$.b: '2' is not of type 'integer'; $.c: '3' is not of type 'integer' (and 2 more)")


@pytest.mark.parametrize(("schema", "message"), [
    (int, "schema= takes a pydantic model, a dataclass, a TypedDict or a JSON Schema dict; int is none of them"),
    ("Movie", "schema= takes a pydantic model, a dataclass, a TypedDict or a JSON Schema dict, got str"),
    ({"type": "objekt"}, "schema= is not a valid JSON Schema (at type: 'objekt' is not valid under any of the given "
                         "schemas)"),
    ({"type": "object", "default": {1, 2}}, "schema= as a dict must be a JSON Schema (JSON values only)"),
])
def test_what_is_not_a_schema_is_one_configuration_error(schema, message) -> None:
    with pytest.raises(ConfigurationError) as caught:
        answer_schema(schema)
    assert str(caught.value) == message


def test_schema_names_are_made_acceptable_to_the_api() -> None:
    assert answer_schema({"title": "Résumé entry", "type": "object", "properties": {"a": {"type": "string"}}}).name \
        == "R_sum__entry"
    assert answer_schema({"title": "x" * 80, "type": "object", "properties": {}}).name == "x" * 64


def test_literal_and_enum_fields_are_kept_as_enums() -> None:
    @dataclasses.dataclass
    class Verdict:
        label: Literal["spam", "ham"]

    params, _ = response_format_for(Verdict, model_info("gpt-4o"))
    assert params["response_format"]["json_schema"]["schema"]["properties"]["label"] == {
        "enum": ["spam", "ham"], "title": "Label", "type": "string"}
    with pytest.raises(StructuredAnswerError, match=r"label: Input should be 'spam' or 'ham'"):
        parse_answer('{"label": "eggs"}', Verdict)


def test_a_class_with_an_unresolvable_annotation_is_a_configuration_error() -> None:
    class Broken(TypedDict):
        x: "Undefined"  # type: ignore[name-defined]  # noqa: F821, UP037 - a name that does not exist

    with pytest.raises(ConfigurationError, match=r"^schema=Broken cannot be turned into a JSON Schema: "):
        answer_schema(Broken)
    assert typing.is_typeddict(Broken)
