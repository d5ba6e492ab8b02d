"""The store's error (one line, a ChatError) and its warning for a write lost while chatting."""

from __future__ import annotations

import sqlite3

import pytest

from jupyter_llmchat.core.errors import ChatError
from jupyter_llmchat.store.errors import StoreError, StoreWarning, warn_failed


def test_store_errors_are_chat_errors() -> None:
    assert issubclass(StoreError, ChatError)


def test_a_failed_write_warns_once_with_the_cause_and_what_happens_next() -> None:
    with pytest.warns(StoreWarning) as caught:
        warn_failed("save a message", sqlite3.OperationalError("disk I/O error"))
    assert [str(w.message) for w in caught] == [
        "the store could not save a message (OperationalError: disk I/O error); the conversation continues "
        "in memory, see Store.path"]
