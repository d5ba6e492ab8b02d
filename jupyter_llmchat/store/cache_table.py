"""What every cache kept in one table of the store's database does alike: count its entries and
forget them all (the response cache, the embedding cache)."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from .database import Database

__all__ = ["CacheTable"]


class CacheTable:
    """A cache in one table of a store's database; a subclass names the ``table`` (our own name,
    never user text: it is put into the SQL as it is)."""

    table: ClassVar[str]

    def __init__(self, database: Database) -> None:
        self.database = database

    def clear(self) -> int:
        """Forget every entry; returns how many."""
        with self.database.transaction() as db:
            return db.execute(f"DELETE FROM {self.table}").rowcount

    def __len__(self) -> int:
        return int(self.database.query(f"SELECT COUNT(*) AS n FROM {self.table}")[0]["n"])
