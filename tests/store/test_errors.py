"""The store's error (one line, a ChatError, naming cause and fix) and its warning for a lost write."""

from __future__ import annotations

import sqlite3

import pytest

from jupyter_llmchat.core.errors import ChatError
from jupyter_llmchat.store.errors import StoreError, StoreWarning, cause, store_failure, warn_failed


def test_store_errors_are_chat_errors() -> None:
    assert issubclass(StoreError, ChatError)


@pytest.mark.parametrize("error, fix", [
    (sqlite3.DatabaseError("database disk image is malformed"),
     "the file is damaged: move it away (a new store is made in its place) or pass another path"),
    (sqlite3.DatabaseError("file is not a database"),
     "the file is damaged: move it away (a new store is made in its place) or pass another path"),
    (sqlite3.OperationalError("attempt to write a readonly database"),
     "the file is read-only: make it writable or pass another path"),
    (sqlite3.OperationalError("database is locked"), "another kernel holds it: try again"),
    (sqlite3.OperationalError("disk I/O error"), "check the file, or pass another path"),
])
def test_sqlite_errors_become_one_line_with_the_cause_and_the_fix(error: sqlite3.Error, fix: str) -> None:
    failure = store_failure("read", "/data/store.sqlite3", error)
    assert str(failure) == f"cannot read the store /data/store.sqlite3 ({type(error).__name__}: {error}); {fix}"


def test_a_failed_write_warns_with_the_sqlite_cause_and_what_happens_next() -> None:
    error = sqlite3.OperationalError("disk I/O error")
    try:
        raise store_failure("write to", "s.db", error) from error
    except StoreError as failure:
        assert cause(failure) is error
        with pytest.warns(StoreWarning) as caught:
            warn_failed("save a message", failure, path="s.db")
    assert [str(w.message) for w in caught] == [
        "the store s.db could not save a message (OperationalError: disk I/O error); the conversation continues "
        "in memory, unsaved (further failures like this one are not repeated)"]
