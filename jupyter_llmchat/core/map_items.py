"""What ``Chatbot.map`` takes and what it gives back.

Items are strings (or other plain values), dicts, a pandas Series or a DataFrame. A template
turns each into its question: ``{title}`` is the row's field (a dict key, a DataFrame column, a
named Series' name), ``{}`` the item itself when it is a plain value, ``{{`` and ``}}`` literal
braces. Braces around anything that is not a name (``{"label": "spam"}``, a JSON example) stay
as written, and a name that is no field is an error before anything is sent (a typo must not
become a question about "{titel}"). A value is inserted as its text (missing values as
nothing), never interpreted: braces inside a row's text are just text.

Results come back in input order: a list, or for a DataFrame a DataFrame on the same index with
the schema's fields as typed columns (integers, floats, booleans and enums as pandas' nullable
and categorical dtypes, so a failed row is a missing value, not a float NaN in an int column),
then ``error`` and ``cost``. pandas is imported only when pandas objects are given.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from .concurrency import LimitStats
from .errors import ConfigurationError
from .rows import RowResult

ItemsKind = Literal["list", "series", "frame"]
_FIELD = re.compile(r"\{\{|\}\}|\{([^{}]*)\}")
_NAME = re.compile(r"^[^\W\d]\w*(?: \w+)*$")  # a field name as people write one: title, first name, body_2
RESULT_COLUMNS = ("error", "cost")


@dataclass
class Items:
    """The items as rows: each a dict of fields, or a plain value (``fields`` is then None)."""

    kind: ItemsKind
    values: list[Any]  # per row: a dict of fields (str keys), or the plain value
    index: Any = None  # the pandas index of a Series or DataFrame
    fields: list[str] | None = None  # the field names every row has (a DataFrame's columns, a Series' name)
    names: dict[str, Any] = field(default_factory=dict)  # field -> the original column label

    def __len__(self) -> int:
        return len(self.values)


def read_items(items: Any) -> Items:
    """The rows of ``items``; a ConfigurationError for anything that is not a list of items."""
    if _is_pandas(items, "DataFrame"):
        names = {str(column): column for column in items.columns}
        records = [{str(key): value for key, value in row.items()} for row in items.to_dict("records")]
        return Items("frame", records, items.index, list(names), names)
    if _is_pandas(items, "Series"):
        name = items.name if isinstance(items.name, str) and items.name else None
        return Items("series", items.tolist(), items.index, [name] if name else None)
    if isinstance(items, (str, bytes, Mapping)) or not isinstance(items, Iterable):
        raise ConfigurationError(
            f"map takes a list of items (strings or dicts), a pandas Series or a DataFrame, got "
            f"{type(items).__name__}" + (": put it in a list" if isinstance(items, (str, Mapping)) else ""))
    values = [dict(item) if isinstance(item, Mapping) else item for item in items]
    return Items("list", values)


def questions(items: Items, template: str | None) -> list[str]:
    """The question of each row: ``template`` filled from it, or a plain item as it is."""
    if template is not None and not isinstance(template, str):
        raise ConfigurationError(f"template must be text with {{field}} places, got {type(template).__name__}")
    return [question(value, template, items.fields) for value in items.values]


def question(value: Any, template: str | None, series_fields: list[str] | None = None) -> str:
    """One row's question (see the module docstring)."""
    fields = value if isinstance(value, dict) else None
    if template is None:
        if fields is not None:
            raise ConfigurationError(
                f"rows with fields need a template to become questions, e.g. template=\"Classify: "
                f"{{{next(iter(fields), 'field')}}}\" (fields: {_listed(fields)})")
        if not isinstance(value, str):
            raise ConfigurationError(f"an item without a template must be text, got {type(value).__name__}: give a "
                                     "template such as \"Describe {}\"")
        return value

    def fill(match: re.Match[str]) -> str:
        whole, name = match.group(0), match.group(1)
        if whole in ("{{", "}}"):
            return whole[0]
        if fields is None:  # a plain value: {} or a named Series' name
            if name == "" or (series_fields and name in series_fields):
                return as_text(value)
            if _NAME.match(name):
                named = f" or {{{series_fields[0]}}}" if series_fields else ""
                raise ConfigurationError(f"the template names {{{name}}}, but the items are plain values: write {{}}"
                                         f"{named} where each goes")
            return whole
        if name in fields:
            return as_text(fields[name])
        if name == "":
            raise ConfigurationError(f"the template has {{}}, but each row has fields: name one of {_listed(fields)}")
        if _NAME.match(name):
            raise ConfigurationError(f"the template names {{{name}}}, which is not a field of the rows: fields are "
                                     f"{_listed(fields)}")
        return whole  # not a name: JSON or other literal text in braces

    return _FIELD.sub(fill, template)


