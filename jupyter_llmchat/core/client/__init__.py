"""The HTTP layer: the only code that talks to an endpoint (through the openai SDK).

``chat`` streams Chat Completions (ChatClient, ChatStream); ``batches`` speaks the Batch API
(BatchClient); ``wire`` lets a stop cut an abandoned request's connection. Everything else in the
package reaches the network through here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

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

__all__ = ["DEFAULT_FIRST_BYTE_TIMEOUT", "DEFAULT_MAX_RETRIES", "DEFAULT_TIMEOUT", "AnyClient", "BatchClient",
           "BatchStatus", "ChatClient", "ChatStream", "EmbeddedBatch", "EmbeddingClient", "Stage", "chat_client",
           "import_sdk"]
