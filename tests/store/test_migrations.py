"""Schema migrations: a store file written by the first release opens, is migrated and keeps its
data; migrations run in their registered order, each atomically with its version bump; a file
from a newer release is refused with one line."""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

import pytest

from jupyter_llmchat.store.cache import ResponseCache, request_key
from jupyter_llmchat.store.database import Database
from jupyter_llmchat.store.errors import StoreError
from jupyter_llmchat.store.migrations import MIGRATIONS, Migrations, schema_version
from jupyter_llmchat.store.store import Store

# The schema of the first release (commit 2814ea4, SCHEMA_VERSION = 1), frozen here as it shipped:
# files in the wild were made by exactly this, whatever the code says today. store/migrations.py's
# m001_initial runs the same statements now; this copy is kept apart on purpose, so that it does not
# change when that one does.
V1_SCHEMA = """
CREATE TABLE IF NOT EXISTS conversations (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    session TEXT NOT NULL,
    created REAL NOT NULL,
    updated REAL NOT NULL,
    model TEXT NOT NULL,
    system TEXT,
    params TEXT NOT NULL DEFAULT '{}',
    settings TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS conversations_session ON conversations (session, id);
CREATE TABLE IF NOT EXISTS messages (
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
);
CREATE INDEX IF NOT EXISTS messages_conversation ON messages (conversation, id);
CREATE TABLE IF NOT EXISTS cache (
    key TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    reply TEXT NOT NULL,
    created REAL NOT NULL,
    hits INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS ledger (
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
);
CREATE INDEX IF NOT EXISTS ledger_time ON ledger (time);
"""

IMAGE = {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "low", "width": 1, "height": 1,
         "mime": "image/png", "source": "dot.png"}
CACHED_REQUEST = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "2+2?"}],
                  "params": {"temperature": 0}}
# What the first release's ledger wrote: an answer with usage, a request that failed before any
# text (no usage, cost 0), a stream cut after text arrived (no usage, cost unknown), a cache hit.
V1_LEDGER = [
    ("trip", 1, "gpt-4o-mini", 1000.0, 20, 5, 0, 0.000006, None, 0, "complete", 0.5),
    ("trip", 1, "gpt-4o-mini", 1001.0, 0, 0, 0, 0.0, None, 0, "failed", 0.1),
    ("trip", 1, "gpt-4o-mini", 1002.0, 0, 0, 0, None, None, 0, "interrupted", 2.0),
    (None, None, "gpt-4o-mini", 1003.0, 0, 0, 0, 0.0, 0.000006, 1, "complete", 0.0),
]


def write_v1_store(path: Path) -> None:
    """A store file exactly as the first release left it, with a bit of everything in it."""
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))  # private, as every release made it
    with closing(sqlite3.connect(path, isolation_level=None)) as db:
        db.execute("PRAGMA journal_mode = WAL")
        db.executescript(f"BEGIN IMMEDIATE; {V1_SCHEMA} PRAGMA user_version = 1; COMMIT;")
        db.execute("INSERT INTO conversations (session, created, updated, model, system, params, settings) "
                   "VALUES ('trip', 100.0, 100.0, 'gpt-4o-mini', 'Be brief.', '{\"temperature\":0}', "
                   "'{\"max_history\":null,\"context_window\":null,\"prompt_token_limit\":null}')")
        db.execute("INSERT INTO messages (conversation, role, text, tokens, images, name, status, model, usage, "
                   "created) VALUES (1, 'user', 'What is this?', 12, ?, NULL, 'complete', NULL, NULL, 101.0)",
                   (json.dumps([IMAGE]),))
        db.execute("INSERT INTO messages (conversation, role, text, tokens, images, name, status, model, usage, "
                   "created) VALUES (1, 'assistant', 'A dot.', 3, '[]', NULL, 'complete', 'gpt-4o-mini', "
                   "'{\"prompt_tokens\":20,\"completion_tokens\":5,\"cached_tokens\":0}', 102.0)")
        reply = {"text": "4", "model": "gpt-4o-mini", "status": "complete", "finish_reason": "stop",
                 "usage": {"prompt_tokens": 9, "completion_tokens": 1, "cached_tokens": 0}, "logprobs": None}
        db.execute("INSERT INTO cache (key, model, reply, created, hits) VALUES (?, 'gpt-4o-mini', ?, 103.0, 2)",
                   (request_key(CACHED_REQUEST), json.dumps(reply)))
        db.executemany("INSERT INTO ledger (session, conversation, model, time, prompt_tokens, completion_tokens, "
                       "cached_tokens, cost, saved, from_cache, status, total_time) "
                       "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", V1_LEDGER)