def as_text(value: Any) -> str:
    """A value as it goes into a question: text as is, a missing value (None, NaN, NA) as nothing."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, float) and math.isnan(value):
        return ""
    if type(value).__name__ in ("NAType", "NaTType"):
        return ""
    return str(value)


# -- results ------------------------------------------------------------------------------------
class MapResults(list[Any]):
    """The answers in input order: parsed objects with a schema, else the text; None for a row that
    failed (``errors`` says why). ``rows`` holds every row's RowResult (usage, cost, attempts)."""

    def __init__(self, values: Iterable[Any], rows: list[RowResult], *, interrupted: bool = False,
                 stopped: str | None = None, job_id: str | None = None, stats: LimitStats | None = None) -> None:
        super().__init__(values)
        self.rows = rows
        self.stats = stats  # what the adaptive concurrency did (429s heard, cuts, peak in flight)
        self.interrupted = interrupted  # KeyboardInterrupt or stop(): rows not asked are "pending"
        self.stopped = stopped  # why the run stopped early (an endpoint-wide failure), if it did
        self.job_id = job_id  # the Batch API job (mode="batch"): bot.map_results(job_id) collects it later

    @property
    def errors(self) -> dict[int, str]:
        """Row position -> its one-line error, for every row without an answer."""
        return {position: row.error or row.status for position, row in enumerate(self.rows) if row.status != "done"}

    @property
    def cost(self) -> float | None:
        """USD the answers cost (rows answered by an earlier run included; None when a price is unknown)."""
        costs = [row.cost for row in self.rows if row.usage is not None]
        return None if any(cost is None for cost in costs) else sum(cost for cost in costs if cost is not None)


def value_of(result: RowResult, schema: Any) -> Any:
    """What a row gives back: its parsed object with a schema, its text without (None if it failed)."""
    if result.status != "done":
        return None
    return result.parsed if schema is not None else result.text


def frame_of(items: Items, rows: list[RowResult], json_schema: dict[str, Any] | None) -> Any:
    """The DataFrame of results on the items' index: the schema's fields (or ``answer``), ``error``, ``cost``."""
    import pandas as pd  # type: ignore[import-untyped]

    properties = _properties(json_schema)
    clash = sorted(set(properties or ()) & set(RESULT_COLUMNS))
    if clash:
        raise ConfigurationError(f"the schema has a field named {clash[0]!r}, which would hide the result's "
                                 f"{clash[0]!r} column: rename the field")
    columns: dict[str, Any] = {}
    if properties is not None:
        plain = [_plain(row.parsed) if row.status == "done" else None for row in rows]
        for name, spec in properties.items():
            values = [value.get(name) if isinstance(value, dict) else None for value in plain]
            columns[name] = _typed(pd, values, _resolve(spec, json_schema or {}))
    else:
        values = [(_plain(row.parsed) if json_schema is not None else row.text) if row.status == "done" else None
                  for row in rows]
        columns["answer"] = pd.Series(values, dtype="string" if json_schema is None else object)
    columns["error"] = pd.Series([None if row.status == "done" else (row.error or row.status) for row in rows],
                                 dtype="string")
    columns["cost"] = pd.Series([row.cost for row in rows], dtype="Float64")
    return pd.DataFrame({name: series.array for name, series in columns.items()}, index=items.index)


def _properties(json_schema: dict[str, Any] | None) -> dict[str, Any] | None:
    if not isinstance(json_schema, dict):
        return None
    properties = json_schema.get("properties")
    return properties if isinstance(properties, dict) and properties else None


def _plain(value: Any) -> Any:
    """A parsed object as plain JSON values (a model or dataclass as a dict, an enum as its value)."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    from pydantic_core import to_jsonable_python

    return to_jsonable_python(value)


def _resolve(spec: Any, root: dict[str, Any]) -> dict[str, Any]:
    """A property's schema with a local $ref followed and an Optional (anyOf with null) unwrapped."""
    for _ in range(8):
        if not isinstance(spec, dict):
            return {}
        ref = spec.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/"):
            target: Any = root
            for key in ref[2:].split("/"):
                target = target.get(key, {}) if isinstance(target, dict) else {}
            spec = target
            continue
        options = spec.get("anyOf") or spec.get("oneOf")
        if isinstance(options, list):
            kept = [option for option in options if not (isinstance(option, dict) and option.get("type") == "null")]
            if len(kept) == 1:
                spec = kept[0]
                continue
        kind = spec.get("type")
        if isinstance(kind, list):
            kinds = [k for k in kind if k != "null"]
            if len(kinds) == 1:
                return {**spec, "type": kinds[0]}
        return spec
    return {}


def _typed(pd: Any, values: list[Any], spec: dict[str, Any]) -> Any:
    """A column of ``values`` in the dtype its JSON Schema says (object when it says nothing simple)."""
    kind = spec.get("type")
    enum = spec.get("enum")
    try:
        if isinstance(enum, list) and enum and all(isinstance(choice, str) for choice in enum):
            return pd.Series(pd.Categorical(values, categories=list(dict.fromkeys(enum))))
        if kind == "integer":
            return pd.Series(values, dtype="Int64")
        if kind == "number":
            return pd.Series(values, dtype="Float64")
        if kind == "boolean":
            return pd.Series(values, dtype="boolean")
        if kind == "string":
            return pd.Series(values, dtype="string")
    except (TypeError, ValueError):
        pass  # a value the schema did not promise (a JSON-mode answer): the column stays as it came
    return pd.Series(values, dtype=object)


def _is_pandas(value: Any, name: str) -> bool:
    kind = type(value)
    return kind.__module__.split(".")[0] == "pandas" and any(cls.__name__ == name for cls in kind.__mro__)


def _listed(fields: Iterable[str]) -> str:
    names = list(fields)
    shown = ", ".join(names[:12]) + (f", ... ({len(names)} in all)" if len(names) > 12 else "")
    return shown or "none"
