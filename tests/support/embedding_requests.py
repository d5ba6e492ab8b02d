"""Embedding requests in tests: a bot on the loopback server, its /embeddings request log, and the
vectors the server is expected to send (recomputed from ``embedding_vector``, not read back).

Shared by tests/core/test_embedding.py (Chatbot.embed) and tests/core/client/test_embeddings.py
(EmbeddingClient).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from jupyter_llmchat.core.chatbot import Chatbot
from jupyter_llmchat.server import LoopbackServer
from jupyter_llmchat.server.embeddings import embedding_vector

MODEL = "text-embedding-3-small"
TEXTS = [f"review number {i}: {'good' if i % 3 else 'bad'}" for i in range(40)]


def make_bot(loopback: LoopbackServer, **kwargs: Any) -> Chatbot:
    return Chatbot("gpt-4o-mini", base_url=loopback.base_url, api_key="sk-test", **kwargs)


def embedding_logs(loopback: LoopbackServer) -> list[Any]:
    return [r for r in loopback.requests if r.path.endswith("/embeddings")]


def expected(texts: list[str], dimensions: int | None = None) -> np.ndarray:
    return np.stack([embedding_vector(MODEL, text, dimensions) for text in texts])
