"""The SQLite connection every part of the store builds on: one file, one lock, transactions.

One file (default: ``store.sqlite3`` under the user's data directory; ``JUPYTER_LLMCHAT_STORE``
or a path to choose; ``":memory:"`` to keep nothing), created readable by its owner only, in WAL
mode so a kernel killed mid-answer leaves it readable and two kernels can write at once. Opening
brings the schema up to date (migrations.py). Thread-safe: one connection guarded by a lock (the
panel may ask from a worker thread).
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .errors import StoreError
from .migrations import MIGRATIONS, Migrations

STORE_ENV = "JUPYTER_LLMCHAT_STORE"
MEMORY = ":memory:"
BUSY_TIMEOUT = 30.0  # seconds to wait for another kernel's write lock before failing


def default_path() -> Path:
    """``$JUPYTER_LLMCHAT_STORE`` if set, else ``store.sqlite3`` in the user's data directory."""
    chosen = os.environ.get(STORE_ENV)
    if chosen:
        return Path(chosen).expanduser()
    import platformdirs  # only when a default path is needed

    return Path(platformdirs.user_data_dir("jupyter_llmchat")) / "store.sqlite3"


def resolve_path(path: str | os.PathLike[str] | None) -> str:
    """The file a store at ``path`` uses: ``":memory:"`` as is, None for ``default_path()``."""
    if path == MEMORY:
        return MEMORY
    return str(Path(path).expanduser() if path else default_path())


class Database:
    """An open store file with its schema up to date (``migrations``: the registry that says so)."""

    def __init__(self, path: str | os.PathLike[str] | None = None, *, busy_timeout: float = BUSY_TIMEOUT,
                 migrations: Migrations = MIGRATIONS) -> None:
        self.path = resolve_path(path)
        self._lock = threading.RLock()
        if Path(self.path).is_dir():
            raise StoreError(f"cannot open the store {self.path}: it is a directory; give a file path "
                             f"such as {Path(self.path) / 'store.sqlite3'}")
        connection: sqlite3.Connection | None = None
        try:
            if self.path != MEMORY:
                _create_private(Path(self.path))
            connection = sqlite3.connect(self.path, timeout=busy_timeout, isolation_level=None,
                                         check_same_thread=False)
            _configure(connection, in_memory=self.path == MEMORY)
            migrations.apply(connection, self.path)
        except (OSError, sqlite3.DatabaseError) as error:
            if connection is not None:
                connection.close()
            reason = error.strerror if isinstance(error, OSError) and error.strerror else error
            raise StoreError(f"cannot open the store {self.path}: {reason}; pass another path or "
                             f"move the file away") from None
        except BaseException:
            if connection is not None:
                connection.close()
            raise
        self._db = connection

    @property
    def in_memory(self) -> bool:
        """True for ``":memory:"``: nothing outlives the process."""
        return self.path == MEMORY

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: committed on success, rolled back on any error (or interrupt)."""
        with self._lock:
            db = self._db
            # IMMEDIATE takes the write lock now, so two kernels queue instead of deadlocking.
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:  # also when COMMIT itself failed (disk full, I/O error)
                    db.execute("ROLLBACK")
                raise

    def query(self, sql: str, args: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        """Rows of a read-only query, as dicts."""
        with self._lock:
            cursor = self._db.execute(sql, args)
            names = [column[0] for column in cursor.description]
            return [dict(zip(names, row)) for row in cursor.fetchall()]

    def close(self) -> None:
        """Close the file (a checkpoint folds the WAL back into it)."""
        with self._lock:
            self._db.close()

    def __repr__(self) -> str:
        return f"Database({self.path!r})"


def _configure(db: sqlite3.Connection, *, in_memory: bool) -> None:
    db.execute("PRAGMA foreign_keys = ON")
    if not in_memory:
        db.execute("PRAGMA journal_mode = WAL")
        # WAL + NORMAL: a commit survives the process being killed; only power loss can undo it.
        db.execute("PRAGMA synchronous = NORMAL")


def _create_private(path: Path) -> None:
    """Create the file (and its directory) readable by its owner only, before SQLite opens it.

    SQLite gives the -wal and -shm files it creates the database file's permissions.
    """
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not path.exists():
        os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
