"""Tools made from plain functions: the JSON Schema of each supported type, the docstring styles,
strict mode's rules, arguments checked before a call (one line for the model when wrong), results
as the model sees them, and the mistakes a user can make, each one clear line."""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import functools
import json
from typing import Annotated, Any, Literal, Optional, Union

import pydantic
import pytest
from typing_extensions import TypedDict  # pydantic takes typing's own only from Python 3.12

from jupyter_llmchat.core import errors
from jupyter_llmchat.core.models import model_info
from jupyter_llmchat.core.tools import (
    InvalidArguments,
    Tool,
    Toolbox,
    parse_docstring,
    result_text,
    strict_schema,
    supports_strict,
    tool,
)


def properties(function) -> dict[str, Any]:
    return Tool(function).parameters["properties"]


# -- one schema per supported type ------------------------------------------------------------------
class Unit(enum.Enum):
    CELSIUS = "c"
    FAHRENHEIT = "f"


class Place(pydantic.BaseModel):
    city: str
    country: str = "FR"


@dataclasses.dataclass
class Window:
    start: int
    end: int


class Filter(TypedDict):
    column: str
    value: float


class Opaque:
    """A type with no JSON Schema."""


def test_scalar_types_and_their_defaults() -> None:
    def f(text: str, count: int, ratio: float, flag: bool, limit: int = 10, note: str = "none") -> None: ...

    assert Tool(f).parameters == {
        "additionalProperties": False,
        "properties": {"text": {"type": "string"}, "count": {"type": "integer"}, "ratio": {"type": "number"},
                       "flag": {"type": "boolean"}, "limit": {"default": 10, "type": "integer"},
                       "note": {"default": "none", "type": "string"}},
        "required": ["text", "count", "ratio", "flag"], "type": "object"}


def test_lists_tuples_and_dicts() -> None:
    def f(names: list[str], pair: tuple[int, str], scores: dict[str, float]) -> None: ...

    assert properties(f) == {
        "names": {"items": {"type": "string"}, "type": "array"},
        "pair": {"maxItems": 2, "minItems": 2, "prefixItems": [{"type": "integer"}, {"type": "string"}],
                 "type": "array"},
        "scores": {"additionalProperties": {"type": "number"}, "type": "object"}}


def test_optional_and_unions() -> None:
    # the spellings users write, old and new
    def f(limit: Optional[int] = None, key: Union[int, str] = 0, tag: str | None = None) -> None: ...  # noqa: UP007, UP045

    assert properties(f) == {
        "limit": {"anyOf": [{"type": "integer"}, {"type": "null"}], "default": None},
        "key": {"anyOf": [{"type": "integer"}, {"type": "string"}], "default": 0},
        "tag": {"anyOf": [{"type": "string"}, {"type": "null"}], "default": None}}


def test_literal_and_enum() -> None:
    def f(mode: Literal["fast", "exact"], unit: Unit = Unit.CELSIUS) -> None: ...

    assert properties(f) == {
        "mode": {"enum": ["fast", "exact"], "type": "string"},
        "unit": {"default": "c", "enum": ["c", "f"], "type": "string"}}


def test_pydantic_models_dataclasses_and_typeddicts_are_inlined() -> None:
    def f(place: Place, window: Window, filters: list[Filter]) -> None: ...

    assert properties(f) == {
        # every object closed, as the tool's own (the same whichever pydantic version made it)
        "place": {"additionalProperties": False,
                  "properties": {"city": {"type": "string"}, "country": {"default": "FR", "type": "string"}},
                  "required": ["city"], "type": "object"},
        "window": {"additionalProperties": False,
                   "properties": {"start": {"type": "integer"}, "end": {"type": "integer"}},
                   "required": ["start", "end"], "type": "object"},
        "filters": {"items": {"additionalProperties": False,
                              "properties": {"column": {"type": "string"}, "value": {"type": "number"}},
                              "required": ["column", "value"], "type": "object"}, "type": "array"}}


class Node(pydantic.BaseModel):
    name: str
    children: list[Node] = []


