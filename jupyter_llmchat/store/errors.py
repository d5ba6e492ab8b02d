"""The store's two ways to fail: an error for what cannot be done, a warning for a lost write.

Every other store module imports these; this one imports nothing of the store.
"""

from __future__ import annotations

import warnings

from ..core.errors import ChatError


class StoreError(ChatError):
    """The store cannot do what was asked (unknown session, bad file, bad import data)."""


class StoreWarning(UserWarning):
    """A write to the store failed while chatting: the conversation goes on in memory."""


def warn_failed(what: str, error: Exception) -> None:
    """Tell the user once per failure; a full disk must not cost them the answer on screen."""
    warnings.warn(f"the store could not {what} ({type(error).__name__}: {error}); the conversation "
                  "continues in memory, see Store.path", StoreWarning, stacklevel=3)
