"""The HTTP layer: the only code that talks to an endpoint (through the openai SDK).

``chat`` streams Chat Completions (ChatClient, ChatStream); ``async_chat`` asks many at once on
an event loop of its own (AsyncChat, for ``Chatbot.map``); ``batches`` speaks the Batch API
(BatchClient); ``wire`` lets a stop cut an abandoned request's connection. Everything else in the
package reaches the network through here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .async_chat import AsyncChat, AttemptFailed, Completion
from .batches import BatchClient, BatchStatus
from .chat import (
    DEFAULT_FIRST_BYTE_TIMEOUT,
    DEFAULT_MAX_RETRIES,
    DEFAULT_TIMEOUT,
    ChatClient,
    ChatStream,
    Stage,
    chat_client,
    import_sdk,
)
from .embeddings import EmbeddedBatch, EmbeddingClient

if TYPE_CHECKING:
    from .chat import AnyClient

__all__ = ["DEFAULT_FIRST_BYTE_TIMEOUT", "DEFAULT_MAX_RETRIES", "DEFAULT_TIMEOUT", "AnyClient", "AsyncChat",
           "AttemptFailed", "BatchClient", "BatchStatus", "ChatClient", "ChatStream", "Completion", "EmbeddedBatch",
           "EmbeddingClient", "Stage", "chat_client", "import_sdk"]