def test_a_model_that_refers_to_itself_keeps_its_definition() -> None:
    def f(tree: Node) -> None: ...

    made = Tool(f)
    assert made.parameters["properties"] == {"tree": {"$ref": "#/$defs/Node"}}
    assert made.parameters["$defs"] == {"Node": {
        "additionalProperties": False, "properties": {"name": {"type": "string"},
                       "children": {"default": [], "items": {"$ref": "#/$defs/Node"}, "type": "array"}},
        "required": ["name"], "type": "object"}}
    strict = made.spec(strict=True)["function"]["parameters"]
    assert strict["$defs"]["Node"]["additionalProperties"] is False
    assert strict["$defs"]["Node"]["required"] == ["name", "children"]


def test_annotated_text_and_constraints() -> None:
    def f(age: Annotated[int, pydantic.Field(ge=0, description="Years.")],
          name: Annotated[str, "Who."]) -> None: ...

    assert properties(f) == {"age": {"description": "Years.", "minimum": 0, "type": "integer"},
                             "name": {"type": "string"}}
    with pytest.raises(InvalidArguments, match="^invalid arguments for f: age: Input should be greater than or equal "
                                               "to 0$"):
        Tool(f).parse('{"age": -1, "name": "x"}')


def test_a_parameter_without_a_hint_takes_any_value_and_is_not_strict() -> None:
    def f(value, other: int = 1) -> None: ...

    made = Tool(f)
    assert made.parameters["properties"]["value"] == {}
    assert made.strict_parameters is None and "strict" not in made.spec(strict=True)["function"]


# -- descriptions from docstrings -------------------------------------------------------------------
def test_google_style() -> None:
    def f(city: str, days: int = 3) -> str:
        """Forecast for a city.

        Uses the national service.

        Args:
            city (str): The city's name,
                as people write it.
            days: How many days ahead.

        Returns:
            The forecast.
        """
        return ""

    made = Tool(f)
    assert made.description == "Forecast for a city.\n\nUses the national service."
    assert made.parameters["properties"] == {
        "city": {"description": "The city's name, as people write it.", "type": "string"},
        "days": {"default": 3, "description": "How many days ahead.", "type": "integer"}}


def test_numpy_style() -> None:
    def f(x: float, y: float, scale: float = 1.0) -> float:
        """Distance of a point.

        Parameters
        ----------
        x, y : float
            The point.
        scale : float, optional
            Units per step.

        Returns
        -------
        float
        """
        return 0.0

    assert parse_docstring(f.__doc__ or "") == ("Distance of a point.",
                                                {"x": "The point.", "y": "The point.", "scale": "Units per step."})


def test_rest_style() -> None:
    doc = """Send a message.

    :param to: Who gets it.
    :param str body: What it says,
        in plain text.
    :returns: the id.
    :raises ValueError: on a bad address.
    """
    assert parse_docstring(doc) == ("Send a message.", {"to": "Who gets it.", "body": "What it says, in plain text."})


def test_no_docstring_no_description() -> None:
    def f(x: int) -> int:
        return x

    assert "description" not in Tool(f).spec()["function"]
    assert Tool(f, description="Doubles.").spec()["function"]["description"] == "Doubles."


# -- strict mode -----------------------------------------------------------------------------------
def test_strict_requires_every_property_and_makes_optional_ones_nullable() -> None:
    def f(place: Place, unit: Unit = Unit.CELSIUS, note: str | None = None) -> None:
        """Do it.

        Args:
            unit: The unit.
        """

    spec = Tool(f).spec(strict=True)["function"]
    assert spec["strict"] is True
    assert spec["parameters"] == {
        "additionalProperties": False,
        "properties": {
            "place": {"additionalProperties": False, "required": ["city", "country"], "type": "object",
                      "properties": {"city": {"type": "string"},
                                     "country": {"anyOf": [{"type": "string"}, {"type": "null"}],
                                                 "description": '(null: the default, "FR")'}}},
            "unit": {"anyOf": [{"enum": ["c", "f"], "type": "string"}, {"type": "null"}],
                     "description": 'The unit. (null: the default, "c")'},
            "note": {"anyOf": [{"type": "string"}, {"type": "null"}]}},
        "required": ["place", "unit", "note"], "type": "object"}