def file_version(path: Path) -> int:
    with closing(sqlite3.connect(path)) as db:
        return schema_version(db)


def columns(path: Path, table: str) -> list[str]:
    with closing(sqlite3.connect(path)) as db:
        return [row[1] for row in db.execute(f"PRAGMA table_info({table})")]


@pytest.fixture
def v1_file(tmp_path: Path) -> Path:
    path = tmp_path / "v1.sqlite3"
    write_v1_store(path)
    return path


# Migrations after the ones these tests were written against are tested in their own module's tests.
NEXT = MIGRATIONS.version + 1


def test_the_registry_brings_files_to_the_latest_version() -> None:
    assert [step.__name__ for step in MIGRATIONS][:4] == ["m001_initial", "m002_ledger_usage_source",
                                                           "m003_ledger_demo", "m004_map_rows"]
    assert MIGRATIONS.version >= 4


def test_a_v1_file_opens_is_migrated_and_keeps_its_data(v1_file: Path) -> None:
    with Store(v1_file) as store:
        saved = store.conversation("trip")
        assert (saved.model, saved.system, saved.params, saved.messages) == ("gpt-4o-mini", "Be brief.",
                                                                             {"temperature": 0}, 2)
        messages = store.messages(saved.id)
        assert [(m.role, m.text, m.tokens, m.created) for m in messages] == [
            ("user", "What is this?", 12, 101.0), ("assistant", "A dot.", 3, 102.0)]
        assert messages[0].images[0].url == IMAGE["url"] and messages[0].images[0].source == "dot.png"
        assert messages[1].usage is not None and messages[1].usage.prompt_tokens == 20
        hit = ResponseCache(store.database).lookup(CACHED_REQUEST)
        assert hit is not None and (hit.text, hit.from_cache) == ("4", True)
        # m002's column says which old rows had no usage: zero tokens and not a cache hit; m003's
        # marks none of them as the offline demo's (old releases priced demo replies as a model's)
        assert store.query("SELECT status, cost, usage_source, demo FROM ledger ORDER BY id") == [
            {"status": "complete", "cost": 0.000006, "usage_source": "reported", "demo": 0},
            {"status": "failed", "cost": 0.0, "usage_source": "missing", "demo": 0},
            {"status": "interrupted", "cost": None, "usage_source": "missing", "demo": 0},
            {"status": "complete", "cost": 0.0, "usage_source": "reported", "demo": 0}]
        (summary,) = store.usage_summary(())
        assert (summary.requests, summary.cache_hits, summary.prompt_tokens, summary.unpriced,
                summary.unreported, summary.demo) == (4, 1, 20, 1, 2, 0)
        # and it goes on working: a new conversation is written in the migrated file
        store.new_conversation("after", model="gpt-4o")
    assert file_version(v1_file) == MIGRATIONS.version
    assert columns(v1_file, "ledger")[13:15] == ["usage_source", "demo"]  # after the 13 of schema 1


def test_a_new_file_gets_every_migration(tmp_path: Path) -> None:
    path = tmp_path / "new.sqlite3"
    Database(path).close()
    assert file_version(path) == MIGRATIONS.version
    assert columns(path, "ledger")[13:15] == ["usage_source", "demo"]


def numbered(step: Callable[[sqlite3.Connection], None], what: str) -> Callable[[sqlite3.Connection], None]:
    """``step`` named as the next migration after the store's own (``m005_...`` while there are four)."""
    step.__name__ = f"m{NEXT:03d}_{what}"
    return step


def extended(log: list[str]) -> Migrations:
    """The store's migrations plus one more that records when it ran."""
    registry = MIGRATIONS.copy()

    def notes(db: sqlite3.Connection) -> None:
        log.append(f"next saw version {schema_version(db)}")
        db.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT NOT NULL)")

    registry.register(numbered(notes, "notes"))
    return registry


