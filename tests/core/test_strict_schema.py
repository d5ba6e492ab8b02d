"""to_strict: a JSON Schema brought to OpenAI's strict rules (every object closed and fully
required, rejected keywords dropped, $ref siblings inlined), or the exact reason it cannot be."""

from __future__ import annotations

import copy

import pytest

from jupyter_llmchat.core.strict_schema import MAX_DEPTH, to_strict


def test_objects_are_closed_and_every_property_required_recursively() -> None:
    schema = {"type": "object", "properties": {
        "name": {"type": "string"},
        "address": {"type": "object", "properties": {"city": {"type": "string"}, "zip": {"type": "string"}},
                    "required": ["city"]},
        "tags": {"type": "array", "items": {"type": "object", "properties": {"t": {"type": "string"}}}},
    }, "required": ["name"]}
    original = copy.deepcopy(schema)
    strict, why = to_strict(schema)
    assert why is None
    assert strict == {"type": "object", "additionalProperties": False, "required": ["name", "address", "tags"],
                      "properties": {
                          "name": {"type": "string"},
                          "address": {"type": "object", "additionalProperties": False, "required": ["city", "zip"],
                                      "properties": {"city": {"type": "string"}, "zip": {"type": "string"}}},
                          "tags": {"type": "array", "items": {"type": "object", "additionalProperties": False,
                                                              "required": ["t"],
                                                              "properties": {"t": {"type": "string"}}}}}}
    assert schema == original  # the given schema is left as it was


def test_rejected_keywords_are_dropped_and_supported_ones_kept() -> None:
    schema = {"type": "object", "properties": {
        "a": {"type": "string", "minLength": 2, "maxLength": 9, "default": "x", "pattern": "^[a-z]+$",
              "examples": ["ab"]},
        "b": {"type": "array", "items": {"type": "integer", "minimum": 0}, "uniqueItems": True, "maxItems": 3},
    }}
    strict, _ = to_strict(schema)
    assert strict is not None
    assert strict["properties"] == {"a": {"type": "string", "pattern": "^[a-z]+$"},
                                    "b": {"type": "array", "items": {"type": "integer", "minimum": 0}, "maxItems": 3}}


def test_ref_with_siblings_is_inlined_and_defs_are_made_strict() -> None:
    schema = {"type": "object", "$defs": {"Kind": {"type": "object", "properties": {"k": {"type": "string"}}}},
              "properties": {"plain": {"$ref": "#/$defs/Kind"},
                             "described": {"$ref": "#/$defs/Kind", "description": "which kind"}}}
    strict, _ = to_strict(schema)
    assert strict is not None
    assert strict["properties"]["plain"] == {"$ref": "#/$defs/Kind"}
    assert strict["properties"]["described"] == {"type": "object", "description": "which kind",
                                                 "additionalProperties": False, "required": ["k"],
                                                 "properties": {"k": {"type": "string"}}}
    assert strict["$defs"]["Kind"]["additionalProperties"] is False


def test_one_of_becomes_any_of_and_a_single_all_of_is_merged() -> None:
    schema = {"type": "object", "properties": {
        "u": {"oneOf": [{"type": "string"}, {"type": "integer"}]},
        "m": {"allOf": [{"type": "object", "properties": {"x": {"type": "number"}}}], "description": "merged"},
    }}
    strict, _ = to_strict(schema)
    assert strict is not None
    assert strict["properties"]["u"] == {"anyOf": [{"type": "string"}, {"type": "integer"}]}
    assert strict["properties"]["m"] == {"type": "object", "description": "merged", "additionalProperties": False,
                                         "required": ["x"], "properties": {"x": {"type": "number"}}}


@pytest.mark.parametrize(("schema", "reason"), [
    ({"type": "array", "items": {"type": "string"}}, "its root is not an object with properties"),
    ({"type": "object"}, "its root is not an object with properties"),
    ({"type": "object", "properties": {"m": {"type": "object", "additionalProperties": {"type": "integer"}}}},
     "m is an open object (a dict with free keys)"),
    ({"type": "object", "properties": {"m": {"type": "object"}}}, "m is an object without properties"),
    ({"type": "object", "properties": {"t": {"type": "array", "prefixItems": [{"type": "string"}]}}},
     "t uses prefixItems"),
    ({"type": "object", "properties": {"b": {"allOf": [{"type": "object"}, {"type": "object"}]}}},
     "b combines schemas with allOf"),
    ({"type": "object", "properties": {"x": {"$ref": "http://example.com/s.json", "description": "far"}}},
     "$ref 'http://example.com/s.json' points outside the schema"),
])
def test_what_cannot_be_strict_says_why(schema, reason) -> None:
    assert to_strict(schema) == (None, reason)


def test_nesting_deeper_than_openai_allows_is_not_strict() -> None:
    schema: dict = {"type": "object", "properties": {"leaf": {"type": "string"}}}
    for _ in range(MAX_DEPTH):
        schema = {"type": "object", "properties": {"inner": schema}}
    assert to_strict(schema) == (None, f"it nests objects more than {MAX_DEPTH} levels deep")
    assert to_strict(schema["properties"]["inner"])[1] is None
