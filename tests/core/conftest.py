"""Fixtures shared by the tests of core modules.

``server``: the ``loopback`` server with its Batch API clock sped up so far that a batch is done
by the time it is first looked at (restored afterwards); a test may set ``speedup = 0`` to hold
batches and step them with ``server.batches.clock.advance``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from jupyter_llmchat.server import LoopbackServer
from jupyter_llmchat.server.batches import DEFAULT_SPEEDUP


@pytest.fixture
def server(loopback: LoopbackServer) -> Iterator[LoopbackServer]:
    loopback.batches.speedup = 1e6  # a batch is done by the time it is first looked at
    yield loopback
    loopback.batches.speedup = DEFAULT_SPEEDUP
