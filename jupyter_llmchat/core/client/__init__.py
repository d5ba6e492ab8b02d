"""The HTTP layer: the only code that talks to an endpoint (through the openai SDK).

``chat`` streams Chat Completions (ChatClient, ChatStream); ``wire`` lets a stop cut an abandoned
request's connection. Everything else in the package reaches the network through here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

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

if TYPE_CHECKING:
    from .chat import AnyClient

__all__ = ["DEFAULT_FIRST_BYTE_TIMEOUT", "DEFAULT_MAX_RETRIES", "DEFAULT_TIMEOUT", "AnyClient", "ChatClient",
           "ChatStream", "Stage", "chat_client", "import_sdk"]
