"""Default replies in JSON mode: an object for ``json_object``, an instance of the schema for ``json_schema``.

So a client using ``response_format`` gets text it can parse, as it would from a model, and the
offline nature is still said plainly (in a "source" field, or in the string values).
"""

from __future__ import annotations

import json
from typing import Any

SOURCE = "jupyter_llmchat offline demo server, not a model"


def json_reply(response_format: dict[str, Any], question: str) -> str | None:
    """The JSON text to answer with, or None when the format is plain text."""
    kind = response_format.get("type")
    if kind == "json_object":
        return json.dumps({"source": SOURCE, "question": question}, ensure_ascii=False)
    if kind == "json_schema":
        schema = (response_format.get("json_schema") or {}).get("schema") or {}
        return json.dumps(_instance(schema, schema, 0), ensure_ascii=False)
    return None


def _instance(schema: Any, root: dict[str, Any], depth: int) -> Any:
    """A small value valid for ``schema``: every property filled, first choice of unions and enums."""
    if not isinstance(schema, dict) or depth > 16:
        return None
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/"):
        target: Any = root
        for key in ref[2:].split("/"):
            target = target.get(key, {}) if isinstance(target, dict) else {}
        return _instance(target, root, depth + 1)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for union in ("anyOf", "oneOf", "allOf"):
        if schema.get(union):
            return _instance(schema[union][0], root, depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object" or "properties" in schema:
        properties = schema.get("properties") or {}
        return {name: _instance(sub, root, depth + 1) for name, sub in properties.items()}
    if kind == "array":
        return [_instance(schema.get("items"), root, depth + 1)] * min(int(schema.get("minItems", 1)), 3)
    return {"string": SOURCE, "integer": 0, "number": 0, "boolean": False}.get(str(kind))
