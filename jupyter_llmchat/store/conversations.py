"""Saved conversations and their messages as SQL rows: what the Store reads and writes for sessions.

A *session* is a name ("default", "review", ...); each fresh start or reset under it begins a new
*conversation* row, so nothing saved before is overwritten. Writers take the caller's transaction
(``Database.transaction()``), so a message and the settings saved with it commit together.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import asdict, dataclass
from typing import Any

from ..core.messages import Message
from .errors import StoreError

# A conversation row with its message count; "updated" is its last change: settings or a message.
SELECT_CONVERSATION = (
    "SELECT c.id, c.session, c.created, c.model, c.system, c.params, c.settings, "
    "MAX(c.updated, COALESCE((SELECT MAX(created) FROM messages m WHERE m.conversation = c.id), 0)) "
    "AS updated, (SELECT COUNT(*) FROM messages m WHERE m.conversation = c.id) AS messages "
    "FROM conversations c")


@dataclass(frozen=True)
class SavedConversation:
    """One saved conversation: a session's run from a fresh start (or a reset) onward."""

    id: int
    session: str
    created: float
    updated: float
    model: str
    system: str | None
    params: dict[str, Any]
    settings: dict[str, Any]
    messages: int = 0


def insert_conversation(db: sqlite3.Connection, session: str, model: str, system: str | None,
                        params: dict[str, Any] | None, settings: dict[str, Any] | None) -> int:
    """Add a conversation row; returns its id."""
    now = time.time()
    cursor = db.execute(
        "INSERT INTO conversations (session, created, updated, model, system, params, settings) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        (session, now, now, model, system, dumps(params or {}), dumps(settings or {})))
    assert cursor.lastrowid is not None  # every INSERT sets it
    return cursor.lastrowid


def insert_message(db: sqlite3.Connection, conversation: int, message: Message) -> None:
    """Append ``message`` to ``conversation``."""
    # The fields of Message.to_dict(), without its deep copy: this runs for every message.
    images = dumps([asdict(image) for image in message.images]) if message.images else "[]"
    usage = dumps(asdict(message.usage)) if message.usage else None
    calls = dumps([call._asdict() for call in message.tool_calls]) if message.tool_calls else None
    db.execute(
        "INSERT INTO messages (conversation, role, text, tokens, images, name, status, model, usage, created, "
        "tool_calls, tool_call_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (conversation, message.role, message.text, message.tokens, images, message.name, message.status,
         message.model, usage, message.created, calls, message.tool_call_id))


def update_state(db: sqlite3.Connection, conversation: int, state: dict[str, Any]) -> None:
    """Save the model, system, params and settings found in ``state``."""
    columns: dict[str, Any] = {"updated": time.time()}
    for key in ("model", "system"):
        if key in state:
            columns[key] = state[key]
    for key in ("params", "settings"):
        if key in state:
            columns[key] = dumps(state[key])
    assignments = ", ".join(f"{column} = ?" for column in columns)
    db.execute(f"UPDATE conversations SET {assignments} WHERE id = ?", (*columns.values(), conversation))


def message_from_row(row: dict[str, Any]) -> Message:
    return Message.from_dict({
        "role": row["role"], "text": row["text"], "tokens": row["tokens"],
        "images": json.loads(row["images"]), "name": row["name"], "status": row["status"],
        "model": row["model"], "usage": json.loads(row["usage"]) if row["usage"] else None,
        "created": row["created"],
        "tool_calls": json.loads(row["tool_calls"]) if row["tool_calls"] else (),
        "tool_call_id": row["tool_call_id"]})


def conversation_from_row(row: dict[str, Any]) -> SavedConversation:
    return SavedConversation(row["id"], row["session"], row["created"], row["updated"], row["model"],
                             row["system"], json.loads(row["params"]), json.loads(row["settings"]),
                             row.get("messages", 0))


def check_name(session: Any) -> None:
    """A session name is non-empty text."""
    if not isinstance(session, str) or not session.strip():
        raise StoreError(f"a session name must be non-empty text, got {session!r}")


def dumps(value: Any) -> str:
    """Compact JSON, non-ASCII kept as is."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
