"""The store's two ways to fail: an error for what cannot be done, a warning for a lost write.

Every other store module imports these; this one imports nothing of the store.
"""

from __future__ import annotations

import sqlite3
import warnings

from ..core.errors import ChatError


class StoreError(ChatError):
    """The store cannot do what was asked (unknown session, bad file, bad import data, a failed
    read or write; ``__cause__`` then holds SQLite's own error)."""


class StoreWarning(UserWarning):
    """Something the user should know about the store while chatting goes on: a write that failed
    (the conversation is kept in memory), or a file made private."""


def store_failure(action: str, path: str, error: sqlite3.Error) -> StoreError:
    """A one-line StoreError for SQLite's ``error`` while trying to ``action`` the store at ``path``,
    naming the cause and the fix."""
    text = str(error)
    if "malformed" in text or "not a database" in text:
        fix = "the file is damaged: move it away (a new store is made in its place) or pass another path"
    elif "readonly" in text:
        fix = "the file is read-only: make it writable or pass another path"
    elif "locked" in text or "busy" in text:
        fix = "another kernel holds it: try again"
    else:
        fix = "check the file, or pass another path"
    return StoreError(f"cannot {action} the store {path} ({type(error).__name__}: {text}); {fix}")


def cause(error: BaseException) -> BaseException:
    """SQLite's own error behind a StoreError (the error itself if there is none)."""
    return error.__cause__ if isinstance(error, StoreError) and error.__cause__ is not None else error


def warn_failed(what: str, error: BaseException, *, path: str | None = None) -> None:
    """Tell the user a write was lost; a full disk must not cost them the answer on screen.

    ``Database.warn_once`` calls this once per kind of failure, so a damaged or read-only file
    says so once, not at every message."""
    where = f" {path}" if path else ""
    error = cause(error)
    warnings.warn(f"the store{where} could not {what} ({type(error).__name__}: {error}); the conversation "
                  "continues in memory, unsaved (further failures like this one are not repeated)",
                  StoreWarning, stacklevel=4)
