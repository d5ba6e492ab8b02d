"""Conversation and message rows: a message goes in and comes out equal (images, usage, status),
state updates touch only what they name, session names are checked with one line."""

from __future__ import annotations

import pytest

from jupyter_llmchat.core.messages import ImageRef, Message
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
