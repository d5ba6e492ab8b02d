"""jupyter_llmchat: talk to large language models from Jupyter.

``Chatbot`` is the core (no IPython needed). In a notebook, ``%load_ext jupyter_llmchat`` adds the
``%%chat`` and ``%chat`` magics; ``load_chatbot(name)`` continues a session saved in the store.
Heavy modules load on first use, so importing this is cheap.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from .core.errors import ChatError
from .core.reply import NullSink, PrintSink, Reply, ReplySink, Usage, set_default_sink_hook
from .core.tool_sets import register_tool_set

if TYPE_CHECKING:
    import os

    from .core.chatbot import Chatbot
    from .core.images import ImageSource
    from .core.models import add_model
    from .notebook.logprobs_view import LogprobsView
    from .notebook.panel import ChatPanel
    from .store.store import Store

__version__ = "0.1.0"
__all__ = [
    "ChatError",
    "ChatPanel",
    "Chatbot",
    "ImageSource",
    "LogprobsView",
    "NullSink",
    "PrintSink",
    "Reply",
    "ReplySink",
    "Store",
    "Usage",
    "add_model",
    "load_chatbot",
    "load_ipython_extension",
    "unload_ipython_extension",
]


_LAZY = {"Chatbot": "core.chatbot", "ChatPanel": "notebook.panel", "ImageSource": "core.images",
         "LogprobsView": "notebook.logprobs_view", "Store": "store.store", "add_model": "core.models"}


def __getattr__(name: str) -> Any:
    """Heavy parts load on first use: ``import jupyter_llmchat`` stays cheap for %load_ext."""
    if name in _LAZY:
        from importlib import import_module

        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'jupyter_llmchat' has no attribute {name!r}")


def _notebook_sink() -> ReplySink | None:
    """``bot.ask(...)`` without a sink: live Markdown in a Jupyter kernel (as ``%%chat`` shows it),
    None (plain text) anywhere else. IPython and the notebook layer load only in a kernel."""
    if "ipykernel" not in sys.modules:  # no kernel in this process: nothing to import
        return None
    from .notebook.publish import in_notebook_kernel

    if not in_notebook_kernel():
        return None
    from .notebook.display import make_sink

    return make_sink(kind="display")


set_default_sink_hook(_notebook_sink)


def _notebook_tools() -> list[Any]:
    """``tools="notebook"``: the built-in notebook tools over the running IPython's namespace."""
    from .notebook.kernel_tools import notebook_tools

    return list(notebook_tools())


register_tool_set("notebook", _notebook_tools)


def load_chatbot(name: str, *, store: Store | str | os.PathLike[str] | None = None, **options: Any) -> Chatbot:
    """The conversation saved as session ``name``, restored exactly into a new Chatbot that keeps
    recording into it. ``store``: a Store, a file path, or None for the default file (what the
    magics use). ``options`` are what the store does not keep: api_key, base_url, client, ..."""
    from .store.store import open_store  # SQLite and the SDK load only when used

    return open_store(store).chatbot(name, **options)


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext jupyter_llmchat``: register the chat magics."""
    from .notebook.magics import load_ipython_extension as load

    load(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    """``%unload_ext jupyter_llmchat``: remove the chat magics."""
    from .notebook.magics import unload_ipython_extension as unload

    unload(ipython)
