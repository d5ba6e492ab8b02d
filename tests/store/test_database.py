"""The store's connection: the default path, private files in WAL mode, one-line errors for paths
that cannot be a store, transactions that commit or roll back whole, ``":memory:"`` the same code."""

from __future__ import annotations

import sqlite3
import stat
import warnings
from contextlib import closing
from pathlib import Path

import pytest

from jupyter_llmchat.store.database import MEMORY, STORE_ENV, Database, default_path, resolve_path
from jupyter_llmchat.store.errors import StoreError, StoreWarning
from jupyter_llmchat.store.migrations import MIGRATIONS


def write_note(database: Database, text: str) -> None:
    with database.transaction() as db:
        db.execute("INSERT INTO conversations (session, created, updated, model) VALUES (?, 0, 0, 'm')", (text,))


def test_file_directory_wal_and_shm_are_private(tmp_path: Path) -> None:
    path = tmp_path / "new-dir" / "store.sqlite3"
    database = Database(path)
    write_note(database, "private")
    files = [path, Path(f"{path}-wal"), Path(f"{path}-shm")]
    assert all(file.exists() for file in files)
    for file in files:
        assert stat.S_IMODE(file.stat().st_mode) == 0o600, file
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    with closing(sqlite3.connect(path)) as other:  # what another program sees while it is open
        assert other.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert other.execute("PRAGMA user_version").fetchone() == (MIGRATIONS.version,)
    database.close()


def test_default_path_is_the_env_override_else_the_user_data_dir(monkeypatch, tmp_path: Path) -> None:
    import platformdirs

    monkeypatch.delenv(STORE_ENV, raising=False)
    assert default_path() == Path(platformdirs.user_data_dir("jupyter_llmchat")) / "store.sqlite3"
    monkeypatch.setenv(STORE_ENV, str(tmp_path / "mine.db"))
    assert default_path() == tmp_path / "mine.db"
    assert (resolve_path(None), resolve_path(MEMORY), resolve_path("~/x.db")) == (
        str(tmp_path / "mine.db"), ":memory:", str(Path.home() / "x.db"))
    monkeypatch.chdir(tmp_path)
    Database().close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.db"]  # nothing else in the cwd


