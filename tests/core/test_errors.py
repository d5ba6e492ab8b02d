"""Errors are one line: API errors carry status and code; one_line folds any text for a message."""

from __future__ import annotations

import pytest

from jupyter_llmchat.core import errors


def test_api_error_fields():
    error = errors.RateLimitError("rate limited", status=429, code="rate_limit_exceeded")
    assert (str(error), error.status, error.code) == ("rate limited", 429, "rate_limit_exceeded")
    too_long = errors.PromptTooLongError("too long", needed=10, budget=5)
    assert (too_long.needed, too_long.budget) == (10, 5)


@pytest.mark.parametrize(("text", "limit", "expected"), [
    ("a\n  b\tc\r\n", 300, "a b c"),
    ("", 300, ""),
    ("x" * 10, 5, "xxxx…"),
    ("Traceback:\n  File 'x'\nValueError: bad", 300, "Traceback: File 'x' ValueError: bad"),
])
def test_one_line_folds_white_space_and_cuts(text: str, limit: int, expected: str) -> None:
    assert errors.one_line(text, limit) == expected