def test_migrations_run_in_registered_order_from_the_version_found(v1_file: Path) -> None:
    log: list[str] = []
    Database(v1_file, migrations=extended(log)).close()
    # every earlier one ran first; m001 was not run again on a v1 file
    assert log == [f"next saw version {NEXT - 1}"]
    assert file_version(v1_file) == NEXT and columns(v1_file, "notes") == ["id", "text"]
    Database(v1_file, migrations=extended(log)).close()
    assert log == [f"next saw version {NEXT - 1}"]  # applied once
    assert MIGRATIONS.version == NEXT - 1  # the copy left the store's own registry alone


def test_migrations_must_be_registered_with_the_next_number() -> None:
    registry = MIGRATIONS.copy()

    def skips_ahead(db: sqlite3.Connection) -> None:
        pass

    skips_ahead.__name__ = f"m{NEXT + 1:03d}_skips_ahead"
    with pytest.raises(ValueError) as caught:
        registry.register(skips_ahead)
    assert str(caught.value) == (f"migration 'm{NEXT + 1:03d}_skips_ahead' must be named m{NEXT:03d}_<what it "
                                 "does>: migrations are numbered in the order they run")


def test_a_failing_migration_leaves_the_file_at_the_old_version(v1_file: Path) -> None:
    registry = MIGRATIONS.copy()

    def half_done(db: sqlite3.Connection) -> None:
        db.execute("ALTER TABLE ledger ADD COLUMN half TEXT")
        db.execute("INSERT INTO conversations (session, created, updated, model) VALUES ('x', 0, 0, 'm')")
        raise RuntimeError("disk on fire")

    registry.register(numbered(half_done, "half_done"))
    with pytest.raises(StoreError) as caught:
        Database(v1_file, migrations=registry)
    assert str(caught.value) == (f"cannot upgrade the store {v1_file} from schema {NEXT - 1} to {NEXT} "
                                 f"(m{NEXT:03d}_half_done: RuntimeError: disk on fire); the file is unchanged")
    # the earlier ones committed each on its own; nothing of the failing one stayed
    assert file_version(v1_file) == NEXT - 1
    assert "half" not in columns(v1_file, "ledger")
    with Store(v1_file) as store:
        assert [s.session for s in store.sessions()] == ["trip"]


def test_a_file_from_a_newer_release_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "future.sqlite3"
    with closing(sqlite3.connect(path)) as db:
        db.execute("CREATE TABLE future (x)")
        db.execute(f"PRAGMA user_version = {MIGRATIONS.version + 1}")
    with pytest.raises(StoreError) as caught:
        Store(path)
    assert str(caught.value) == (f"the store {path} has schema {NEXT}, newer than this jupyter_llmchat knows "
                                 f"({NEXT - 1}); upgrade the package or pass another path")
    assert file_version(path) == NEXT and columns(path, "future") == ["x"]


OPEN_WHEN_TOLD = r"""
import sys, time
from pathlib import Path
from jupyter_llmchat.store.store import Store

path, go = sys.argv[1:3]
print("READY", flush=True)
while not Path(go).exists():
    time.sleep(0.001)
with Store(path) as store:
    print("OPENED", len(store.messages(store.conversation("trip").id)), flush=True)
"""


def test_two_kernels_opening_a_v1_file_at_once_migrate_it_once(v1_file: Path, tmp_path: Path) -> None:
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[2]
    go = tmp_path / "go"
    env = {**os.environ, "PYTHONPATH": str(repo)}
    children = [subprocess.Popen([sys.executable, "-c", OPEN_WHEN_TOLD, str(v1_file), str(go)], env=env,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    for child in children:
        assert child.stdout.readline() == "READY\n"
    go.touch()
    outputs = [child.communicate(timeout=60) for child in children]
    # whichever came second found the work done (migrating twice would add the column twice: an error)
    assert outputs == [("OPENED 2\n", "")] * 2
    assert file_version(v1_file) == MIGRATIONS.version and columns(v1_file, "ledger").count("usage_source") == 1
    assert columns(v1_file, "ledger").count("demo") == 1
