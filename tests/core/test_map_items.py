"""What map takes (items, templates) and gives back (lists, typed DataFrames): no HTTP here."""

from __future__ import annotations

import dataclasses
import enum
from typing import Literal

import pandas as pd
import pydantic
import pytest

from jupyter_llmchat.core.errors import ConfigurationError
from jupyter_llmchat.core.map_items import MapResults, as_text, frame_of, question, questions, read_items, value_of
from jupyter_llmchat.core.reply import Usage
from jupyter_llmchat.core.rows import RowResult
from jupyter_llmchat.core.structured import answer_schema


def test_strings_dicts_series_and_frames_become_rows_in_order() -> None:
    assert read_items(["b", "a"]).values == ["b", "a"]
    assert read_items(x for x in ("one", "two")).values == ["one", "two"]  # any iterable
    dicts = read_items([{"title": "t"}, {"title": "u"}])
    assert (dicts.kind, dicts.values, dicts.fields) == ("list", [{"title": "t"}, {"title": "u"}], None)
    series = read_items(pd.Series(["x", "y"], index=[7, 3], name="title"))
    assert (series.kind, series.values, series.fields, list(series.index)) == ("series", ["x", "y"], ["title"], [7, 3])
    frame = read_items(pd.DataFrame({"title": ["a", "b"], 2: [1, 2]}, index=["r1", "r2"]))
    assert frame.kind == "frame" and frame.fields == ["title", "2"] and list(frame.index) == ["r1", "r2"]
    assert frame.values == [{"title": "a", "2": 1}, {"title": "b", "2": 2}]


@pytest.mark.parametrize(("items", "said"), [
    ("one question", "map takes a list of items (strings or dicts), a pandas Series or a DataFrame, got str: put it "
                     "in a list"),
    ({"title": "x"}, "map takes a list of items (strings or dicts), a pandas Series or a DataFrame, got dict: put it "
                     "in a list"),
    (42, "map takes a list of items (strings or dicts), a pandas Series or a DataFrame, got int"),
])
def test_what_is_not_a_list_of_items_is_one_line(items, said) -> None:
    with pytest.raises(ConfigurationError) as caught:
        read_items(items)
    assert str(caught.value) == said


def test_a_template_fills_fields_and_leaves_json_and_doubled_braces_alone() -> None:
    row = {"title": "Refund {now}", "body": "It broke.", "first name": "Ada"}
    template = 'Classify: {title}\n{body}\nFrom {first name}. Answer like {"label": "spam"} or {{label}}.'
    assert question(row, template) == ('Classify: Refund {now}\nIt broke.\nFrom Ada. Answer like {"label": "spam"} '
                                       'or {label}.')
    assert question("a cat", "Describe {} in {{three}} words") == "Describe a cat in {three} words"
    assert question("a cat", "Describe {animal}", ["animal"]) == "Describe a cat"  # a named Series
    assert question("as it is {x}", None) == "as it is {x}"  # no template: the item is the question


@pytest.mark.parametrize(("value", "template", "said"), [
    ({"title": "t"}, "Classify {titel}", "the template names {titel}, which is not a field of the rows: fields are "
                                         "title"),
    ({"title": "t"}, "Classify {}", "the template has {}, but each row has fields: name one of title"),
    ({"title": "t"}, None, 'rows with fields need a template to become questions, e.g. template="Classify: {title}" '
                           "(fields: title)"),
    ("plain", "Describe {text}", "the template names {text}, but the items are plain values: write {} where each "
                                 "goes"),
    (3.5, None, 'an item without a template must be text, got float: give a template such as "Describe {}"'),
])
def test_a_template_that_cannot_fill_a_row_is_one_line_before_anything_is_sent(value, template, said) -> None:
    with pytest.raises(ConfigurationError) as caught:
        question(value, template)
    assert str(caught.value) == said


def test_a_named_series_says_which_names_work() -> None:
    items = read_items(pd.Series(["x"], name="title"))
    with pytest.raises(ConfigurationError) as caught:
        questions(items, "Classify {body}")
    assert str(caught.value) == ("the template names {body}, but the items are plain values: write {} or {title} "
                                 "where each goes")
    with pytest.raises(ConfigurationError, match="template must be text"):
        questions(items, 42)  # type: ignore[arg-type]


def test_values_go_in_as_text_and_missing_ones_as_nothing() -> None:
    assert [as_text(v) for v in (None, float("nan"), pd.NA, pd.NaT, 3, 2.5, "s", True)] == [
        "", "", "", "", "3", "2.5", "s", "True"]
    frame = read_items(pd.DataFrame({"title": ["a", None], "n": [1.0, float("nan")]}))
    assert questions(frame, "{title}|{n}") == ["a|1.0", "|"]


