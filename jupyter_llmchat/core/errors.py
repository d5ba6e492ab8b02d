"""One exception hierarchy: every error a user can meet, each a single line naming cause and fix."""

from __future__ import annotations


def one_line(text: str, limit: int = 300) -> str:
    """``text`` folded onto one line (runs of white space become one space), cut at ``limit``."""
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


class ChatError(Exception):
    """Base class. ``str(error)`` is one line that says what went wrong and how to fix it."""


class ConfigurationError(ChatError):
    """A setting is missing or invalid (no API key, bad parameter value, unknown option)."""


class MissingAPIKeyError(ConfigurationError):
    """No key and no base URL: nothing to talk to."""


class PromptTooLongError(ChatError):
    """The new question alone cannot fit the token budget; raised before anything is sent."""

    def __init__(self, message: str, *, needed: int, budget: int) -> None:
        super().__init__(message)
        self.needed = needed
        self.budget = budget


class CostLimitError(ChatError):
    """The question could cost more than ``max_cost_per_question`` (its prompt and the longest answer
    allowed); raised before anything is sent. ``figures`` is the part of the message that names the
    costs, so a caller (the magics) can say how to raise the limit in its own terms."""

    def __init__(self, message: str, *, figures: str, cost: float, limit: float) -> None:
        super().__init__(message)
        self.figures = figures
        self.cost = cost
        self.limit = limit


class ImageError(ChatError):
    """An image source cannot be used (missing file, not an image, too large, bad URL scheme)."""


class StructuredAnswerError(ChatError):
    """An answer asked for with ``schema=`` that yields no valid object: not JSON or not matching
    the schema (``reason`` "invalid", after the repair round), cut at a token limit ("truncated") or
    stopped by the content filter ("filtered"). ``text`` is the raw answer, never half-parsed;
    ``reply`` the Reply it came in, when there was one."""

    def __init__(self, message: str, *, text: str, reason: str = "invalid", reply: object = None) -> None:
        super().__init__(message)
        self.text = text
        self.reason = reason
        self.reply = reply


class APIError(ChatError):
    """The endpoint answered with an error (after retries where retrying makes sense)."""

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class AuthenticationError(APIError):
    """401/403: the key is wrong, missing or lacks access."""


class ModelNotFoundError(APIError):
    """404 or model_not_found: the endpoint does not serve this model."""


class RateLimitError(APIError):
    """429 that persisted through every retry."""


class ServerError(APIError):
    """5xx that persisted through every retry."""


class ContextLengthError(APIError):
    """400 context_length_exceeded: the endpoint counted more tokens than its window holds."""


class BadRequestError(APIError):
    """Any other 4xx: the request itself was rejected."""


class EndpointConnectionError(APIError):
    """The endpoint could not be reached (refused, DNS, timeout) through every retry."""


class StreamError(APIError):
    """The stream broke after it started (disconnect, malformed chunk); partial text is kept."""


class BatchError(APIError):
    """A Batch API job cannot be submitted, found or collected (no Batch API, unknown job or batch)."""
