"""Named sessions are independent Chatbots made by one factory."""

from __future__ import annotations

import pytest

from jupyter_llmchat.core.chatbot import Chatbot
from jupyter_llmchat.core.errors import ConfigurationError
from jupyter_llmchat.core.sessions import Sessions


def test_sessions_are_made_once_and_kept_apart():
    sessions = Sessions(lambda name: Chatbot("gpt-4o", base_url="http://127.0.0.1:9/v1", system=name))
    a, b = sessions.get("a"), sessions.get("b")
    assert sessions.get("a") is a and a is not b
    assert (a.system, b.system) == ("a", "b")
    assert sessions.names() == ["a", "b"] and "a" in sessions and len(sessions) == 2
    sessions.drop("a")
    assert sessions.names() == ["b"]


def test_unknown_session_is_a_one_line_error():
    sessions = Sessions(lambda name: Chatbot("gpt-4o", base_url="http://127.0.0.1:9/v1"))
    sessions.get("default")
    with pytest.raises(ConfigurationError, match=r"^unknown session 'x' \(sessions: default\); start it by asking with -s x$"):
        sessions.get("x", create=False)