class Priority(enum.Enum):
    low = "low"
    high = "high"


class Ticket(pydantic.BaseModel):
    label: Literal["bug", "question", "praise"]
    priority: Priority
    votes: int
    score: float | None
    urgent: bool
    tags: list[str]


def done(index: int, parsed: object, cost: float = 0.001) -> RowResult:
    return RowResult(index, f"k{index}", "done", text="{}", parsed=parsed, usage=Usage(10, 5), cost=cost, attempts=1)


def test_a_frame_of_results_has_typed_schema_columns_then_error_and_cost_on_the_input_index() -> None:
    items = read_items(pd.DataFrame({"title": ["a", "b", "c"]}, index=[10, 20, 30]))
    rows = [done(0, Ticket(label="bug", priority=Priority.high, votes=3, score=0.5, urgent=True, tags=["ui"])),
            RowResult(1, "k1", "failed", error="server error (500): try again later", attempts=6),
            done(2, Ticket(label="praise", priority=Priority.low, votes=0, score=None, urgent=False, tags=[]))]
    frame = frame_of(items, rows, answer_schema(Ticket).json_schema)
    assert list(frame.columns) == ["label", "priority", "votes", "score", "urgent", "tags", "error", "cost"]
    assert list(frame.index) == [10, 20, 30]
    assert {name: str(dtype) for name, dtype in frame.dtypes.items()} == {
        "label": "category", "priority": "category", "votes": "Int64", "score": "Float64", "urgent": "boolean",
        "tags": "object", "error": "string", "cost": "Float64"}
    assert list(frame["label"].cat.categories) == ["bug", "question", "praise"]
    assert list(frame["priority"].cat.categories) == ["low", "high"]
    assert frame["label"].astype("string").tolist() == ["bug", pd.NA, "praise"]
    assert frame["priority"].astype("string").tolist() == ["high", pd.NA, "low"]
    assert frame["votes"].tolist() == [3, pd.NA, 0]
    assert frame["score"].tolist() == [0.5, pd.NA, pd.NA]
    assert frame["urgent"].tolist() == [True, pd.NA, False]
    assert frame["tags"].tolist() == [["ui"], None, []]
    assert frame["error"].tolist() == [pd.NA, "server error (500): try again later", pd.NA]
    assert frame["cost"].tolist() == [0.001, pd.NA, 0.001]


@dataclasses.dataclass
class Point:
    x: int
    y: int


def test_dataclass_and_json_schema_rows_and_plain_text_rows() -> None:
    items = read_items(pd.DataFrame({"q": ["a", "b"]}))
    frame = frame_of(items, [done(0, Point(1, 2)), done(1, Point(3, 4))], answer_schema(Point).json_schema)
    assert frame[["x", "y"]].to_dict("list") == {"x": [1, 3], "y": [2, 4]}
    schema = {"type": "object", "properties": {"n": {"type": ["integer", "null"]}}, "required": ["n"]}
    frame = frame_of(items, [done(0, {"n": 5}), done(1, {"n": None})], schema)
    assert str(frame["n"].dtype) == "Int64" and frame["n"].tolist() == [5, pd.NA]
    texts = [RowResult(0, "k0", "done", text="first"), RowResult(1, "k1", "pending", error="not asked")]
    frame = frame_of(items, texts, None)
    assert list(frame.columns) == ["answer", "error", "cost"] and frame["answer"].tolist() == ["first", pd.NA]


def test_a_schema_field_named_error_or_cost_is_refused() -> None:
    schema = {"type": "object", "properties": {"cost": {"type": "number"}}}
    with pytest.raises(ConfigurationError) as caught:
        frame_of(read_items(pd.DataFrame({"q": ["a"]})), [done(0, {"cost": 1})], schema)
    assert str(caught.value) == "the schema has a field named 'cost', which would hide the result's 'cost' column: " \
                                "rename the field"


def test_a_list_of_results_holds_values_and_says_what_failed() -> None:
    rows = [RowResult(0, "a", "done", text="yes", parsed={"ok": True}, usage=Usage(5, 1), cost=0.5),
            RowResult(1, "b", "failed", error="the model refused: no", usage=Usage(5, 1), cost=0.25),
            RowResult(2, "c", "pending", error="not asked")]
    results = MapResults([value_of(row, None) for row in rows], rows)
    assert results == ["yes", None, None]
    assert results.errors == {1: "the model refused: no", 2: "not asked"}
    assert results.cost == 0.75
    assert [value_of(row, object) for row in rows] == [{"ok": True}, None, None]
    rows[0].cost = None  # a price unknown: the total is unknown
    assert MapResults([], rows).cost is None