def test_null_means_the_default_where_the_type_takes_no_null() -> None:
    def f(place: Place, unit: Unit = Unit.CELSIUS, note: str | None = "hi") -> tuple:
        return place, unit, note

    made = Tool(f)
    arguments = made.parse('{"place": {"city": "Lyon", "country": null}, "unit": null, "note": null}')
    assert arguments == {"place": Place(city="Lyon", country="FR"), "unit": Unit.CELSIUS, "note": None}


@pytest.mark.parametrize("annotation", [dict, dict[str, int], tuple[int, int], Any])
def test_open_objects_tuples_and_any_cannot_be_strict(annotation) -> None:
    def f(value) -> None: ...

    f.__annotations__ = {"value": annotation, "return": None}
    assert Tool(f).strict_parameters is None
    assert Tool(f).spec(strict=True)["function"] == {"name": "f", "parameters": Tool(f).parameters}


def test_strict_schema_leaves_its_input_alone() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer", "default": 1}}}
    before = json.dumps(schema)
    assert strict_schema(schema) == {"type": "object", "additionalProperties": False, "required": ["a"],
                                     "properties": {"a": {"anyOf": [{"type": "integer"}, {"type": "null"}],
                                                          "description": "(null: the default, 1)"}}}
    assert json.dumps(schema) == before


def test_which_models_take_strict() -> None:
    assert supports_strict(model_info("gpt-4o")) and supports_strict(model_info("gpt-4.1-mini-2025-04-14"))
    assert not supports_strict(model_info("llama3.2"))


# -- checking a call -------------------------------------------------------------------------------
def weather(city: str, days: int = 3, unit: Literal["c", "f"] = "c") -> str:
    return f"{city}/{days}/{unit}"


@pytest.mark.parametrize("arguments, said", [
    ('{"city": "Paris", "days": "x"}',
     "invalid arguments for weather: days: Input should be a valid integer, unable to parse string as an integer"),
    ('{"days": 2}', "invalid arguments for weather: city: Field required"),
    ('{"city": "Paris", "unit": "k", "zone": 1}',
     "invalid arguments for weather: unit: Input should be 'c' or 'f'; zone: Extra inputs are not permitted"),
    ('{"city": "Par', "the arguments of weather are not valid JSON (Unterminated string starting at: line 1 column "
                     "10 (char 9)); send one JSON object"),
    ('["Paris"]', "the arguments of weather must be a JSON object, got list"),
])
def test_bad_arguments_are_one_line_for_the_model(arguments: str, said: str) -> None:
    with pytest.raises(InvalidArguments) as caught:
        Tool(weather).parse(arguments)
    assert str(caught.value) == said


def test_good_arguments_are_converted_as_the_json_needs() -> None:
    made = Tool(weather)
    assert made.parse('{"city": "Paris", "days": "5"}') == {"city": "Paris", "days": 5, "unit": "c"}
    with pytest.raises(InvalidArguments, match="^invalid arguments for weather: city: Field required$"):
        made.parse("")  # no arguments at all: an empty object, which lacks the required city


def test_any_parameter_name_works_even_pydantic_ones() -> None:
    def f(json: str, model_config: int, schema: bool = False) -> tuple:
        return json, model_config, schema

    made = Tool(f)
    assert list(made.parameters["properties"]) == ["json", "model_config", "schema"]
    assert made.invoke(made.parse('{"json": "x", "model_config": 2}')) == ("x", 2, False)


def test_positional_only_parameters_are_passed_in_order() -> None:
    def f(a: int, b: int, /, c: int = 0) -> int:
        return a * 100 + b * 10 + c

    made = Tool(f)
    assert made.invoke(made.parse('{"b": 2, "a": 1, "c": 3}')) == 123


def test_async_functions_partials_and_callable_objects() -> None:
    async def fetch(url: str) -> str:
        return url

    class Counter:
        async def __call__(self, step: int) -> int:
            return step

    def scaled(x: int, factor: int) -> int:
        return x * factor

    assert Tool(fetch).is_async and Tool(Counter(), name="counter").is_async
    made = Tool(functools.partial(scaled, factor=3), name="triple")
    assert not made.is_async and made.invoke(made.parse('{"x": 2}')) == 6
    assert asyncio.run(Tool(fetch).invoke({"url": "u"})) == "u"


