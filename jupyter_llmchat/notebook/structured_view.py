"""How ``%%chat --schema Name`` shows its answer: the parsed object as a small table or pretty JSON.

While the answer streams, its raw JSON shows as it comes (``FormattedSink``'s live view); at the
end the same output shows the validated object: a field/value table for a flat object, a table of
rows for an object holding one list of flat objects, else indented JSON. An answer that yielded
no object (cut short, invalid after the repair round) shows as received, and the footer says
why (a refusal: its notice). Values are the model's text: tables escape every cell and every
Markdown output goes through ``safe_markdown``; ``text/plain`` carries them exactly.
"""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any

from ..core.reply import Reply
from .footer import footer_markdown
from .formatted import FormattedSink
from .tables import table_bundle

__all__ = ["StructuredSink", "object_bundle", "plain_data"]

MAX_FIELDS = 40  # a flat object with more fields shows as JSON
MAX_ROWS = 200  # a list of objects with more rows shows as JSON
MAX_COLUMNS = 20
_SCALARS = (str, int, float, bool, type(None))


class StructuredSink(FormattedSink):
    """The ``--schema`` view: streams the raw JSON, ends with the parsed object (``object_bundle``)."""

    def __init__(self, **options: Any) -> None:
        super().__init__("json", **options)

    def _show_final(self, reply: Reply) -> None:
        if reply.parsed is None:
            if reply.refusal is not None and not reply.text:
                self._blank()  # nothing was answered: the footer says the model refused
                self._footer(reply)
                return
            super()._show_final(reply)  # as received, pretty if it is JSON at all
            return
        bundle = object_bundle(reply.parsed)
        if self.in_kernel:
            self._show(bundle)
        else:
            print(bundle["text/plain"])
        self._footer(reply)

    def _blank(self) -> None:
        if self.in_kernel and self._shown is not None:
            self._show({"text/plain": ""})

    def _footer(self, reply: Reply) -> None:
        footer = footer_markdown(reply, facts=self.footer)
        if footer is None:
            return
        if self.in_kernel:
            self._publish(f"{self._id}-footer", {"text/markdown": footer[0], "text/plain": footer[1]}, update=False)
        else:
            print(footer[1])


def plain_data(value: Any) -> Any:
    """``value`` as JSON data: a pydantic model or dataclass dumped (dates as text), a dict as it is."""
    try:
        import pydantic
    except ImportError:  # pragma: no cover - pydantic is a dependency
        pydantic = None  # type: ignore[assignment]
    if pydantic is not None and isinstance(value, pydantic.BaseModel):
        return value.model_dump(mode="json")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        if pydantic is not None:
            return pydantic.TypeAdapter(type(value)).dump_python(value, mode="json")
        return json.loads(json.dumps(dataclasses.asdict(value), default=str))
    return value


def object_bundle(value: Any) -> dict[str, str]:
    """The display bundle of a parsed object: a table when it is tabular, else indented JSON."""
    data = plain_data(value)
    rows = _table_rows(data)
    if rows is not None:
        return table_bundle(rows)
    pretty = json.dumps(data, indent=2, ensure_ascii=False, default=str)
    fence = "`" * max(3, _longest_backtick_run(pretty) + 1)  # a value holding ``` cannot close the block
    return {"text/plain": pretty, "text/markdown": f"{fence}json\n{pretty}\n{fence}"}


def _longest_backtick_run(text: str) -> int:
    runs = re.findall(r"`+", text)
    return max(map(len, runs), default=0)


def _table_rows(data: Any) -> list[list[str]] | None:
    """[header, *rows] for a flat object (field, value) or an object holding one list of flat
    objects (one row each); None for anything else."""
    if not isinstance(data, dict) or not data:
        return None
    if len(data) <= MAX_FIELDS and all(isinstance(v, _SCALARS) for v in data.values()):
        return [["field", "value"], *([str(k), _cell(v)] for k, v in data.items())]
    if len(data) == 1:
        (items,) = data.values()
        if (isinstance(items, list) and 0 < len(items) <= MAX_ROWS and all(isinstance(item, dict) for item in items)
                and all(isinstance(v, _SCALARS) for item in items for v in item.values())):
            columns = list(dict.fromkeys(key for item in items for key in item))
            if 0 < len(columns) <= MAX_COLUMNS:
                return [columns, *([_cell(item.get(c, "")) for c in columns] for item in items)]
    return None


def _cell(value: Any) -> str:
    """A table cell: text as it is, other values as JSON writes them (true, null, 3.5)."""
    return value if isinstance(value, str) else json.dumps(value)
