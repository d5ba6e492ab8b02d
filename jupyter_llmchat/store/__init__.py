"""Persistence: the SQLite store (conversations, response cache, usage ledger) and transcripts.

Depends on the core only; the core never imports it. Modules build on each other one way:
errors <- migrations <- database <- conversations, cache, ledger <- store (the Store facade).
"""

from .errors import StoreError
from .store import Store, open_store

__all__ = ["Store", "StoreError", "open_store"]
