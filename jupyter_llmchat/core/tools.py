"""Tools: plain Python functions the model may call, described to it by their own code.

``Tool(function)`` (or ``@tool``, ``@bot.tool``) reads everything from the function (sync or async):

- its name, and its description: the docstring's text before any section;
- the JSON Schema of its parameters, from the signature and the type hints (str, int, float,
  bool, lists, tuples, dicts, ``Optional`` and other unions, ``Literal``, ``Enum``, pydantic
  models, dataclasses, TypedDicts, defaults; ``Annotated[int, Field(ge=0)]`` constraints too),
  with each parameter's text from the docstring (Google ``Args:``, NumPy ``Parameters`` or reST
  ``:param x:`` style) or from ``Annotated[str, "text"]``.

``Tool.spec(strict=True)`` is the definition OpenAI's strict mode takes (every property required,
``additionalProperties: false`` on every object, no ``default``: a parameter that has a default
is a union with null, and null means its default); a function whose parameters cannot be said
that way (a bare ``dict``, ``Any``, a tuple) is sent without ``strict``. ``supports_strict``
says which models take it.

``Tool.parse(arguments)`` checks the JSON text the model sent against the same schema (pydantic,
lax as the model's JSON needs: "3" is a fine int) and returns the keyword arguments; a malformed
or invalid call raises ``InvalidArguments`` with one line meant for the model, never for the user.
Running calls (threads, approval, stop) is ``tool_loop``'s job; ``result_text`` is what a call's
return value looks like to the model, cut to a size limit that the cut text states.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import inspect
import json
import re
import typing
from collections.abc import Callable, Iterable, Iterator, MutableMapping
from dataclasses import dataclass, field
from typing import Any

from . import errors
from .models import ModelInfo
from .tool_sets import expanded

DEFAULT_MAX_RESULT_CHARS = 20_000  # about 5,000 tokens: what one result may add to the prompt
_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_EMPTY = inspect.Parameter.empty
# Docstring sections that end a parameter list (Google "Returns:", NumPy "Returns\n-------").
_GOOGLE_ARGS = re.compile(r"^(Args|Arguments|Parameters|Params|Keyword Args|Keyword Arguments|Other Parameters)"
                          r"\s*:\s*$")
_GOOGLE_ENTRY = re.compile(r"^(\s+)(\*{0,2}\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$")
_SECTIONS = {"Returns", "Return", "Raises", "Yields", "Yield", "Examples", "Example", "Notes", "Note", "See Also",
             "Warnings", "Warning", "Attributes", "References", "Todo"}
_NUMPY_RULE = re.compile(r"^-{3,}\s*$")
_NUMPY_ARGS = ("Parameters", "Other Parameters", "Keyword Arguments")
_REST_PARAM = re.compile(r"^:(?:param|parameter|arg|argument|key|keyword)\s+(?:[^:]*\s)?(\*{0,2}\w+)\s*:(.*)$")
_REST_FIELD = re.compile(r"^:\w[^:]*:")


class InvalidArguments(Exception):
    """A call the model got wrong (unknown tool, malformed JSON, arguments that fail the schema):
    ``str(error)`` is one line telling the model what to fix."""


class Tool:
    """A function the model may call: its name, description and parameter schema, read from the
    function itself (see the module docstring), and whether each call needs the user's consent.

    ``confirm=True``: every call asks the user first (see ``tool_loop``: an approver, buttons in a
    notebook, or a prompt on a terminal); a declined call tells the model "the user declined".
    ``max_result_chars`` cuts long results (default 20,000 characters; the cut is stated). Calling
    the Tool calls the function, so a decorated function stays usable as it was.
    """

    def __init__(self, function: Callable[..., Any], *, name: str | None = None, description: str | None = None,
                 confirm: bool = False, max_result_chars: int | None = None,
                 described: Described | None = None) -> None:
        if isinstance(function, Tool):
            function = function.function  # a Tool made again, with other options
        if not callable(function):
            raise errors.ConfigurationError(f"a tool must be a function, got {type(function).__name__}")
        self.function: Callable[..., Any] = function
        self.name = name or getattr(function, "__name__", "") or type(function).__name__
        if not _NAME.match(self.name):
            raise errors.ConfigurationError(
                f"{self.name!r} cannot be a tool's name: use 1-64 letters, digits, _ or - "
                "(give one with name=, e.g. tool(f, name=\"lookup\"))")
        if described is None or described.name != self.name:
            described = self._describe(function)
        self.described = described
        self.description = described.summary if description is None else description
        self.confirm = confirm
        if max_result_chars is not None and (isinstance(max_result_chars, bool) or not isinstance(
                max_result_chars, int) or max_result_chars < 1):
            raise errors.ConfigurationError(f"max_result_chars must be a whole number >= 1, got {max_result_chars!r}")
        self.max_result_chars = max_result_chars or DEFAULT_MAX_RESULT_CHARS
        self.is_async = _is_async(function)
        self.parameters: dict[str, Any] = described.parameters
        self.strict_parameters: dict[str, Any] | None = described.strict_parameters

    def _describe(self, function: Callable[..., Any]) -> Described:
        summary, documented = parse_docstring(inspect.getdoc(function) or "")
        model, aliases, positional = self._arguments_model(documented)
        schema = _tidy(model.model_json_schema(by_alias=True))
        return Described(self.name, summary, model, aliases, tuple(positional), schema, strict_schema(schema))

    # -- description -----------------------------------------------------------------------------
    def spec(self, *, strict: bool = False) -> dict[str, Any]:
        """The tool's definition as the ``tools`` request parameter takes it; ``strict`` when asked
        for and the parameters can be said in strict mode."""
        function: dict[str, Any] = {"name": self.name}
        if self.description:
            function["description"] = self.description
        if strict and self.strict_parameters is not None:
            function["parameters"] = self.strict_parameters
            function["strict"] = True
        else:
            function["parameters"] = self.parameters
        return {"type": "function", "function": function}

    def signature(self) -> str:
        """``name(city: str, days: int = 3)``, as ``%chat tools`` lists it."""
        try:
            return f"{self.name}{inspect.signature(self.function, eval_str=True)}"
        except (TypeError, ValueError, NameError):
            try:
                return f"{self.name}{inspect.signature(self.function)}"
            except (TypeError, ValueError):
                return f"{self.name}(...)"

    # -- calling ---------------------------------------------------------------------------------
    def parse(self, arguments: str) -> dict[str, Any]:
        """The keyword arguments for a call whose JSON text is ``arguments``, validated against the
        schema; raises InvalidArguments (one line, for the model) when they are wrong."""
        import pydantic

        try:
            data = json.loads(arguments) if arguments.strip() else {}
        except ValueError as error:
            raise InvalidArguments(f"the arguments of {self.name} are not valid JSON ({error}); send one JSON "
                                   "object") from None
        if not isinstance(data, dict):
            raise InvalidArguments(f"the arguments of {self.name} must be a JSON object, got "
                                   f"{type(data).__name__}")
        data = _drop_default_nulls(data, self.parameters, self.parameters)
        try:
            model = self.described.model.model_validate(data)
        except pydantic.ValidationError as error:
            problems = "; ".join(f"{'.'.join(str(part) for part in problem['loc']) or 'arguments'}: {problem['msg']}"
                                 for problem in error.errors(include_url=False))
            raise InvalidArguments(errors.one_line(f"invalid arguments for {self.name}: {problems}", 500)) from None
        return {alias: getattr(model, field) for field, alias in self.described.aliases.items()}

    def invoke(self, arguments: dict[str, Any]) -> Any:
        """Call the function with parsed ``arguments`` (an async one returns its coroutine)."""
        keywords = dict(arguments)
        positional = [keywords.pop(name) for name in self.described.positional if name in keywords]
        return self.function(*positional, **keywords)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.function(*args, **kwargs)

    def __repr__(self) -> str:
        return f"Tool({self.signature()}{', confirm=True' if self.confirm else ''})"

    # -- the schema ------------------------------------------------------------------------------
    def _arguments_model(self, documented: dict[str, str]) -> tuple[Any, dict[str, str], list[str]]:
        """A pydantic model of the parameters (fields p0, p1, ... aliased to the parameters' names,
        so any name works, even one pydantic keeps for itself), field -> parameter name, and the
        positional-only parameters."""
        import pydantic

        try:
            signature = inspect.signature(self.function)
            hints = typing.get_type_hints(_hinted(self.function), include_extras=True)
        except NameError as error:
            raise errors.ConfigurationError(
                f"cannot read the parameters of tool {self.name!r}: {error} (a type its hints name must be one "
                "its module can see, not one defined inside a function)") from None
        except (TypeError, ValueError) as error:
            raise errors.ConfigurationError(f"cannot read the parameters of tool {self.name!r}: {error}") from None
        fields: dict[str, Any] = {}
        aliases: dict[str, str] = {}
        positional: list[str] = []
        for index, parameter in enumerate(signature.parameters.values()):
            if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
                raise errors.ConfigurationError(
                    f"tool {self.name!r} takes *{parameter.name}: a tool's parameters must be named ones, each "
                    "with a type, so the model knows what to send")
            if parameter.kind is parameter.POSITIONAL_ONLY:
                positional.append(parameter.name)
            annotation = hints.get(parameter.name, Any)
            default = ... if parameter.default is _EMPTY else parameter.default
            text = documented.get(parameter.name)
            field = f"p{index}"
            # A description given only when there is one: None would hide one inside Annotated[...].
            info: Any = (pydantic.Field(default, alias=parameter.name, description=text) if text
                         else pydantic.Field(default, alias=parameter.name))
            fields[field] = (annotation, info)
            aliases[field] = parameter.name
        try:
            model = pydantic.create_model(f"{self.name}_arguments",
                                          __config__=pydantic.ConfigDict(extra="forbid"), **fields)
            model.model_json_schema(by_alias=True)  # a type without a JSON Schema fails here, not later
        except (pydantic.PydanticSchemaGenerationError, pydantic.PydanticUserError, TypeError) as error:
            raise errors.ConfigurationError(
                f"tool {self.name!r} has a parameter type the model cannot be told about "
                f"({errors.one_line(str(error), 160)}): use JSON types (str, int, float, bool, list, dict, "
                "Literal, Enum, Optional, pydantic models)") from None
        return model, aliases, positional


@dataclass(frozen=True)
class Described:
    """What reading a function gives (its docstring's summary, the parameters' pydantic model and
    schemas), without the function itself: kept to make a Tool of the same function again cheaply."""

    name: str
    summary: str
    model: Any = field(repr=False)
    aliases: dict[str, str]
    positional: tuple[str, ...]
    parameters: dict[str, Any] = field(repr=False)
    strict_parameters: dict[str, Any] | None = field(repr=False)


def tool(function: Callable[..., Any] | None = None, *, name: str | None = None, description: str | None = None,
         confirm: bool = False, max_result_chars: int | None = None) -> Any:
    """Make ``function`` a Tool; as a decorator ``@tool`` or ``@tool(confirm=True)``. The Tool calls
    through to the function, so it can still be called as before."""

    def make(function: Callable[..., Any]) -> Tool:
        return Tool(function, name=name, description=description, confirm=confirm,
                    max_result_chars=max_result_chars)

    return make if function is None else make(function)


def as_tool(value: Any, made: MutableMapping[Any, Described] | None = None) -> Tool:
    """``value`` as a Tool: a Tool as it is, a function made into one. ``made`` remembers how each
    function was described (a bot's, weakly keyed: it keeps no function alive), so a question that
    passes the same functions again does not read them again (a pydantic model costs about 2 ms)."""
    if isinstance(value, Tool):
        return value
    known = None
    if made is not None:
        try:
            known = made.get(value)
        except TypeError:  # unhashable: read each time
            known = None
    new = Tool(value, described=known)
    if made is not None and known is None:
        try:
            made[value] = new.described
        except TypeError:
            pass  # cannot be weakly referenced: read each time
    return new


class Toolbox:
    """The tools of a bot or a question, by name, in the order they were added. A second tool with
    the same name replaces the first (a re-run notebook cell redefines its function)."""

    def __init__(self, tools: Iterable[Any] = (), *, made: MutableMapping[Any, Described] | None = None) -> None:
        self._tools: dict[str, Tool] = {}
        for item in tools:
            self.add(item, made=made)

    @classmethod
    def of(cls, tools: Any, *, made: MutableMapping[Any, Described] | None = None) -> Toolbox:
        """A Toolbox from what ``tools=`` takes: a Toolbox, a Tool or function, or an iterable of them
        (``made``: see ``as_tool``)."""
        if isinstance(tools, Toolbox):
            return tools
        if tools is None:
            return cls()
        if isinstance(tools, str):
            tools = [tools]  # a named set, e.g. tools="notebook" (tool_sets.py)
        if isinstance(tools, (bytes, dict)) or not isinstance(tools, Iterable):
            if isinstance(tools, (bytes, dict)) or not callable(tools):
                raise errors.ConfigurationError(
                    f"tools= takes functions (or Tools), or a list of them; got {type(tools).__name__}")
            return cls([tools], made=made)
        return cls(expanded(tools), made=made)

    def add(self, value: Any, *, made: MutableMapping[Any, Described] | None = None) -> Tool:
        added = as_tool(value, made)
        self._tools[added.name] = added
        return added

    def remove(self, name: str) -> None:
        self._tools.pop(name, None)

    def clear(self) -> None:
        self._tools.clear()

    def get(self, name: str) -> Tool | None:
        return self._tools.get(name)

    def merged(self, other: Toolbox) -> Toolbox:
        """These tools and ``other``'s (``other`` wins a name both have)."""
        if not other:
            return self
        if not self:
            return other
        return Toolbox([*self, *other])

    @property
    def names(self) -> list[str]:
        return list(self._tools)

    def specs(self, *, strict: bool = False) -> list[dict[str, Any]]:
        """Every tool's definition for the ``tools`` request parameter."""
        return [made.spec(strict=strict) for made in self._tools.values()]

    def __iter__(self) -> Iterator[Tool]:
        return iter(list(self._tools.values()))

    def __len__(self) -> int:
        return len(self._tools)

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def __repr__(self) -> str:
        return f"Toolbox({', '.join(self._tools) or 'empty'})"


def supports_strict(info: ModelInfo) -> bool:
    """True for models known to take strict tool schemas (OpenAI's; local servers often reject
    or ignore ``strict``)."""
    return info.known


def result_text(value: Any, limit: int = DEFAULT_MAX_RESULT_CHARS) -> str:
    """What the model is told a call returned: text as it is, JSON for JSON-like values and
    pydantic models or dataclasses, ``str()`` for other objects (a DataFrame's table), cut at
    ``limit`` characters with the cut stated."""
    if isinstance(value, str):
        text = value
    elif value is None or isinstance(value, (bool, int, float, list, tuple, dict)):
        text = json.dumps(value, ensure_ascii=False, default=str)
    elif hasattr(value, "model_dump_json"):
        text = value.model_dump_json()
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        text = json.dumps(dataclasses.asdict(value), ensure_ascii=False, default=str)
    else:
        text = str(value)
    if len(text) > limit:
        text = (f"{text[:limit]}\n[result cut: the first {limit:,} of {len(text):,} characters are shown "
                "(max_result_chars)]")
    return text


# -- docstrings -------------------------------------------------------------------------------------
def parse_docstring(doc: str) -> tuple[str, dict[str, str]]:
    """The description (the text before any section) and each parameter's text, from a Google,
    NumPy or reST style docstring."""
    lines = inspect.cleandoc(doc).splitlines() if doc else []
    params: dict[str, str] = {}
    end = len(lines)
    i = 0
    while i < len(lines):
        line = lines[i].strip()
        numpy_header = i + 1 < len(lines) and bool(line) and bool(_NUMPY_RULE.match(lines[i + 1]))
        if _REST_FIELD.match(line):
            end = min(end, i)
            i = _rest_field(lines, i, params)
        elif _GOOGLE_ARGS.match(lines[i]):
            end = min(end, i)
            i = _google_params(lines, i + 1, params)
        elif numpy_header:
            end = min(end, i)
            i = _numpy_params(lines, i + 2, params) if line in _NUMPY_ARGS else i + 2
        elif line.rstrip(":") in _SECTIONS and line.endswith(":") and not lines[i].startswith((" ", "\t")):
            end = min(end, i)  # "Returns:", "Raises:", "Example:": the description ends here
            i += 1
        else:
            i += 1
    return "\n".join(lines[:end]).strip(), params


def _rest_field(lines: list[str], i: int, params: dict[str, str]) -> int:
    """One ``:param x: text`` field (continued on indented lines); other fields are skipped."""
    match = _REST_PARAM.match(lines[i].strip())
    parts = [match.group(2).strip()] if match else []
    i += 1
    while i < len(lines) and lines[i].startswith((" ", "\t")):
        parts.append(lines[i].strip())
        i += 1
    if match:
        params[match.group(1).lstrip("*")] = " ".join(part for part in parts if part)
    return i


def _google_params(lines: list[str], i: int, params: dict[str, str]) -> int:
    """``name (type): text`` entries, indented under ``Args:``, continued on deeper lines."""
    indent: int | None = None
    name: str | None = None
    while i < len(lines):
        line = lines[i]
        if line.strip() and not line.startswith((" ", "\t")):
            break  # back at the margin: the next section
        match = _GOOGLE_ENTRY.match(line)
        if match and (indent is None or len(match.group(1)) == indent):
            indent = len(match.group(1))
            name = match.group(2).lstrip("*")
            params[name] = match.group(3).strip()
        elif name is not None and line.strip():
            params[name] = f"{params[name]} {line.strip()}".strip()
        i += 1
    return i


def _numpy_params(lines: list[str], i: int, params: dict[str, str]) -> int:
    """``name : type`` entries at the margin (``x, y : int`` documents both), text indented below."""
    names: list[str] = []
    while i < len(lines):
        line = lines[i]
        if i + 1 < len(lines) and line.strip() and _NUMPY_RULE.match(lines[i + 1]):
            break  # the next section's header
        if line.strip() and not line.startswith((" ", "\t")):
            names = [name.strip().lstrip("*") for name in line.split(":", 1)[0].split(",") if name.strip()]
            for name in names:
                params.setdefault(name, "")
        elif line.strip():
            for name in names:
                params[name] = f"{params[name]} {line.strip()}".strip()
        i += 1
    return i


# -- JSON Schema ------------------------------------------------------------------------------------
def _tidy(schema: dict[str, Any]) -> dict[str, Any]:
    """pydantic's schema made small for the model: "title"s dropped (the names say it), ``$ref``s
    inlined unless a type refers to itself, ``$defs`` kept only for those. Every object with
    properties is closed (``additionalProperties: false``) unless it says otherwise: the model is
    told to send no other keys, whichever pydantic version made the schema (2.14 closes a dataclass
    inside the arguments model, 2.13 did not)."""
    defs = schema.pop("$defs", {})
    recursive = {name for name in defs if _refers_to(defs[name], name, defs, set())}

    def walk(node: Any) -> Any:
        if isinstance(node, list):
            return [walk(item) for item in node]
        if not isinstance(node, dict):
            return node
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/") and ref[8:] not in recursive:
            merged = {**copy.deepcopy(defs[ref[8:]]), **{k: v for k, v in node.items() if k != "$ref"}}
            return walk(merged)
        out: dict[str, Any] = {}
        for key, value in node.items():
            if key == "title" and isinstance(value, str):
                continue
            if key in ("properties", "$defs") and isinstance(value, dict):
                out[key] = {name: walk(sub) for name, sub in value.items()}
            else:
                out[key] = walk(value)
        if isinstance(out.get("properties"), dict) and "additionalProperties" not in out:
            out["additionalProperties"] = False
        return out

    tidy = walk(schema)
    if recursive:
        tidy["$defs"] = {name: walk(defs[name]) for name in sorted(recursive)}
    tidy.setdefault("properties", {})
    return tidy


def _refers_to(node: Any, name: str, defs: dict[str, Any], seen: set[str]) -> bool:
    if isinstance(node, list):
        return any(_refers_to(item, name, defs, seen) for item in node)
    if not isinstance(node, dict):
        return False
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        target = ref[8:]
        if target == name:
            return True
        if target not in seen and target in defs:
            seen.add(target)
            if _refers_to(defs[target], name, defs, seen):
                return True
    return any(_refers_to(value, name, defs, seen) for key, value in node.items() if key != "$ref")


def strict_schema(schema: dict[str, Any]) -> dict[str, Any] | None:
    """``schema`` as OpenAI's strict mode takes it, or None when it cannot be said that way.

    A property that was optional becomes a union with null, null meaning its default (which the
    description states: strict mode takes no ``default``); then ``strict_schema.to_strict``, the
    one place that knows strict mode's rules (every property required, ``additionalProperties:
    false``, only the keywords it accepts), does the rest. A value of any type (no ``type``), an
    open object (a bare ``dict``), or a tuple cannot be strict.
    """
    from .strict_schema import to_strict

    def walk(node: Any) -> Any:
        if isinstance(node, list):
            return [walk(item) for item in node]
        if not isinstance(node, dict):
            return node
        if not _typed(node):
            raise _NotStrict
        node = dict(node)
        if "$defs" in node:
            node["$defs"] = {name: walk(sub) for name, sub in node["$defs"].items()}
        if isinstance(node.get("properties"), dict):
            required = set(node.get("required", ()))
            node["properties"] = {name: walk(sub) if name in required else _nullable(walk(sub), sub)
                                  for name, sub in node["properties"].items()}
        for key in ("items", "anyOf", "allOf", "oneOf"):
            if key in node:
                node[key] = walk(node[key])
        return node

    try:
        prepared = walk(copy.deepcopy(schema))
    except _NotStrict:
        return None
    strict, _ = to_strict(prepared)
    return strict


class _NotStrict(Exception):
    pass


def _typed(node: dict[str, Any]) -> bool:
    """False for a schema that allows any value (``Any``): strict mode needs a type."""
    return any(key in node for key in ("type", "anyOf", "allOf", "oneOf", "enum", "const", "$ref"))


def _nullable(strict: dict[str, Any], original: dict[str, Any]) -> dict[str, Any]:
    """A strict property that may be null, its default said in its description."""
    default = original.get("default", ...)
    text = strict.get("description", "")
    if default is not ... and default is not None:
        said = json.dumps(default, ensure_ascii=False, default=str)
        text = f"{text} (null: the default, {said})".strip()
    if _admits_null(strict):
        return {**strict, "description": text} if text else strict
    inner = {key: value for key, value in strict.items() if key != "description"}
    wrapped: dict[str, Any] = {"anyOf": [inner, {"type": "null"}]}
    if text:
        wrapped["description"] = text
    return wrapped


def _admits_null(node: Any) -> bool:
    if not isinstance(node, dict):
        return False
    kind = node.get("type")
    if kind == "null" or (isinstance(kind, list) and "null" in kind):
        return True
    if None in (node.get("enum") or ()) or ("const" in node and node["const"] is None):
        return True
    return any(_admits_null(variant) for variant in node.get("anyOf", ()))


def _drop_default_nulls(value: Any, schema: Any, root: dict[str, Any]) -> Any:
    """``value`` without the nulls that mean "the default" (strict mode sends null for an
    optional property left out); a null the property itself admits stays."""
    if isinstance(schema, dict) and isinstance(schema.get("$ref"), str):
        target: Any = root
        for part in schema["$ref"][2:].split("/"):
            target = target.get(part, {}) if isinstance(target, dict) else {}
        schema = target
    if not isinstance(schema, dict):
        return value
    if isinstance(value, dict) and isinstance(schema.get("properties"), dict):
        required = set(schema.get("required", ()))
        out = {}
        for key, item in value.items():
            sub = schema["properties"].get(key)
            if item is None and sub is not None and key not in required and not _admits_null(sub):
                continue
            out[key] = _drop_default_nulls(item, sub, root)
        return out
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [_drop_default_nulls(item, schema["items"], root) for item in value]
    return value


def _hinted(function: Any) -> Any:
    """What holds the type hints of ``function``: itself, a partial's function, or an object's
    ``__call__``."""
    while isinstance(function, functools.partial):
        function = function.func
    if inspect.isroutine(function) or inspect.isclass(function):
        return function
    return type(function).__call__


def _is_async(function: Any) -> bool:
    target = getattr(function, "func", function)  # functools.partial
    if inspect.iscoroutinefunction(target):
        return True
    # a callable object with an async __call__
    return not inspect.isroutine(target) and inspect.iscoroutinefunction(type(target).__call__)
