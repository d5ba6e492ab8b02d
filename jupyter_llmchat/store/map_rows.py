"""The rows ``Chatbot.map`` has answered, by request key: what makes a map resumable.

A row's key is the SHA-256 of its request (model, messages, params; ``core.rows``), so the same
call after a crash, an interrupt or a kernel restart finds every row answered before and asks
only the others. Only whole answers are kept (a failed row is asked again next time); the parsed
value is not stored but parsed again from the text, into the caller's own schema class.

``save`` writes a batch of finished rows in one transaction, so 10,000 rows cost a few dozen
commits. (The ledger hears of every row as of any reply: through the bot's reply listeners.)
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict
from typing import TYPE_CHECKING, Literal

from ..core.reply import Usage
from ..core.rows import RowRequest, RowResult
from .errors import StoreError

if TYPE_CHECKING:
    from .database import Database

KEYS_PER_QUERY = 500  # SQLite takes at most 999 parameters per statement in older builds
RowSource = Literal["map", "batch"]


class MapRows:
    """Implements ``mapping.RowStore`` on the ``map_rows`` table of a store's database."""

    def __init__(self, database: Database, *, source: RowSource = "map") -> None:
        self.database = database
        self.source = source

    def answered(self, keys: Sequence[str]) -> dict[str, RowResult]:
        """The rows among ``keys`` answered before (index -1: the caller places them). A store that
        cannot be read warns once and finds nothing: every row is asked."""
        try:
            return self._answered(keys)
        except StoreError as error:
            self.database.warn_once("read the answered rows of a map", error)
            return {}

    def _answered(self, keys: Sequence[str]) -> dict[str, RowResult]:
        found: dict[str, RowResult] = {}
        unique = list(dict.fromkeys(keys))
        for start in range(0, len(unique), KEYS_PER_QUERY):
            chunk = unique[start:start + KEYS_PER_QUERY]
            rows = self.database.query(
                f"SELECT key, text, usage, cost, attempts FROM map_rows WHERE key IN ({', '.join('?' * len(chunk))})",
                tuple(chunk))
            for row in rows:
                usage = Usage(**json.loads(row["usage"])) if row["usage"] else None
                found[row["key"]] = RowResult(-1, row["key"], "done", text=row["text"], usage=usage,
                                              cost=row["cost"], attempts=row["attempts"])
        return found

    def save(self, rows: Sequence[tuple[RowRequest, RowResult]]) -> None:
        """Keep the answered ones among finished rows, in one transaction. A failed write warns
        once (the answers are still returned, only not kept)."""
        if not rows:
            return
        try:
            self._save(rows)
        except StoreError as error:
            self.database.warn_once("save the answered rows of a map", error)

    def _save(self, rows: Sequence[tuple[RowRequest, RowResult]]) -> None:
        now = time.time()
        answers = [(result.key, request.model, result.text or "", "stop", _usage_json(result.usage), result.cost,
                    result.attempts, self.source, now)
                   for request, result in rows if result.status == "done"]
        if answers:
            with self.database.transaction() as db:
                db.executemany("INSERT OR REPLACE INTO map_rows (key, model, text, finish_reason, usage, cost, "
                               "attempts, source, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", answers)

    def forget(self, keys: Sequence[str] | None = None) -> int:
        """Forget answered rows (``keys``, or all): the next map asks them again. Returns how many."""
        with self.database.transaction() as db:
            if keys is None:
                return db.execute("DELETE FROM map_rows").rowcount
            removed = 0
            unique = list(dict.fromkeys(keys))
            for start in range(0, len(unique), KEYS_PER_QUERY):
                chunk = unique[start:start + KEYS_PER_QUERY]
                removed += db.execute(f"DELETE FROM map_rows WHERE key IN ({', '.join('?' * len(chunk))})",
                                      tuple(chunk)).rowcount
            return removed

    def __len__(self) -> int:
        return int(self.database.query("SELECT COUNT(*) AS n FROM map_rows")[0]["n"])

    def __repr__(self) -> str:
        return f"MapRows({self.database.path!r})"


def _usage_json(usage: Usage | None) -> str | None:
    return json.dumps(asdict(usage)) if usage is not None else None

