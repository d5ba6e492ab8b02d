"""Shared pytest fixtures.

``loopback``: the real loopback OpenAI-compatible server (one per test session, on 127.0.0.1),
reset around each test so its script queue, request log and prompt cache start empty and its
default reply settings are the defaults.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from jupyter_llmchat.server import LoopbackServer


@pytest.fixture(scope="session", autouse=True)
def private_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Keep the default conversation store (user data dir) of this run, and of every kernel it
    starts, out of the real one."""
    saved = os.environ.get("XDG_DATA_HOME")
    os.environ["XDG_DATA_HOME"] = str(tmp_path_factory.mktemp("xdg-data"))
    yield
    if saved is None:
        os.environ.pop("XDG_DATA_HOME", None)
    else:
        os.environ["XDG_DATA_HOME"] = saved


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
    loopback_server.latency = 0.0
