"""The usage ledger: one row per answer (tokens, cost, time) and totals per session, model and day.

Costs come from one price table (``models.model_info(model).cost``), cached prompt tokens priced
as the provider prices them. A cache hit is billed nothing: its row has zero tokens and cost 0,
and ``saved`` holds what the original answer cost.
"""

from __future__ import annotations

import html
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..core.models import model_info

if TYPE_CHECKING:
    from ..core.reply import Reply
    from .store import Store

GROUPS = {"session": "COALESCE(session, '')", "model": "model",
          "day": "date(time, 'unixepoch', 'localtime')"}
BAR = "█"


def price(model: str, prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0,
          *, fallback: str | None = None) -> float | None:
    """USD for one request from the price table; None when neither model has a price."""
    cost = model_info(model).cost(prompt_tokens, completion_tokens, cached_tokens)
    if cost is None and fallback and fallback != model:
        cost = model_info(fallback).cost(prompt_tokens, completion_tokens, cached_tokens)
    return cost


def ledger_row(reply: Reply, *, session: str | None = None, conversation: int | None = None,
               at: float | None = None) -> dict[str, Any]:
    """The ledger row for one finished reply."""
    requested = (reply.request or {}).get("model")
    usage = reply.usage
    tokens = (usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens) if usage else (0, 0, 0)
    # The endpoint may answer with a dated snapshot; the requested name prices it if that has none.
    full = price(reply.model, *tokens, fallback=requested) if usage else None
    if reply.from_cache:
        billed, cost, saved = (0, 0, 0), 0.0, full
    else:
        # No usage reported: nothing was generated (cost 0), or a stream was cut (cost unknown).
        billed, cost, saved = tokens, full if usage or reply.text else 0.0, None
    return {"session": session, "conversation": conversation, "model": reply.model,
            "time": time.time() if at is None else at, "prompt_tokens": billed[0],
            "completion_tokens": billed[1], "cached_tokens": billed[2], "cost": cost, "saved": saved,
            "from_cache": int(reply.from_cache), "status": reply.status, "total_time": reply.total_time}


@dataclass(frozen=True)
class UsageRow:
    """Totals for one group (``keys`` maps each grouping column to its value)."""

    keys: dict[str, str] = field(default_factory=dict)
    requests: int = 0
    cache_hits: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    cost: float = 0.0  # USD, over the requests whose price is known
    unpriced: int = 0  # requests whose cost is unknown (model not in the price table)
    saved: float = 0.0  # USD the cache hits would have cost

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


def usage_summary(store: Store, by: tuple[str, ...] | str = ("session", "model", "day"), *,
                  since: float | None = None, session: str | None = None) -> list[UsageRow]:
    """Ledger totals grouped by any of ``session``, ``model``, ``day``; ``()`` for one total row."""
    by = (by,) if isinstance(by, str) else tuple(by)
    unknown = [name for name in by if name not in GROUPS]
    if unknown:
        from .store import StoreError

        raise StoreError(f"cannot group usage by {', '.join(map(repr, unknown))}; choose from "
                        f"{', '.join(GROUPS)}")
    where, args = [], []
    if since is not None:
        where.append("time >= ?")
        args.append(since)
    if session is not None:
        where.append("session = ?")
        args.append(session)
    keys = ", ".join(f"{GROUPS[name]} AS {name}" for name in by)
    sql = ("SELECT " + (keys + ", " if keys else "")
           + "COUNT(*) AS requests, COALESCE(SUM(from_cache), 0) AS cache_hits, "
           "COALESCE(SUM(prompt_tokens), 0) AS prompt_tokens, "
           "COALESCE(SUM(completion_tokens), 0) AS completion_tokens, "
           "COALESCE(SUM(cached_tokens), 0) AS cached_tokens, COALESCE(SUM(cost), 0.0) AS cost, "
           "COALESCE(SUM(cost IS NULL), 0) AS unpriced, COALESCE(SUM(saved), 0.0) AS saved FROM ledger"
           + (" WHERE " + " AND ".join(where) if where else "")
           + (f" GROUP BY {', '.join(by)} ORDER BY {', '.join(by)}" if by else ""))
    rows = store.query(sql, tuple(args))
    if not by and rows and rows[0]["requests"] == 0:
        return []
    return [UsageRow(keys={name: row.pop(name) for name in by}, **row) for row in rows]