def test_a_path_that_is_not_a_database_is_a_one_line_error(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("these are my notes, not a database\n" * 100)
    with pytest.raises(StoreError) as caught:
        Database(path)
    assert str(caught.value) == (f"cannot open the store {path}: file is not a database; pass another "
                                 "path or move the file away")
    assert path.read_text().startswith("these are my notes")  # nothing lost
    with pytest.raises(StoreError) as caught:
        Database(tmp_path)
    assert str(caught.value) == (f"cannot open the store {tmp_path}: it is a directory; give a file path "
                                 f"such as {tmp_path / 'store.sqlite3'}")


def test_a_transaction_commits_whole_or_not_at_all(tmp_path: Path) -> None:
    database = Database(tmp_path / "store.sqlite3")
    write_note(database, "kept")
    with pytest.raises(KeyboardInterrupt), database.transaction() as db:
        db.execute("INSERT INTO conversations (session, created, updated, model) VALUES ('lost', 0, 0, 'm')")
        raise KeyboardInterrupt  # an interrupt half way
    assert database.query("SELECT session FROM conversations") == [{"session": "kept"}]
    database.close()


def test_memory_is_the_same_code_with_nothing_on_disk(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    database = Database(MEMORY)
    assert database.in_memory and database.path == ":memory:"
    write_note(database, "scratch")
    assert database.query("SELECT session FROM conversations") == [{"session": "scratch"}]
    assert database.query("PRAGMA user_version") == [{"user_version": MIGRATIONS.version}]
    database.close()
    assert list(tmp_path.iterdir()) == []


def modes(path: Path) -> dict[str, int]:
    return {file.name: stat.S_IMODE(file.stat().st_mode) for file in sorted(path.parent.iterdir())}


def test_a_store_others_can_read_is_made_private_with_one_note(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite3"
    first = Database(path)
    write_note(first, "kept")  # first stays open: its -wal and -shm exist
    for file, mode in ((path, 0o644), (Path(f"{path}-wal"), 0o664), (Path(f"{path}-shm"), 0o444)):
        file.chmod(mode)  # as an older release or a copy with a loose umask left them
    with pytest.warns(StoreWarning) as caught:
        second = Database(path)
    assert [str(w.message) for w in caught] == [
        f"the store {path} could be read by other users (mode 0644); it holds your conversations, so it is now "
        "private to you (store.sqlite3, store.sqlite3-wal, store.sqlite3-shm: mode 0600)"]
    # group and others lose everything; the owner keeps what it had (a read-only -shm stays read-only)
    assert modes(path) == {"store.sqlite3": 0o600, "store.sqlite3-shm": 0o400, "store.sqlite3-wal": 0o600}
    assert second.query("SELECT session FROM conversations") == [{"session": "kept"}]
    second.close()
    first.close()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a second open has nothing to say
        Database(path).close()


READ_ONLY_CHILD = r"""
import json, sys, warnings
warnings.simplefilter("always")
from jupyter_llmchat.core.chatbot import Chatbot
from jupyter_llmchat.core.reply import NullSink
from jupyter_llmchat.store.store import Store
with warnings.catch_warnings(record=True) as caught:
    store = Store(sys.argv[1], cache=True)
    bot = Chatbot("gpt-4o-mini", base_url=sys.argv[2], max_retries=0, temperature=0)
    store.attach(bot, "later")
    answers = [bot.ask(question, sink=NullSink()).text for question in ("one?", "two?")]
print(json.dumps({"warnings": [str(w.message) for w in caught], "answers": answers,
                  "history": [m.text for m in bot.history], "read_only": store.database.read_only,
                  "saved": [s.session for s in store.sessions()]}))
"""


def test_a_read_only_store_says_so_once_and_chatting_goes_on(tmp_path: Path, loopback) -> None:
    import json
    import os
    import subprocess
    import sys

    from support.damaged_store import permission_bound

    path = tmp_path / "store.sqlite3"
    database = Database(path)
    write_note(database, "old")
    database.close()
    path.chmod(0o400)  # read-only, private: no note about permissions, only about writing
    loopback.queue(reply="first answer")
    loopback.queue(reply="second answer")
    repo = Path(__file__).resolve().parents[2]
    done = subprocess.run([*permission_bound(), sys.executable, "-c", READ_ONLY_CHILD, str(path), loopback.base_url],
                          capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(repo)})
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["warnings"] == [  # one warning for the four failed writes of each question, not one each
        f"the store {path} is read-only: what is said from now on is not saved to it (conversations stay in "
        "memory); make it writable or choose another store"]
    assert result["answers"] == ["first answer", "second answer"] and result["read_only"] is True
    assert result["history"] == ["one?", "first answer", "two?", "second answer"]
    assert result["saved"] == ["old"]  # reading goes on


WRITE_WHEN_TOLD = r"""
import sys
from jupyter_llmchat.store.database import Database
database = Database(sys.argv[1])
for n in range(3):
    with database.transaction() as db:
        db.execute("INSERT INTO ledger (model, time, prompt_tokens, completion_tokens, cached_tokens, from_cache, "
                   "status) VALUES ('m', 0, 0, 0, 0, 0, 'complete')")
    print("WROTE", n + 1, flush=True)
    sys.stdin.readline()
"""


def test_another_process_sees_each_commit_as_it_is_made(tmp_path: Path) -> None:
    """Opening a store never drops SQLite's locks (closing any descriptor of the file would): a
    reader in another process that closes its connection must not take the writer for gone and
    delete the WAL the writer still commits to."""
    import os
    import sqlite3
    import subprocess
    import sys
    from contextlib import closing

    path = tmp_path / "shared.sqlite3"
    repo = Path(__file__).resolve().parents[2]
    child = subprocess.Popen([sys.executable, "-c", WRITE_WHEN_TOLD, str(path)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(repo)})
    seen = []
    try:
        for n in range(1, 4):
            assert child.stdout.readline() == f"WROTE {n}\n"
            with closing(sqlite3.connect(path, timeout=5)) as reader:  # opened and closed each time
                seen.append(reader.execute("SELECT COUNT(*) FROM ledger").fetchone()[0])
            child.stdin.write("\n")
            child.stdin.flush()
    finally:
        child.communicate(timeout=30)
    assert seen == [1, 2, 3]
