"""Conversation and message rows: a message goes in and comes out equal (images, usage, status,
tool calls and results), state updates touch only what they name, session names are checked with
one line; migration 6 adds the tool columns to a schema-5 file and keeps its messages."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from jupyter_llmchat.core.messages import ImageRef, Message, ToolRequest
from jupyter_llmchat.core.reply import Usage
from jupyter_llmchat.store.conversations import (
    SELECT_CONVERSATION,
    check_name,
    conversation_from_row,
    dumps,
    insert_conversation,
    insert_message,
    message_from_row,
    update_state,
)
from jupyter_llmchat.store.database import MEMORY, Database
from jupyter_llmchat.store.errors import StoreError
from jupyter_llmchat.store.migrations import MIGRATIONS, Migrations, schema_version
from jupyter_llmchat.store.store import Store


@pytest.fixture
def database():
    opened = Database(MEMORY)
    yield opened
    opened.close()


def test_a_message_round_trips_exactly(database: Database) -> None:
    image = ImageRef("data:image/png;base64,AAAA", detail="low", width=1, height=1, mime="image/png",
                     source="dot.png")
    messages = [Message("user", "Look: é ✓", 9, images=(image,), created=10.0),
                Message("assistant", "A dot.", 3, status="interrupted", model="gpt-4o",
                        usage=Usage(20, 3, 8), created=11.0)]
    with database.transaction() as db:
        conversation = insert_conversation(db, "s", "gpt-4o", "Be brief.", {"temperature": 0}, None)
        for message in messages:
            insert_message(db, conversation, message)
    rows = database.query("SELECT * FROM messages WHERE conversation = ? ORDER BY id", (conversation,))
    assert [message_from_row(row) for row in rows] == messages


def test_state_updates_change_only_what_they_name(database: Database) -> None:
    with database.transaction() as db:
        conversation = insert_conversation(db, "s", "gpt-4o", "Be brief.", {"temperature": 0},
                                           {"max_history": 4})
        update_state(db, conversation, {"system": None, "params": {"seed": 7}})
    (row,) = database.query(f"{SELECT_CONVERSATION} WHERE c.id = ?", (conversation,))
    saved = conversation_from_row(row)
    assert (saved.session, saved.model, saved.system, saved.params, saved.settings, saved.messages) == (
        "s", "gpt-4o", None, {"seed": 7}, {"max_history": 4}, 0)


def test_session_names_are_non_empty_text() -> None:
    check_name("review")
    for bad in ("", "  ", None, 3):
        with pytest.raises(StoreError) as caught:
            check_name(bad)
        assert str(caught.value) == f"a session name must be non-empty text, got {bad!r}"


def test_dumps_is_compact_and_keeps_non_ascii() -> None:
    assert dumps({"a": [1, "é"]}) == '{"a":[1,"é"]}'


def test_tool_calls_and_results_round_trip(database: Database) -> None:
    calls = (ToolRequest("call_1", "get_weather", '{"city": "Lyon"}'), ToolRequest("call_2", "add", "{bad"))
    messages = [Message("user", "Weather?", 8, created=1.0),
                Message("assistant", "", 40, model="gpt-4o", usage=Usage(50, 20), tool_calls=calls, created=2.0),
                Message("tool", "sunny", 9, tool_call_id="call_1", created=3.0),
                Message("tool", "Error: not valid JSON", 12, tool_call_id="call_2", created=4.0)]
    with database.transaction() as db:
        conversation = insert_conversation(db, "s", "gpt-4o", None, None, None)
        for message in messages:
            insert_message(db, conversation, message)
    rows = database.query("SELECT * FROM messages WHERE conversation = ? ORDER BY id", (conversation,))
    assert [message_from_row(row) for row in rows] == messages
    assert [row["tool_calls"] for row in rows][:2] == [None, dumps([call._asdict() for call in calls])]


def test_migration_6_gives_a_schema_5_file_tool_columns_and_keeps_its_messages(tmp_path: Path) -> None:
    path = tmp_path / "v5.sqlite3"
    Database(path, migrations=Migrations(list(MIGRATIONS)[:5])).close()  # a file as schema 5 left it
    with closing(sqlite3.connect(path, isolation_level=None)) as db:
        assert schema_version(db) == 5
        db.execute("INSERT INTO conversations (session, created, updated, model) VALUES ('old', 1, 1, 'gpt-4o')")
        db.execute("INSERT INTO messages (conversation, role, text, tokens, status, created) "
                   "VALUES (1, 'user', 'hello', 8, 'complete', 2.0)")
    with Store(path) as store:
        (message,) = store.messages(store.conversation("old").id)
        assert message == Message("user", "hello", 8, created=2.0)
        assert (message.tool_calls, message.tool_call_id) == ((), None)
    with closing(sqlite3.connect(path)) as db:
        assert schema_version(db) >= 6
        assert [row[1] for row in db.execute("PRAGMA table_info(messages)")][-2:] == ["tool_calls", "tool_call_id"]
