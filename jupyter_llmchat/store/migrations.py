"""Registered, numbered schema migrations; a store file's ``PRAGMA user_version`` counts those applied.

Migration N (a function named ``mNNN_...``, registered in order) brings a file from version N-1
to N. Each runs in its own write transaction together with the version bump, so a failure, an
interrupt or a killed kernel leaves the file at the version before it, and a second kernel that
opens the file at the same moment waits for the lock and then finds the work done. A file written
by a newer jupyter_llmchat (a version above every registered migration) is refused: this code
must not write into a schema it does not know.

To change the schema, append a migration; never edit one that has shipped (files in the wild
were made by it). Statements run one at a time with ``execute``: ``executescript`` would commit
the transaction half way.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable, Iterable, Iterator

from .errors import StoreError

Migration = Callable[[sqlite3.Connection], None]
_NAME = re.compile(r"m(\d{3})_\w+$")


class Migrations:
    """Migrations in the order they run; ``version`` is the schema they bring a file to."""

    def __init__(self, steps: Iterable[Migration] = ()) -> None:
        self._steps: list[Migration] = []
        for step in steps:
            self.register(step)

    def register(self, step: Migration) -> Migration:
        """Add ``step`` as the next migration (a decorator); its name must carry the next number."""
        match = _NAME.match(step.__name__)
        expected = len(self._steps) + 1
        if match is None or int(match.group(1)) != expected:
            raise ValueError(f"migration {step.__name__!r} must be named m{expected:03d}_<what it does>: "
                             "migrations are numbered in the order they run")
        self._steps.append(step)
        return step

    @property
    def version(self) -> int:
        """The schema version a file has once every migration is applied."""
        return len(self._steps)

    def copy(self) -> Migrations:
        """A registry with the same migrations, to register more (tests, a plugin's tables)."""
        return Migrations(self._steps)

    def __iter__(self) -> Iterator[Migration]:
        return iter(self._steps)

    def apply(self, db: sqlite3.Connection, path: str) -> int:
        """Bring the file behind ``db`` (autocommit mode) up to ``version``; returns the version it had."""
        found = schema_version(db)
        self._refuse_newer(found, path)
        while True:
            db.execute("BEGIN IMMEDIATE")  # the write lock, before reading the version it guards
            try:
                current = schema_version(db)  # another kernel may have migrated meanwhile
                self._refuse_newer(current, path)
                if current == self.version:
                    db.execute("COMMIT")
                    return found
                step = self._steps[current]
                try:
                    step(db)
                except Exception as error:  # the cause stays chained for whoever debugs the migration
                    raise StoreError(f"cannot upgrade the store {path} from schema {current} to {current + 1} "
                                     f"({step.__name__}: {type(error).__name__}: {error}); the file is "
                                     f"unchanged") from error
                db.execute(f"PRAGMA user_version = {current + 1}")
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:  # also when COMMIT itself failed
                    db.execute("ROLLBACK")
                raise

    def _refuse_newer(self, version: int, path: str) -> None:
        if version > self.version:
            raise StoreError(f"the store {path} has schema {version}, newer than this jupyter_llmchat knows "
                             f"({self.version}); upgrade the package or pass another path")


def schema_version(db: sqlite3.Connection) -> int:
    """The number of migrations applied to the file (0 for a new, empty one)."""
    return int(db.execute("PRAGMA user_version").fetchone()[0])


MIGRATIONS = Migrations()
migration = MIGRATIONS.register


@migration
def m001_initial(db: sqlite3.Connection) -> None:
    """The schema of the first release: conversations, messages, the response cache, the ledger."""
    for statement in (
        """CREATE TABLE IF NOT EXISTS conversations (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            session TEXT NOT NULL,
            created REAL NOT NULL,
            updated REAL NOT NULL,
            model TEXT NOT NULL,
            system TEXT,
            params TEXT NOT NULL DEFAULT '{}',
            settings TEXT NOT NULL DEFAULT '{}'
        )""",
        "CREATE INDEX IF NOT EXISTS conversations_session ON conversations (session, id)",
        """CREATE TABLE IF NOT EXISTS messages (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            conversation INTEGER NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
            role TEXT NOT NULL,
            text TEXT NOT NULL,
            tokens INTEGER NOT NULL,
            images TEXT NOT NULL DEFAULT '[]',
            name TEXT,
            status TEXT NOT NULL,
            model TEXT,
            usage TEXT,
            created REAL NOT NULL
        )""",
        "CREATE INDEX IF NOT EXISTS messages_conversation ON messages (conversation, id)",
        """CREATE TABLE IF NOT EXISTS cache (
            key TEXT PRIMARY KEY,
            model TEXT NOT NULL,
            reply TEXT NOT NULL,
            created REAL NOT NULL,
            hits INTEGER NOT NULL DEFAULT 0
        )""",
        """CREATE TABLE IF NOT EXISTS ledger (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            session TEXT,
            conversation INTEGER,
            model TEXT NOT NULL,
            time REAL NOT NULL,
            prompt_tokens INTEGER NOT NULL,
            completion_tokens INTEGER NOT NULL,
            cached_tokens INTEGER NOT NULL,
            cost REAL,
            saved REAL,
            from_cache INTEGER NOT NULL,
            status TEXT NOT NULL,
            total_time REAL
        )""",
        "CREATE INDEX IF NOT EXISTS ledger_time ON ledger (time)",
    ):
        db.execute(statement)


@migration
def m002_ledger_usage_source(db: sqlite3.Connection) -> None:
    """Where each ledger row's token counts come from: "reported" by the endpoint (a cache hit's
    zero is known too) or "missing" (the endpoint reported none: the row counts 0 tokens).

    Schema 1 wrote zeros for a reply without usage, and every real request has prompt tokens, so
    a row with no tokens that is not a cache hit is one of those.
    """
    db.execute("ALTER TABLE ledger ADD COLUMN usage_source TEXT NOT NULL DEFAULT 'reported'")
    db.execute("UPDATE ledger SET usage_source = 'missing' "
               "WHERE from_cache = 0 AND prompt_tokens = 0 AND completion_tokens = 0")


@migration
def m003_ledger_demo(db: sqlite3.Connection) -> None:
    """Which ledger rows the offline demo server answered: no model wrote them, so they cost
    nothing and ``%chat usage`` says so. Rows of schema 2 were all counted as model replies."""
    db.execute("ALTER TABLE ledger ADD COLUMN demo INTEGER NOT NULL DEFAULT 0")


@migration
def m004_map_rows(db: sqlite3.Connection) -> None:
    """The answered rows of ``Chatbot.map`` (and of its Batch API runs), by the SHA-256 of each row's
    request: recorded as they arrive, so the same call after a crash, an interrupt or a kernel
    restart asks only the rows not answered yet."""
    db.execute("""CREATE TABLE IF NOT EXISTS map_rows (
        key TEXT PRIMARY KEY,
        model TEXT NOT NULL,
        text TEXT NOT NULL,
        finish_reason TEXT,
        usage TEXT,
        cost REAL,
        attempts INTEGER NOT NULL,
        source TEXT NOT NULL DEFAULT 'map',
        created REAL NOT NULL
    )""")


@migration
def m005_batch_jobs(db: sqlite3.Connection) -> None:
    """Batch API jobs (``map(mode="batch")``), so another kernel can collect them: each job, the
    provider batches that carry its rows, and each row (its request key, the batch carrying it, its
    result once recorded; indexed by key, so a call asked again finds the rows a running job
    carries). The ledger marks replies billed at the Batch API's price; the rows of schema 4 were
    all billed at the standard one. (Compact SQL: the schema's text is kept on the file's first
    pages, with every table's.)"""
    for statement in (
        "CREATE TABLE IF NOT EXISTS batch_jobs (id TEXT PRIMARY KEY, created REAL NOT NULL, updated REAL NOT NULL, "
        "session TEXT, model TEXT NOT NULL, endpoint TEXT NOT NULL, rows INTEGER NOT NULL, status TEXT NOT NULL)",
        "CREATE TABLE IF NOT EXISTS batch_submissions (id TEXT PRIMARY KEY, job TEXT NOT NULL REFERENCES "
        "batch_jobs (id) ON DELETE CASCADE, input_file_id TEXT NOT NULL, status TEXT NOT NULL, rows INTEGER NOT "
        "NULL, completed INTEGER NOT NULL DEFAULT 0, failed INTEGER NOT NULL DEFAULT 0, output_file_id TEXT, "
        "error_file_id TEXT, collected INTEGER NOT NULL DEFAULT 0, created REAL NOT NULL)",
        "CREATE INDEX IF NOT EXISTS batch_submissions_job ON batch_submissions (job, created)",
        "CREATE TABLE IF NOT EXISTS batch_rows (job TEXT NOT NULL REFERENCES batch_jobs (id) ON DELETE CASCADE, "
        "idx INTEGER NOT NULL, key TEXT NOT NULL, batch TEXT, attempts INTEGER NOT NULL DEFAULT 0, status TEXT NOT "
        "NULL DEFAULT 'pending', text TEXT, error TEXT, usage TEXT, cost REAL, PRIMARY KEY (job, idx))",
        "CREATE INDEX IF NOT EXISTS batch_rows_batch ON batch_rows (batch, status)",
        "CREATE INDEX IF NOT EXISTS batch_rows_key ON batch_rows (key)",
        "ALTER TABLE ledger ADD COLUMN batch INTEGER NOT NULL DEFAULT 0",
    ):
        db.execute(statement)


@migration
def m006_message_tool_calls(db: sqlite3.Connection) -> None:
    """Tool calls in the history: an assistant message's ``tool_calls`` (JSON list of id, name,
    arguments; NULL when it asked for none) and a tool message's ``tool_call_id``. Messages of
    schema 5 had neither."""
    db.execute("ALTER TABLE messages ADD COLUMN tool_calls TEXT")
    db.execute("ALTER TABLE messages ADD COLUMN tool_call_id TEXT")


@migration
def m007_embeddings(db: sqlite3.Connection) -> None:
    """Vectors ``Chatbot.embed`` paid for, so an identical text is never embedded (or paid) twice:
    by model, dimensions (0: the model's own) and the SHA-256 of the text (the text itself is not
    kept); the vector as float32 bytes. Files of schema 6 had no vectors."""
    db.execute("CREATE TABLE IF NOT EXISTS embeddings (model TEXT NOT NULL, dimensions INTEGER NOT NULL, key BLOB NOT "
               "NULL, vector BLOB NOT NULL, created REAL NOT NULL, PRIMARY KEY (model, dimensions, key)) WITHOUT ROWID")
