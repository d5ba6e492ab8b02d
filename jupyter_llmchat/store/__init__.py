"""Persistence: the SQLite store (conversations, response cache, usage ledger) and transcripts.

Depends on the core only; the core never imports it.
"""

from .store import Store, StoreError, open_store

__all__ = ["Store", "StoreError", "open_store"]
