"""The request parameters people tune and the settings of a Chatbot, checked as the magics check
them: a value out of range is one ConfigurationError line, raised before anything is sent."""

from __future__ import annotations

from typing import Any

from .errors import ConfigurationError

# Request parameters any Chatbot or single question can set.
REQUEST_PARAMS = ("temperature", "top_p", "frequency_penalty", "presence_penalty", "seed", "stop",
                  "response_format", "logprobs", "top_logprobs", "max_tokens", "extra_body")
# name -> (lowest, highest): the API's documented ranges.
RANGES: dict[str, tuple[float, float]] = {
    "temperature": (0, 2), "top_p": (0, 1), "frequency_penalty": (-2, 2), "presence_penalty": (-2, 2),
}
# name -> the smallest whole number allowed.
WHOLE_MINIMUMS: dict[str, int] = {"max_tokens": 1, "top_logprobs": 0}


def check_params(params: dict[str, Any]) -> None:
    """Raise ConfigurationError for an unknown parameter or a value the API would refuse (None: unset)."""
    unknown = sorted(set(params) - set(REQUEST_PARAMS))
    if unknown:
        raise ConfigurationError(
            f"unknown parameter{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}; "
            f"known: {', '.join(REQUEST_PARAMS)}")
    for name, value in params.items():
        if value is None:
            continue
        if name in RANGES:
            low, high = RANGES[name]
            if not _is_number(value) or not low <= value <= high:
                raise ConfigurationError(f"{name} must be between {low:g} and {high:g}, got {value!r}")
        elif name in WHOLE_MINIMUMS:
            check_whole(name, value, WHOLE_MINIMUMS[name])
        elif name == "seed" and (isinstance(value, bool) or not isinstance(value, int)):
            raise ConfigurationError(f"seed must be a whole number, got {value!r}")
        elif name == "logprobs" and not isinstance(value, bool):
            raise ConfigurationError(f"logprobs must be True or False, got {value!r}")
        elif name == "stop" and not (isinstance(value, str) or (
                isinstance(value, (list, tuple)) and all(isinstance(item, str) for item in value))):
            raise ConfigurationError(f"stop must be a string or a list of strings, got {value!r}")


def check_whole(name: str, value: Any, minimum: int) -> None:
    """``value`` must be a whole number >= ``minimum`` (None: unset)."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < minimum):
        raise ConfigurationError(f"{name} must be a whole number >= {minimum}, got {value!r}")


def check_seconds(name: str, value: Any) -> None:
    """``value`` must be a number of seconds > 0 (None: the default)."""
    if value is not None and (not _is_number(value) or not value > 0):
        raise ConfigurationError(f"{name} must be a number of seconds > 0, got {value!r}")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value  # not NaN
