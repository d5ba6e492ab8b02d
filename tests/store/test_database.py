"""The store's connection: the default path, private files in WAL mode, one-line errors for paths
that cannot be a store, transactions that commit or roll back whole, ``":memory:"`` the same code."""

from __future__ import annotations

import sqlite3
import stat
from contextlib import closing
from pathlib import Path

import pytest

from jupyter_llmchat.store.database import MEMORY, STORE_ENV, Database, default_path, resolve_path
from jupyter_llmchat.store.errors import StoreError
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
