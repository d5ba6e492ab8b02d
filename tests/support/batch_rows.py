"""Batch API requests in tests: rows to send, a client for the loopback server, a fast poll, and
the custom_ids of each batch the server was sent.

Shared by tests/core/test_batch.py (the runner) and tests/core/client/test_batches.py (BatchClient).
"""

from __future__ import annotations

from typing import Any

from jupyter_llmchat.core.batch import PollPolicy
from jupyter_llmchat.core.client import ChatClient
from jupyter_llmchat.core.rows import RowRequest
from jupyter_llmchat.server import LoopbackServer

FAST = PollPolicy(first=0.01, factor=1.0, most=0.01)
MODEL = "gpt-4o-mini"


def rows(count: int, **params: Any) -> list[RowRequest]:
    return [RowRequest(i, MODEL, [{"role": "user", "content": f"Classify item {i}"}], dict(params))
            for i in range(count)]


def client_for(server: LoopbackServer) -> ChatClient:
    return ChatClient(base_url=server.base_url, max_retries=0)


def batch_lines(server: LoopbackServer) -> list[list[str]]:
    """The custom_ids of each batch the server was sent, in order."""
    return [[line["custom_id"] for line in server.batches.input_lines(batch_id)]
            for batch_id in server.batches.batch_ids()]