# -- what the user sees when a tool cannot be made -------------------------------------------------
def test_mistakes_are_one_clear_line() -> None:
    def takes_args(*values: int) -> None: ...

    class Local:
        pass

    def takes_local(thing: Local) -> None: ...

    def takes_opaque(thing: Opaque) -> None: ...

    with pytest.raises(errors.ConfigurationError, match=r"^tool 'takes_args' takes \*values: a tool's parameters "
                                                        "must be named ones"):
        Tool(takes_args)
    with pytest.raises(errors.ConfigurationError, match=r"^tool 'takes_opaque' has a parameter type the model cannot "
                                                        r"be told about \(.*\): use JSON types"):
        Tool(takes_opaque)
    with pytest.raises(errors.ConfigurationError, match=r"^cannot read the parameters of tool 'takes_local': name "
                                                        "'Local' is not defined \\(a type its hints name must be one its "
                                                        "module can see, not one defined inside a function\\)$"):
        Tool(takes_local)
    with pytest.raises(errors.ConfigurationError, match=r"^'<lambda>' cannot be a tool's name"):
        Tool(lambda x: x)
    with pytest.raises(errors.ConfigurationError, match="^a tool must be a function, got int$"):
        Tool(3)  # type: ignore[arg-type]
    with pytest.raises(errors.ConfigurationError, match=r"^tools='nosuch' names no tool set \(the sets: 'notebook'\); "
                                                        "pass functions, or a list of them$"):
        Toolbox.of("nosuch")  # a string names a tool set (tool_sets.py); "notebook" needs a kernel


# -- results and collections -----------------------------------------------------------------------
def test_results_as_the_model_sees_them() -> None:
    class Table:
        def __str__(self) -> str:
            return "a b\n1 2"

    assert result_text("plain") == "plain"
    assert result_text(None) == "null" and result_text(3.5) == "3.5" and result_text(True) == "true"
    assert result_text({"é": [1, (2, 3)]}) == '{"é": [1, [2, 3]]}'
    assert result_text(Place(city="Lyon")) == '{"city":"Lyon","country":"FR"}'
    assert result_text(Window(1, 2)) == '{"start": 1, "end": 2}'
    assert result_text(Table()) == "a b\n1 2"
    assert result_text("x" * 30, limit=10) == ("xxxxxxxxxx\n[result cut: the first 10 of 30 characters are shown "
                                               "(max_result_chars)]")


def test_decorators_keep_the_function_callable_and_toolboxes_replace_by_name() -> None:
    @tool(confirm=True, max_result_chars=50)
    def delete(path: str) -> str:
        """Delete a file."""
        return f"deleted {path}"

    assert isinstance(delete, Tool) and delete.confirm and delete.max_result_chars == 50
    assert delete("a.txt") == "deleted a.txt"
    assert repr(delete) == "Tool(delete(path: str) -> str, confirm=True)"

    def delete_v2(path: str) -> str:
        return "v2"

    box = Toolbox([delete, weather])
    box.add(Tool(delete_v2, name="delete"))
    assert box.names == ["delete", "weather"] and box.get("delete").function is delete_v2  # type: ignore[union-attr]
    assert [spec["function"]["name"] for spec in box.specs()] == ["delete", "weather"]
    merged = Toolbox([weather]).merged(Toolbox([delete]))
    assert merged.names == ["weather", "delete"] and "delete" in merged and len(merged) == 2
    assert Toolbox.of(weather).names == ["weather"] and Toolbox.of(None).names == []


def test_a_function_is_described_once_per_cache_and_forgotten_with_it() -> None:
    import gc
    import weakref

    made: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def f(x: int) -> int:
        return x

    first = Toolbox.of([f], made=made).get("f")
    again = Toolbox.of(f, made=made).get("f")
    assert first is not None and again is not None and len(made) == 1
    assert again.described is first.described and again.function is f  # read once, called as itself
    assert Toolbox.of([f]).get("f").described is not first.described  # type: ignore[union-attr]  # no cache: read again
    del f, first, again
    gc.collect()
    assert len(made) == 0  # the cache keeps no function alive
