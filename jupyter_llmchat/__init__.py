"""jupyter_llmchat: talk to large language models from Jupyter.

``Chatbot`` is the core (no IPython needed). In a notebook, ``%load_ext jupyter_llmchat`` adds the
``%%chat`` and ``%chat`` magics. Heavy modules load on first use, so importing this is cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import ChatError
from .reply import NullSink, PrintSink, Reply, ReplySink, Usage

if TYPE_CHECKING:
    from .chatbot import Chatbot

__version__ = "0.1.0"
__all__ = ["Chatbot", "ChatError", "NullSink", "PrintSink", "Reply", "ReplySink", "Usage",
           "load_ipython_extension", "unload_ipython_extension"]


def __getattr__(name: str) -> Any:
    if name == "Chatbot":
        from .chatbot import Chatbot

        return Chatbot
    if name == "ChatPanel":
        from .panel import ChatPanel

        return ChatPanel
    raise AttributeError(f"module 'jupyter_llmchat' has no attribute {name!r}")


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext jupyter_llmchat``: register the chat magics."""
    from .magics import load_ipython_extension as load

    load(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    """``%unload_ext jupyter_llmchat``: remove the chat magics."""
    from .magics import unload_ipython_extension as unload

    unload(ipython)
