"""A JSON Schema made to follow OpenAI's Structured Outputs rules for ``strict: true``, or the reason
it cannot be.

The rules (OpenAI's "Supported schemas" guide): the root is an object; every object lists all its
properties in ``required`` and sets ``additionalProperties: false``; only a subset of keywords is
accepted (``default``, ``minLength``, ``uniqueItems``... are rejected with a 400); ``$ref`` may not
have sibling keywords; ``allOf``, ``not`` and ``if`` are not supported; at most 10 levels of nesting.

What cannot be expressed (an open object such as ``dict[str, int]``, a tuple, an ``allOf`` of
several schemas, a root that is not an object) makes the schema non-strict: the caller falls back
to JSON mode. Keywords that only constrain values (``minLength``, ``uniqueItems``...) are dropped
from what is sent; the answer is still validated against the full schema afterwards, so a value
that breaks one of them gets the repair round like any other invalid answer.
"""

from __future__ import annotations

import copy
from typing import Any

MAX_DEPTH = 10  # levels of nested objects OpenAI accepts in a strict schema

# Keywords a strict schema may carry (everything else is dropped from what is sent).
KEPT = frozenset({
    "type", "properties", "required", "additionalProperties", "items", "enum", "const", "anyOf", "$ref",
    "$defs", "definitions", "description", "title", "pattern", "format", "minimum", "maximum",
    "exclusiveMinimum", "exclusiveMaximum", "multipleOf", "minItems", "maxItems",
})


class NotStrict(Exception):
    """The schema cannot follow the strict rules; the message says where and why."""


def to_strict(schema: dict[str, Any]) -> tuple[dict[str, Any] | None, str | None]:
    """(the strict form of ``schema``, None) or (None, why it cannot be strict). ``schema`` is not changed."""
    root = copy.deepcopy(schema)
    try:
        if _kind(root) != "object" or not isinstance(root.get("properties"), dict) or not root["properties"]:
            raise NotStrict("its root is not an object with properties")
        _strict(root, root, (), 0)
    except NotStrict as reason:
        return None, str(reason)
    return root, None


def _strict(node: Any, root: dict[str, Any], path: tuple[str, ...], depth: int) -> None:
    """Make ``node`` strict in place (``root`` resolves ``$ref``; ``depth`` counts nested objects)."""
    if not isinstance(node, dict):
        return
    where = "/".join(path) or "the root"
    ref = node.get("$ref")
    if isinstance(ref, str) and len(node) > 1:  # siblings of $ref are not allowed: inline the target
        target = _resolve(root, ref)
        merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
        node.clear()
        node.update(copy.deepcopy(merged))
    for keyword in ("patternProperties", "prefixItems", "propertyNames", "dependentSchemas"):
        if keyword in node:
            raise NotStrict(f"{where} uses {keyword}")
    all_of = node.pop("allOf", None)
    if isinstance(all_of, list):
        if len(all_of) != 1:
            raise NotStrict(f"{where} combines schemas with allOf")
        node.update({**copy.deepcopy(all_of[0]), **node})
        return _strict(node, root, path, depth)
    if "oneOf" in node:  # exactly-one-of: anyOf accepts the same answers, and we validate afterwards
        node["anyOf"] = node.pop("oneOf")
    for keyword in [k for k in node if k not in KEPT]:
        del node[keyword]
    if _kind(node) == "object" or "properties" in node:
        extra = node.get("additionalProperties")
        if extra not in (None, False):
            raise NotStrict(f"{where} is an open object (a dict with free keys)")
        properties = node.get("properties")
        if not isinstance(properties, dict) or not properties:
            raise NotStrict(f"{where} is an object without properties")
        if depth >= MAX_DEPTH:
            raise NotStrict(f"it nests objects more than {MAX_DEPTH} levels deep")
        node["additionalProperties"] = False
        node["required"] = list(properties)
        for name, sub in properties.items():
            _strict(sub, root, (*path, name), depth + 1)
    items = node.get("items")
    if isinstance(items, dict):
        _strict(items, root, (*path, "[]"), depth)
    elif items is not None:
        raise NotStrict(f"{where} gives items as a list (a tuple)")
    for variant in node.get("anyOf") or []:
        _strict(variant, root, path, depth)
    for keyword in ("$defs", "definitions"):
        for name, sub in (node.get(keyword) or {}).items():
            _strict(sub, root, (keyword, name), 0)


def _kind(node: dict[str, Any]) -> str | None:
    kind = node.get("type")
    if isinstance(kind, list):
        kinds = [k for k in kind if k != "null"]
        return kinds[0] if len(kinds) == 1 else None
    return kind if isinstance(kind, str) else None


def _resolve(root: dict[str, Any], ref: str) -> dict[str, Any]:
    if not ref.startswith("#/"):
        raise NotStrict(f"$ref {ref!r} points outside the schema")
    target: Any = root
    for key in ref[2:].split("/"):
        target = target.get(key) if isinstance(target, dict) else None
    if not isinstance(target, dict):
        raise NotStrict(f"$ref {ref!r} points to nothing")
    return target
