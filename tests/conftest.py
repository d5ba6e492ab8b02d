"""Shared pytest fixtures.

``loopback``: the real loopback OpenAI-compatible server (one per test session, on 127.0.0.1),
reset around each test so its script queue, request log and prompt cache start empty and its
default reply settings are the defaults.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from jupyter_llmchat.server import LoopbackServer


@pytest.fixture(scope="session")
def loopback_server() -> Iterator[LoopbackServer]:
    with LoopbackServer() as server:
        yield server


@pytest.fixture
def loopback(loopback_server: LoopbackServer) -> Iterator[LoopbackServer]:
    loopback_server.reset()
    yield loopback_server
    loopback_server.reset()
    loopback_server.default_tokens, loopback_server.default_rate = 150, None  # a test may change them
