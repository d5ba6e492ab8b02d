"""How IPython shows our errors: one line ("ImageError: ..."), never a traceback.

Errors raised before anything was sent say so, since "nothing lost" is the promise.
"""

from __future__ import annotations

from ..core.errors import ChatError, ConfigurationError, ImageError, PromptTooLongError
from .expansion import ExpansionError

# Raised before anything is sent: the message says so.
PRE_SEND_ERRORS = (ExpansionError, ImageError, PromptTooLongError, ConfigurationError)


def shown_in_one_line(error: ChatError) -> ChatError:
    """``error``, marked so IPython shows it as one line "Type: message" instead of a traceback."""
    message = str(error)
    if isinstance(error, PRE_SEND_ERRORS):
        message += " (nothing was sent)"
    line = f"{type(error).__name__}: {message}"
    error._render_traceback_ = lambda: [line]  # type: ignore[attr-defined] # IPython's hook
    return error
