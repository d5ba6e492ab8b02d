"""Structured answers, as a model gives them: JSON for ``json_object``, an instance of the schema for
``json_schema``, and the ways they go wrong, scripted.

So a client using ``response_format`` gets text it can parse, as it would from a model, and the
offline nature is still said plainly (in a "source" field, or in the string values). In JSON mode
a model reads the schema from the prompt: so does this server, when a message holds a JSON Schema.

Scripted faults (``Script.fault``): "schema_invalid" answers JSON that breaks the schema (a required
property missing), "refusal" refuses (the text streams in ``delta.refusal``, no content), and
"length_cut" stops half way through the JSON with finish_reason "length". ``strict_problem`` is
what OpenAI says of a schema sent with ``strict: true`` that breaks the strict rules.
"""

from __future__ import annotations

import json
from typing import Any

SOURCE = "jupyter_llmchat offline demo server, not a model"
REFUSAL = "I'm sorry, but I can't help with that request."
# Keywords OpenAI rejects in a strict schema ("'default' is not permitted", ...).
NOT_PERMITTED = ("default", "minLength", "maxLength", "uniqueItems", "patternProperties", "minProperties",
                 "maxProperties", "allOf", "not", "if", "then", "else", "dependentRequired", "dependentSchemas",
                 "prefixItems", "contains", "unevaluatedProperties", "propertyNames")
_SCAN_LIMIT = 64  # opening braces tried per message when looking for a schema in the prompt


