"""The usage ledger: one row per finished reply (tokens, cost, time), totals per session, model, day.

The one ledger: ``%chat usage`` reads it whether the store is a file or ``":memory:"``. Costs come
from one price table (``models.model_info(model).cost``), cached prompt tokens priced as the
provider prices them. A cache hit is billed nothing: its row has zero tokens and cost 0, and
``saved`` holds what the original answer cost. A reply of the offline demo server (``Reply.demo``)
is no model's: its row is marked ``demo`` and costs 0. A reply of the Batch API (``Reply.batch``)
is priced at its price (``models.BATCH_PRICE_SHARE`` of the standard one) and marked ``batch``.

A reply the endpoint reported no usage for is still one request. When text arrived, the core
counted the prompt it sent and the text it received itself (``Usage.source == "counted"``): the
row holds those counts, priced as usual, marked ``usage_source = "counted"``. When no text arrived
(the request failed or was stopped before the answer began: nothing was generated), the row counts
0 tokens, costs $0 and is marked ``usage_source = "missing"``. ``reply_usage`` is the one place
that decides.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from ..core.models import model_info
from .errors import StoreError

if TYPE_CHECKING:
    from ..core.reply import Reply, Usage
    from .database import Database

GROUPS = {"session": "COALESCE(session, '')", "model": "model",
          "day": "date(time, 'unixepoch', 'localtime')"}
# Where a row's token counts come from: the endpoint's report (a cache hit's zero is known too),
# our own count of what was sent and received (the endpoint reported none), or nowhere (0 tokens).
UsageSource = Literal["reported", "counted", "missing"]


def reply_usage(reply: Reply) -> tuple[Usage | None, UsageSource]:
    """The token counts the ledger has for ``reply``, and where they come from."""
    if reply.from_cache:
        return reply.usage, "reported"
    if reply.usage is not None:
        return reply.usage, "counted" if reply.usage.source == "counted" else "reported"
    return None, "missing"


def price(model: str, prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0,
          *, fallback: str | None = None, batch: bool = False) -> float | None:
    """USD for one request from the price table (``batch``: the Batch API's); None when neither
    model has a price."""
    cost = model_info(model).cost(prompt_tokens, completion_tokens, cached_tokens, batch=batch)
    if cost is None and fallback and fallback != model:
        cost = model_info(fallback).cost(prompt_tokens, completion_tokens, cached_tokens, batch=batch)
    return cost


def ledger_row(reply: Reply, *, session: str | None = None, conversation: int | None = None,
               at: float | None = None) -> dict[str, Any]:
    """The ledger row for one finished reply (the rule for replies without usage: module docstring)."""
    requested = (reply.request or {}).get("model")
    usage, source = reply_usage(reply)
    tokens = (usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens) if usage else (0, 0, 0)
    # The endpoint may answer with a dated snapshot; the requested name prices it if that has none.
    full = price(reply.model, *tokens, fallback=requested, batch=reply.batch) if usage else None
    cost: float | None
    if reply.from_cache:
        billed, cost, saved = (0, 0, 0), 0.0, full
    elif reply.demo:
        billed, cost, saved = tokens, 0.0, None
    elif usage is not None:
        billed, cost, saved = tokens, full, None
    else:
        billed, cost, saved = (0, 0, 0), (None if reply.text else 0.0), None
    return {"session": session, "conversation": conversation, "model": reply.model,
            "time": time.time() if at is None else at, "prompt_tokens": billed[0],
            "completion_tokens": billed[1], "cached_tokens": billed[2], "cost": cost, "saved": saved,
            "from_cache": int(reply.from_cache), "status": reply.status, "total_time": reply.total_time,
            "usage_source": source, "demo": int(reply.demo), "batch": int(reply.batch)}


def record(database: Database, reply: Reply, *, session: str | None = None,
           conversation: int | None = None) -> None:
    """Add the ledger row for ``reply`` in one transaction."""
    row = ledger_row(reply, session=session, conversation=conversation)
    with database.transaction() as db:
        db.execute(f"INSERT INTO ledger ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                   tuple(row.values()))


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
    unpriced: int = 0  # requests whose cost is unknown (model not in the price table, or no usage)
    saved: float = 0.0  # USD the cache hits would have cost
    unreported: int = 0  # requests the endpoint reported no usage for (counted as 0 tokens)
    demo: int = 0  # requests the offline demo server answered (no model, no cost)
    batch: int = 0  # requests sent through the Batch API (billed at its price)

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


def usage_summary(database: Database, by: tuple[str, ...] | str = ("session", "model", "day"), *,
                  since: float | None = None, session: str | None = None) -> list[UsageRow]:
    """Ledger totals grouped by any of ``session``, ``model``, ``day``; ``()`` for one total row."""
    by = (by,) if isinstance(by, str) else tuple(by)
    unknown = [name for name in by if name not in GROUPS]
    if unknown:
        raise StoreError(f"cannot group usage by {', '.join(map(repr, unknown))}; choose from "
                         f"{', '.join(GROUPS)}")
    where: list[str] = []
    args: list[Any] = []
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
           "COALESCE(SUM(cost IS NULL), 0) AS unpriced, COALESCE(SUM(saved), 0.0) AS saved, "
           "COALESCE(SUM(usage_source = 'missing'), 0) AS unreported, COALESCE(SUM(demo), 0) AS demo, "
           "COALESCE(SUM(batch), 0) AS batch FROM ledger"
           + (" WHERE " + " AND ".join(where) if where else "")
           + (f" GROUP BY {', '.join(by)} ORDER BY {', '.join(by)}" if by else ""))
    rows = database.query(sql, tuple(args))
    if not by and rows and rows[0]["requests"] == 0:
        return []
    return [UsageRow(keys={name: row.pop(name) for name in by}, **row) for row in rows]


def total(rows: list[UsageRow]) -> UsageRow:
    """The sum of ``rows``."""
    sums = {name: sum(getattr(row, name) for row in rows)
            for name in ("requests", "cache_hits", "prompt_tokens", "completion_tokens",
                         "cached_tokens", "cost", "unpriced", "saved", "unreported", "demo", "batch")}
    return UsageRow(keys={}, **sums)
