"""The one table renderer of the ``%chat`` commands: Markdown for notebooks, aligned text for
terminals, in one display bundle.

Cells are text, and some come from outside (model names an endpoint reports, session names), so
in the Markdown every character that could start markup (HTML, links, emphasis, math, a cell
boundary) is backslash-escaped: front ends show it as written. The whole table then goes through
``safe_markdown`` like every Markdown we publish (the note is our prose: a cost in it stays a cost).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..store.transcript import markdown_literal
from .safe_markdown import safe_markdown


def markdown_cell(value: str) -> str:
    """``value`` as literal text inside a Markdown table cell (one line)."""
    return markdown_literal(value)


def table_bundle(rows: Sequence[Sequence[str]], *, numeric: Sequence[int] = (),
                 note: str | None = None) -> dict[str, str]:
    """``rows[0]`` is the header; columns in ``numeric`` are right-aligned; ``note`` follows the table."""
    header, *body = rows
    rule = "|" + "".join("---:|" if i in numeric else "---|" for i in range(len(header)))
    markdown = ["| " + " | ".join(markdown_cell(v) for v in header) + " |", rule]
    markdown += ["| " + " | ".join(markdown_cell(v) for v in row) + " |" for row in body]
    flat = [[" ".join(v.splitlines()) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in flat) for i in range(len(header))]
    text = ["  ".join(v.rjust(w) if i in numeric else v.ljust(w) for i, (v, w) in enumerate(zip(row, widths)))
            .rstrip() for row in flat]
    if note:
        markdown += ["", note]
        text += ["", note]
    return {"text/plain": "\n".join(text), "text/markdown": safe_markdown("\n".join(markdown))}


def show(bundle: dict[str, Any]) -> None:
    """Display a MIME bundle as the cell's output."""
    from IPython.display import display

    display(bundle, raw=True)


def show_table(rows: Sequence[Sequence[str]], *, numeric: Sequence[int] = (), note: str | None = None) -> None:
    """Display ``table_bundle(rows, ...)``."""
    show(table_bundle(rows, numeric=numeric, note=note))