def json_reply(response_format: dict[str, Any], question: str, messages: list[dict[str, Any]] | None = None,
               *, fault: str | None = None) -> str | None:
    """The JSON text to answer with, or None when the format is plain text. ``fault``
    "schema_invalid": an answer that breaks the schema; "length_cut": the first half of one."""
    kind = response_format.get("type")
    if kind == "json_object":
        schema = schema_in_prompt(messages or [])
        value: Any = _instance(schema, schema, 0) if schema else {"source": SOURCE, "question": question}
    elif kind == "json_schema":
        schema = (response_format.get("json_schema") or {}).get("schema") or {}
        value = _instance(schema, schema, 0)
    else:
        return None
    if fault == "schema_invalid":
        value = _broken(value)
    text = json.dumps(value, ensure_ascii=False)
    return text[: max(len(text) // 2, 1)] if fault == "length_cut" else text


def schema_in_prompt(messages: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The last JSON Schema object (one with "properties") written in the system or user messages."""
    decoder = json.JSONDecoder()
    for message in reversed(messages):
        content = message.get("content") if isinstance(message, dict) else None
        if message.get("role") not in ("system", "developer", "user") or not isinstance(content, str):
            continue
        start = content.find("{")
        for _ in range(_SCAN_LIMIT):
            if start < 0:
                break
            try:
                value, _end = decoder.raw_decode(content, start)
            except ValueError:
                value = None
            if isinstance(value, dict) and isinstance(value.get("properties"), dict):
                return value
            start = content.find("{", start + 1)
    return None


def strict_problem(response_format: dict[str, Any]) -> str | None:
    """OpenAI's 400 message for a ``strict: true`` json_schema that breaks the strict rules, or None."""
    spec = response_format.get("json_schema") or {}
    if not spec.get("strict"):
        return None
    schema = spec.get("schema")
    name = spec.get("name")
    if not isinstance(schema, dict):
        return f"Invalid schema for response_format '{name}': schema must be a JSON Schema of 'type: \"object\"'."
    if schema.get("type") != "object":
        return (f"Invalid schema for response_format '{name}': schema must be a JSON Schema of 'type: \"object\"', "
                f"got 'type: \"{schema.get('type')}\"'.")
    problem = _strict_node(schema, ())
    return f"Invalid schema for response_format '{name}': {problem}" if problem else None


def _strict_node(node: Any, context: tuple[str, ...]) -> str | None:
    if not isinstance(node, dict):
        return None
    where = f"In context={context!r}"
    for keyword in NOT_PERMITTED:
        if keyword in node:
            return f"{where}, '{keyword}' is not permitted."
    properties = node.get("properties")
    if node.get("type") == "object" or isinstance(properties, dict):
        if node.get("additionalProperties") is not False:
            return f"{where}, 'additionalProperties' is required to be supplied and to be false."
        listed = node.get("required")
        required: list[Any] = listed if isinstance(listed, list) else []
        missing = [key for key in properties or {} if key not in required]
        if missing:
            return (f"{where}, 'required' is required to be supplied and to be an array including every key in "
                    f"properties. Missing '{missing[0]}'.")
        for key, sub in (properties or {}).items():
            problem = _strict_node(sub, (*context, "properties", key))
            if problem:
                return problem
    children: list[tuple[tuple[str, ...], Any]] = [((*context, "items"), node.get("items"))]
    children += [((*context, "anyOf", str(i)), sub) for i, sub in enumerate(node.get("anyOf") or [])]
    for defs in ("$defs", "definitions"):
        children += [((defs, key), sub) for key, sub in (node.get(defs) or {}).items()]
    for where_, sub in children:
        problem = _strict_node(sub, where_)
        if problem:
            return problem
    return None


def _broken(value: Any) -> Any:
    """``value`` made invalid for the schema it came from: its first property removed (every
    property is required in a strict schema), or a text that is no object at all."""
    if isinstance(value, dict) and value:
        first = next(iter(value))
        return {key: item for key, item in value.items() if key != first}
    return {"unexpected": SOURCE}


def _instance(schema: Any, root: dict[str, Any], depth: int) -> Any:
    """A small value valid for ``schema``: every property filled, first choice of unions and enums,
    bounds and formats respected."""
    if not isinstance(schema, dict) or depth > 16:
        return None
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/"):
        target: Any = root
        for key in ref[2:].split("/"):
            target = target.get(key, {}) if isinstance(target, dict) else {}
        return _instance({**target, **{k: v for k, v in schema.items() if k != "$ref"}}, root, depth + 1)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for union in ("anyOf", "oneOf"):
        if schema.get(union):
            variants = schema[union]
            chosen = next((v for v in variants if isinstance(v, dict) and v.get("type") != "null"), variants[0])
            return _instance(chosen, root, depth + 1)
    if schema.get("allOf"):
        merged: dict[str, Any] = {}
        for part in schema["allOf"]:
            merged.update(part if isinstance(part, dict) else {})
        return _instance(merged, root, depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object" or "properties" in schema:
        properties = schema.get("properties") or {}
        return {name: _instance(sub, root, depth + 1) for name, sub in properties.items()}
    if kind == "array":
        count = min(max(int(schema.get("minItems", 1)), 0), 3)
        if "maxItems" in schema:
            count = min(count, int(schema["maxItems"]))
        return [_instance(schema.get("items"), root, depth + 1) for _ in range(count)]
    if kind in ("integer", "number"):
        return _number(schema, integer=kind == "integer")
    if kind == "string":
        return _string(schema)
    return {"boolean": False, "null": None}.get(str(kind))


def _number(schema: dict[str, Any], *, integer: bool) -> int | float:
    low = schema.get("minimum", schema.get("exclusiveMinimum"))
    high = schema.get("maximum", schema.get("exclusiveMaximum"))
    value: float = 0
    if isinstance(low, (int, float)):
        value = low + (1 if "exclusiveMinimum" in schema and "minimum" not in schema else 0)
    if isinstance(high, (int, float)) and value > high:
        value = high
    return int(value) if integer else value


_FORMATS = {"date-time": "2024-01-01T00:00:00Z", "date": "2024-01-01", "time": "00:00:00Z", "email": "demo@example.com",
            "uri": "https://example.com/", "uuid": "00000000-0000-4000-8000-000000000000", "ipv4": "127.0.0.1",
            "hostname": "localhost", "duration": "P1D", "ipv6": "::1"}


def _string(schema: dict[str, Any]) -> str:
    text = _FORMATS.get(str(schema.get("format")), SOURCE)
    low, high = schema.get("minLength"), schema.get("maxLength")
    if isinstance(low, int) and len(text) < low:
        text = text + "." * (low - len(text))
    if isinstance(high, int) and len(text) > high:
        text = text[:high]
    return text
