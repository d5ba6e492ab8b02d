"""One hierarchy: every error is a ChatError; API errors carry status and code."""

from __future__ import annotations

from jupyter_llmchat.core import errors


def test_hierarchy():
    for name in ["ConfigurationError", "PromptTooLongError", "ImageError", "APIError", "StreamError"]:
        assert issubclass(getattr(errors, name), errors.ChatError)
    for name in ["AuthenticationError", "ModelNotFoundError", "RateLimitError", "ServerError",
                 "ContextLengthError", "BadRequestError", "EndpointConnectionError"]:
        assert issubclass(getattr(errors, name), errors.APIError)
    assert issubclass(errors.MissingAPIKeyError, errors.ConfigurationError)


def test_api_error_fields():
    error = errors.RateLimitError("rate limited", status=429, code="rate_limit_exceeded")
    assert (str(error), error.status, error.code) == ("rate limited", 429, "rate_limit_exceeded")
    too_long = errors.PromptTooLongError("too long", needed=10, budget=5)
    assert (too_long.needed, too_long.budget) == (10, 5)
