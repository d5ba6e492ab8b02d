"""The SQLite connection every part of the store builds on: one file, one lock, transactions.

One file (default: ``store.sqlite3`` under the user's data directory; ``JUPYTER_LLMCHAT_STORE``
or a path to choose; ``":memory:"`` to keep nothing), readable by its owner only (an existing file
that others could read is made private, with a note), in WAL mode so a kernel killed mid-answer
leaves it readable and two kernels can write at once. Opening brings the schema up to date
(migrations.py). Thread-safe: one connection guarded by a lock (the panel may ask from a worker
thread). SQLite's errors leave here as one-line ``StoreError``s (a damaged or read-only file, a
lock held too long); ``warn_once`` tells of a lost write once per kind of failure.
"""

from __future__ import annotations

import os
import sqlite3
import stat
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .errors import StoreError, StoreWarning, cause, store_failure, warn_failed
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


def demo_path() -> Path:
    """The offline demo's own store, beside the default one in the user's data directory: what the
    demo server says is no model's answer and must not mix with the user's conversations."""
    import platformdirs

    return Path(platformdirs.user_data_dir("jupyter_llmchat")) / "demo.sqlite3"


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
        self._warned: set[tuple[str, str]] = set()  # the kinds of write failure already told
        if Path(self.path).is_dir():
            raise StoreError(f"cannot open the store {self.path}: it is a directory; give a file path "
                             f"such as {Path(self.path) / 'store.sqlite3'}")
        connection: sqlite3.Connection | None = None
        try:
            notes: list[str] = []
            if self.path != MEMORY:
                _create_private(Path(self.path))
                notes += _make_private(Path(self.path))
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
        self.read_only = self.path != MEMORY and not _writable(Path(self.path))
        if self.read_only:  # every write would fail: say it once, here, instead of at each one
            notes.insert(0, f"the store {self.path} is read-only: what is said from now on is not saved to it "
                            "(conversations stay in memory); make it writable or choose another store")
        if notes:
            warnings.warn("; ".join(notes), StoreWarning, stacklevel=3)

    @property
    def in_memory(self) -> bool:
        """True for ``":memory:"``: nothing outlives the process."""
        return self.path == MEMORY

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: committed on success, rolled back on any error (or interrupt).
        SQLite's errors become a StoreError (its ``__cause__``)."""
        with self._lock:
            db = self._db
            try:
                # IMMEDIATE takes the write lock now, so two kernels queue instead of deadlocking.
                db.execute("BEGIN IMMEDIATE")
                try:
                    yield db
                    db.execute("COMMIT")
                except BaseException:
                    if db.in_transaction:  # also when COMMIT itself failed (disk full, I/O error)
                        _roll_back(db)
                    raise
            except sqlite3.Error as error:
                raise store_failure("write to", self.path, error) from error

    def query(self, sql: str, args: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        """Rows of a read-only query, as dicts; SQLite's errors become a StoreError."""
        with self._lock:
            try:
                cursor = self._db.execute(sql, args)
                names = [column[0] for column in cursor.description]
                return [dict(zip(names, row)) for row in cursor.fetchall()]
            except sqlite3.Error as error:
                raise store_failure("read", self.path, error) from error

    def warn_once(self, what: str, error: BaseException) -> None:
        """Warn that a write (``what``) failed, unless this kind of failure was told already: a
        damaged, read-only or full file fails every write, and one warning says it."""
        reason = cause(error)
        kind = (type(reason).__name__, str(reason))
        with self._lock:
            if self.read_only or kind in self._warned:  # a read-only file was told when opened
                return
            self._warned.add(kind)
        warn_failed(what, error, path=self.path)

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


def _roll_back(db: sqlite3.Connection) -> None:
    """Roll back; a file too damaged even for that keeps the error that got us here."""
    try:
        db.execute("ROLLBACK")
    except sqlite3.Error:
        pass


def _make_private(path: Path) -> list[str]:
    """Take away what group and others may do with an existing store (and its -wal and -shm): it
    holds conversations. Returns the note to show (once: the next open finds the files private)."""
    loose: list[tuple[Path, int]] = []
    for file in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        try:
            mode = stat.S_IMODE(file.stat().st_mode)
        except FileNotFoundError:
            continue
        if mode & 0o077:
            loose.append((file, mode))
    if not loose:
        return []
    failed = []
    for file, mode in loose:
        try:
            os.chmod(file, mode & 0o700)
        except OSError as error:
            failed.append(f"{file.name}: {error.strerror or error}")
    mode = loose[0][1]
    if failed:
        return [f"the store {path} can be read by other users (mode {mode:04o}) and could not be made private "
                f"({'; '.join(failed)}): it holds your conversations; chmod 600 it or choose another store"]
    names = ", ".join(file.name for file, _ in loose)
    return [f"the store {path} could be read by other users (mode {mode:04o}); it holds your conversations, so "
            f"it is now private to you ({names}: mode {mode & 0o700:04o})"]


def _writable(path: Path) -> bool:
    """False when this process may not write the store file (permissions, a read-only disk).

    Asked with access(2), never by opening the file: closing any descriptor of a file drops every
    POSIX lock this process holds on it, SQLite's too, and another kernel would then take this
    connection for gone, checkpoint and delete the WAL it still writes to (its commits lost to all)."""
    effective = os.access in os.supports_effective_ids
    return os.access(path, os.W_OK, effective_ids=effective)


def _create_private(path: Path) -> None:
    """Create the file (and its directory) readable by its owner only, before SQLite opens it.

    SQLite gives the -wal and -shm files it creates the database file's permissions.
    """
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not path.exists():
        os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
