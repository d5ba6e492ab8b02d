"""Tokens and cost per session and model for ``%chat usage``, from every finished reply.

Replies are heard through ``Chatbot.reply_listeners``, so one-off questions (``--no-history``)
and conversations that were reset still count. The ledger lives in memory for the kernel's life;
the store can replace ``usage_rows`` with its persistent ledger.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..core.chatbot import Chatbot
    from ..core.reply import Reply

COLUMNS = ("session", "model", "requests", "prompt_tokens", "cached_tokens", "completion_tokens",
           "total_tokens", "cost_usd")


@dataclass(frozen=True)
class Entry:
    """One finished reply."""

    session: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    cost: float | None  # None when the model's price is unknown
    from_cache: bool = False


class UsageLedger:
    """Every reply of the sessions it is attached to."""

    def __init__(self) -> None:
        self.entries: list[Entry] = []

    def attach(self, bot: Chatbot, session: str) -> None:
        """Record each reply ``bot`` finishes under ``session``."""
        bot.reply_listeners.append(lambda reply: self.record(session, reply))

    def record(self, session: str, reply: Reply) -> None:
        usage = reply.usage
        if usage is None and not reply.from_cache:
            return  # nothing was counted (e.g. a request that failed before the stream started)
        self.entries.append(Entry(
            session, reply.model, usage.prompt_tokens if usage else 0,
            usage.completion_tokens if usage else 0, usage.cached_tokens if usage else 0,
            0.0 if reply.from_cache else reply.cost, reply.from_cache))

    def rows(self) -> list[dict[str, Any]]:
        return usage_rows(self.entries)


def usage_rows(entries: Iterable[Entry]) -> list[dict[str, Any]]:
    """One row per (session, model) with summed tokens and cost, plus a final "total" row.

    A cost of None means some reply in the row used a model without a known price. Cache hits
    count as requests that cost nothing (the tokens were paid when the answer was first made).
    """
    groups: dict[tuple[str, str], dict[str, Any]] = {}
    for entry in entries:
        row = groups.setdefault((entry.session, entry.model), {
            "session": entry.session, "model": entry.model, "requests": 0, "prompt_tokens": 0,
            "cached_tokens": 0, "completion_tokens": 0, "total_tokens": 0, "cost_usd": 0.0})
        row["requests"] += 1
        if not entry.from_cache:
            row["prompt_tokens"] += entry.prompt_tokens
            row["cached_tokens"] += entry.cached_tokens
            row["completion_tokens"] += entry.completion_tokens
            row["total_tokens"] += entry.prompt_tokens + entry.completion_tokens
        row["cost_usd"] = None if row["cost_usd"] is None or entry.cost is None else row["cost_usd"] + entry.cost
    rows = [groups[key] for key in sorted(groups)]
    if rows:
        total: dict[str, Any] = {"session": "total", "model": ""}
        for column in COLUMNS[2:]:
            values = [row[column] for row in rows]
            total[column] = None if None in values else sum(values)
        rows.append(total)
    return rows


def format_cost(cost: float | None) -> str:
    return "unknown" if cost is None else f"${cost:.6f}"


def to_markdown(rows: list[dict[str, Any]]) -> str:
    """Rows as a Markdown table (cost in USD, "unknown" for models without a price)."""
    if not rows:
        return "No replies yet in this kernel."
    header = "| " + " | ".join(COLUMNS) + " |"
    rule = "|" + "|".join("---" if c in ("session", "model") else "---:" for c in COLUMNS) + "|"
    lines = [header, rule]
    for row in rows:
        cells = [format_cost(row[c]) if c == "cost_usd" else str(row[c]) for c in COLUMNS]
        if row["session"] == "total":
            cells = [f"**{cell}**" if cell else cell for cell in cells]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def to_text(rows: list[dict[str, Any]]) -> str:
    """Rows as an aligned plain-text table, for terminals."""
    if not rows:
        return "No replies yet in this kernel."
    table = [list(COLUMNS)] + [[format_cost(row[c]) if c == "cost_usd" else str(row[c]) for c in COLUMNS]
                               for row in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(COLUMNS))]
    return "\n".join("  ".join(cell.ljust(w) if i < 2 else cell.rjust(w) for i, (cell, w) in
                               enumerate(zip(line, widths))).rstrip() for line in table)
