"""Structured answers: what a ``schema=`` is, how it is sent, and how an answer is checked against it.

A schema is a pydantic model, a dataclass, a TypedDict or a JSON Schema dict. ``response_format_for``
says how to ask for it: ``json_schema`` with ``strict: true`` when the model supports Structured
Outputs and the schema can follow the strict rules (``strict_schema``), else JSON mode, with the
schema put into the prompt (``schema_instruction``). ``parse_answer`` turns the answer's text into
the validated object (an instance of the model or dataclass; a dict for a TypedDict or a JSON
Schema) or raises ``StructuredAnswerError`` naming what is wrong and holding the raw text.

The concurrent map and the Batch API runner use these two functions for each row; ``Chatbot.ask``
adds the repair round (``structured_ask``). pydantic and jsonschema are imported on first use.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import re
import sys
import typing
from dataclasses import dataclass, field
from typing import Any, Literal

from .errors import ConfigurationError, StructuredAnswerError, one_line
from .models import ModelInfo
from .strict_schema import to_strict

__all__ = ["AnswerSchema", "StructuredAnswerError", "answer_schema", "parse_answer", "response_format_for",
           "schema_instruction", "supports_strict"]

SchemaKind = Literal["pydantic", "dataclass", "typeddict", "json_schema"]
# Model families that take response_format json_schema with strict: true (Structured Outputs).
STRICT_FAMILIES = ("gpt-4o", "gpt-4.1", "gpt-5", "o1", "o3", "o4")
# Members of those families that do not (the first gpt-4o snapshot, the o1 previews, the ChatGPT alias).
NOT_STRICT = ("gpt-4o-2024-05-13", "o1-preview", "o1-mini", "chatgpt-4o-latest")
MAX_ERRORS_SHOWN = 3  # validation errors named in one message
_NAME_OK = re.compile(r"[^a-zA-Z0-9_-]")
_FENCED = re.compile(r"^```[a-zA-Z]*\s*\n(.*)\n```$", re.DOTALL)


@dataclass(frozen=True)
class AnswerSchema:
    """One schema, ready to use: its name and JSON Schema, its strict form (or why there is none),
    and how an answer is validated against it."""

    name: str  # ^[a-zA-Z0-9_-]{1,64}$, as response_format's json_schema.name must be
    kind: SchemaKind
    json_schema: dict[str, Any]
    strict_schema: dict[str, Any] | None  # None: it cannot follow the strict rules (see not_strict)
    not_strict: str | None = None
    description: str | None = None
    source: Any = field(default=None, compare=False, repr=False)  # the class or the dict given
    _adapter: Any = field(default=None, compare=False, repr=False)  # pydantic TypeAdapter (classes)

    def validate(self, value: Any) -> Any:
        """The validated object for a decoded JSON ``value``; ValueError with one line if it does not match."""
        if self._adapter is not None:
            import pydantic

            try:
                return self._adapter.validate_python(value)
            except pydantic.ValidationError as error:
                raise ValueError(_pydantic_errors(error)) from None
        from jsonschema import validators  # type: ignore[import-untyped]

        validator = validators.validator_for(self.json_schema)(self.json_schema)
        found = sorted(validator.iter_errors(value), key=lambda e: [str(p) for p in e.absolute_path])
        if found:
            raise ValueError("; ".join(f"{e.json_path}: {e.message}" for e in found[:MAX_ERRORS_SHOWN])
                             + (f" (and {len(found) - MAX_ERRORS_SHOWN} more)" if len(found) > MAX_ERRORS_SHOWN
                                else ""))
        return value


def answer_schema(schema: Any) -> AnswerSchema:
    """The AnswerSchema for a pydantic model, dataclass, TypedDict or JSON Schema dict (or an
    AnswerSchema itself); ConfigurationError with one line for anything else."""
    if isinstance(schema, AnswerSchema):
        return schema
    if isinstance(schema, dict):
        try:
            return _from_dict(json.dumps(schema))  # key order kept: it is the order the model sees
        except TypeError:
            raise ConfigurationError("schema= as a dict must be a JSON Schema (JSON values only)") from None
    if isinstance(schema, type):
        try:
            return _from_class(schema)
        except TypeError:  # unhashable class: build it uncached
            return _from_class.__wrapped__(schema)
    raise ConfigurationError(f"schema= takes a pydantic model, a dataclass, a TypedDict or a JSON Schema dict, "
                             f"got {type(schema).__name__}")


def supports_strict(info: ModelInfo) -> bool:
    """True when ``info``'s model takes ``json_schema`` with ``strict: true`` (Structured Outputs).
    Models outside the table (local servers, Azure deployments named freely) get JSON mode."""
    name = info.name
    if any(name == bad or name.startswith(bad + "-") for bad in NOT_STRICT):
        return False
    return any(name == family or name.startswith(family + "-") for family in STRICT_FAMILIES)


def response_format_for(schema: Any, info: ModelInfo) -> tuple[dict[str, Any], bool]:
    """(request params, strict): ``response_format`` json_schema with ``strict: true`` when the
    model and the schema allow it, else JSON mode. With JSON mode (strict False) the prompt must
    carry ``schema_instruction(schema)``: the model is never told the schema otherwise."""
    spec = answer_schema(schema)
    if spec.strict_schema is not None and supports_strict(info):
        format_: dict[str, Any] = {"name": spec.name, "schema": spec.strict_schema, "strict": True}
        if spec.description:
            format_["description"] = spec.description
        return {"response_format": {"type": "json_schema", "json_schema": format_}}, True
    return {"response_format": {"type": "json_object"}}, False


def schema_instruction(schema: Any) -> str:
    """What the system message says in JSON mode: answer with one JSON object matching the schema
    (it names JSON, which OpenAI's JSON mode requires of the prompt)."""
    spec = answer_schema(schema)
    text = json.dumps(spec.json_schema, ensure_ascii=False, separators=(",", ":"))
    return ("Answer with one JSON object only (no prose, no code fence) that matches this JSON Schema:\n"
            f"{text}")


def parse_answer(text: str, schema: Any) -> Any:
    """The validated object in ``text``, or StructuredAnswerError (one line, ``.text`` the raw answer).

    A JSON code fence around the whole answer is tolerated (local models in JSON mode add one).
    """
    spec = answer_schema(schema)
    body = text.strip()
    fenced = _FENCED.match(body)
    if fenced:
        body = fenced.group(1).strip()
    try:
        value = json.loads(body)
    except json.JSONDecodeError as error:
        detail = "the answer is empty" if not body else (
            f"the answer is not JSON ({error.msg} at line {error.lineno} column {error.colno})")
        raise StructuredAnswerError(f"{detail}; expected {spec.name}", text=text) from None
    try:
        return spec.validate(value)
    except ValueError as error:
        raise StructuredAnswerError(one_line(f"the answer does not match {spec.name}: {error}"), text=text) from None


# -- building AnswerSchemas --------------------------------------------------------------------------
@functools.lru_cache(maxsize=64)
def _from_dict(text: str) -> AnswerSchema:
    from jsonschema import SchemaError, validators

    schema = json.loads(text)
    try:
        validators.validator_for(schema).check_schema(schema)
    except SchemaError as error:
        where = "/".join(str(p) for p in error.absolute_path) or "the root"
        raise ConfigurationError(one_line(f"schema= is not a valid JSON Schema (at {where}: {error.message})")) \
            from None
    title = schema.get("title")
    name = _name(title if isinstance(title, str) and title else "answer")
    description = schema.get("description") if isinstance(schema.get("description"), str) else None
    strict, why = to_strict(schema)
    return AnswerSchema(name, "json_schema", schema, strict, why, description, source=schema)


@functools.lru_cache(maxsize=64)
def _from_class(cls: type) -> AnswerSchema:
    import pydantic

    kind: SchemaKind
    if issubclass(cls, pydantic.BaseModel):
        kind = "pydantic"
    elif dataclasses.is_dataclass(cls):
        kind = "dataclass"
    elif _is_typeddict(cls):
        kind = "typeddict"
    else:
        raise ConfigurationError(f"schema= takes a pydantic model, a dataclass, a TypedDict or a JSON Schema dict; "
                                 f"{cls.__name__} is none of them")
    try:
        adapter = pydantic.TypeAdapter(_modern_typeddict(cls) if kind == "typeddict" else cls)
        schema = adapter.json_schema()
    except (pydantic.PydanticUserError, pydantic.PydanticSchemaGenerationError, NameError) as error:
        raise ConfigurationError(one_line(f"schema={cls.__name__} cannot be turned into a JSON Schema: {error}")) \
            from None
    strict, why = to_strict(schema)
    description = schema.get("description") if isinstance(schema.get("description"), str) else None
    return AnswerSchema(_name(cls.__name__), kind, schema, strict, why, description, source=cls, _adapter=adapter)


def _name(text: str) -> str:
    return _NAME_OK.sub("_", text)[:64] or "answer"


def _is_typeddict(cls: type) -> bool:
    import typing_extensions

    return typing.is_typeddict(cls) or typing_extensions.is_typeddict(cls)


def _modern_typeddict(cls: Any) -> Any:
    """pydantic refuses ``typing.TypedDict`` before Python 3.12: the same TypedDict rebuilt with
    ``typing_extensions`` (nested ones too), keeping its name, keys and which are required."""
    if sys.version_info >= (3, 12):
        return cls
    return _rebuild(cls, {})


def _rebuild(hint: Any, done: dict[int, Any]) -> Any:
    import typing_extensions

    if isinstance(hint, type) and typing.is_typeddict(hint) and type(hint).__module__ == "typing":
        if id(hint) in done:
            return done[id(hint)]
        hints = typing.get_type_hints(hint, include_extras=True)
        required = getattr(hint, "__required_keys__", frozenset(hints))
        fields = {key: (typing_extensions.Required if key in required else typing_extensions.NotRequired)[
            _rebuild(_unmarked(value), done)] for key, value in hints.items()}
        rebuilt = typing_extensions.TypedDict(hint.__name__, fields)  # type: ignore[misc]
        rebuilt.__doc__ = hint.__doc__
        rebuilt.__module__ = hint.__module__
        done[id(hint)] = rebuilt
        return rebuilt
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is None or not args:
        return hint
    if origin is typing.Annotated:
        parts = (_rebuild(args[0], done), *hint.__metadata__)
        return typing.Annotated[parts]
    if origin is typing.Literal:
        return hint
    rebuilt_args = tuple(_rebuild(arg, done) for arg in args)
    if rebuilt_args == args:
        return hint
    if origin is typing.Union or type(hint).__name__ == "UnionType":
        return typing.Union[rebuilt_args]  # noqa: UP007 - built from a tuple of members
    return origin[rebuilt_args if len(rebuilt_args) > 1 else rebuilt_args[0]]


def _unmarked(hint: Any) -> Any:
    """``hint`` without a Required[...] / NotRequired[...] around it (``__required_keys__`` says it)."""
    import typing_extensions

    marks = {typing_extensions.Required, typing_extensions.NotRequired, getattr(typing, "Required", None),
             getattr(typing, "NotRequired", None)}
    while typing.get_origin(hint) in marks - {None}:
        hint = typing.get_args(hint)[0]
    return hint


def _pydantic_errors(error: Any) -> str:
    found = error.errors(include_url=False)
    said = []
    for item in found[:MAX_ERRORS_SHOWN]:
        where = ".".join(str(part) for part in item.get("loc", ())) or "the object"
        said.append(f"{where}: {item.get('msg', 'invalid')}")
    more = f" (and {len(found) - MAX_ERRORS_SHOWN} more)" if len(found) > MAX_ERRORS_SHOWN else ""
    return "; ".join(said) + more