def usage_rows(store: Store, *, session: str | None = None) -> list[dict[str, Any]]:
    """Per (session, model) rows plus a "total" row, in the shape usage.py's tables take
    (``usage.to_markdown(usage_rows(store))``): the persistent ledger behind ``%chat usage``."""
    rows = usage_summary(store, ("session", "model"), session=session)
    out = [_usage_dict(row, row.keys["session"], row.keys["model"]) for row in rows]
    return out + [_usage_dict(total(rows), "total", "")] if rows else []


def _usage_dict(row: UsageRow, session: str, model: str) -> dict[str, Any]:
    return {"session": session, "model": model, "requests": row.requests, "prompt_tokens": row.prompt_tokens,
            "cached_tokens": row.cached_tokens, "completion_tokens": row.completion_tokens,
            "total_tokens": row.total_tokens, "cost_usd": None if row.unpriced else row.cost}


def total(rows: list[UsageRow]) -> UsageRow:
    """The sum of ``rows``."""
    sums = {name: sum(getattr(row, name) for row in rows)
            for name in ("requests", "cache_hits", "prompt_tokens", "completion_tokens",
                         "cached_tokens", "cost", "unpriced", "saved")}
    return UsageRow(keys={}, **sums)


def format_usage(rows: list[UsageRow], *, width: int = 20) -> str:
    """A plain-text table with a bar per row (cost, or tokens when nothing is priced) and a total."""
    if not rows:
        return "no usage recorded yet\n"
    names = list(rows[0].keys) or [""]
    measure = _measure(rows)
    top = max(measure(row) for row in rows) or 1
    table = [[*names, "requests", "cached", "prompt", "completion", "cost", ""]]
    for row in rows:
        bar = BAR * max(1 if measure(row) else 0, round(width * measure(row) / top))
        table.append([*_keys(row, names), *_numbers(row), bar])
    table.append(["total", *[""] * (len(names) - 1), *_numbers(total(rows)), ""])
    widths = [max(len(line[column]) for line in table) for column in range(len(table[0]))]
    numeric = range(len(names), len(names) + 5)
    return "".join("  ".join(cell.rjust(widths[i]) if i in numeric else cell.ljust(widths[i])
                             for i, cell in enumerate(line)).rstrip() + "\n" for line in table)


def usage_html(rows: list[UsageRow]) -> str:
    """An HTML table of ``rows`` with inline bars (no scripts, no external styles)."""
    if not rows:
        return "<p>no usage recorded yet</p>"
    names = list(rows[0].keys) or [""]
    measure = _measure(rows)
    top = max(measure(row) for row in rows) or 1
    head = "".join(f"<th>{html.escape(label)}</th>" for label in
                   [*names, "requests", "cached", "prompt", "completion", "cost", ""])
    body = []
    for row in rows:
        percent = round(100 * measure(row) / top)
        bar = (f'<div style="background:#4c78a8;height:0.8em;width:{percent}%;min-width:2px"></div>'
               if measure(row) else "")
        body.append(_html_row(_keys(row, names), _numbers(row), bar))
    body.append(_html_row(["total", *[""] * (len(names) - 1)], _numbers(total(rows)), ""))
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _html_row(keys: list[str], numbers: list[str], bar: str) -> str:
    return ("<tr>" + "".join(f"<td>{html.escape(key)}</td>" for key in keys)
            + "".join(f'<td style="text-align:right">{html.escape(value)}</td>' for value in numbers)
            + f'<td style="width:8em">{bar}</td></tr>')


def _keys(row: UsageRow, names: list[str]) -> list[str]:
    return [str(row.keys[name]) for name in names] if row.keys else ["all"]


def _numbers(row: UsageRow) -> list[str]:
    cost = f"${row.cost:.4f}" + ("+?" if row.unpriced else "")
    return [f"{row.requests:,}", f"{row.cache_hits:,}", f"{row.prompt_tokens:,}",
            f"{row.completion_tokens:,}", cost]


def _measure(rows: list[UsageRow]) -> Any:
    """Bars show cost; when nothing in view has a cost (local models), tokens."""
    if any(row.cost for row in rows):
        return lambda row: row.cost
    return lambda row: row.total_tokens
