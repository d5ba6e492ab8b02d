"""Parameters and settings checked as the magics check them: one ConfigurationError line each."""

from __future__ import annotations

import pytest

from jupyter_llmchat.core.errors import ConfigurationError
from jupyter_llmchat.core.params import check_params, check_seconds, check_whole


@pytest.mark.parametrize("params, message", [
    ({"temprature": 0.5}, "unknown parameter temprature; known: temperature, top_p, frequency_penalty, "
                          "presence_penalty, seed, stop, response_format, logprobs, top_logprobs, max_tokens, "
                          "extra_body"),
    ({"temperature": 2.5}, "temperature must be between 0 and 2, got 2.5"),
    ({"temperature": -0.1}, "temperature must be between 0 and 2, got -0.1"),
    ({"temperature": "hot"}, "temperature must be between 0 and 2, got 'hot'"),
    ({"temperature": float("nan")}, "temperature must be between 0 and 2, got nan"),
    ({"top_p": 1.01}, "top_p must be between 0 and 1, got 1.01"),
    ({"frequency_penalty": -2.5}, "frequency_penalty must be between -2 and 2, got -2.5"),
    ({"presence_penalty": 3}, "presence_penalty must be between -2 and 2, got 3"),
    ({"max_tokens": 0}, "max_tokens must be a whole number >= 1, got 0"),
    ({"max_tokens": 10.5}, "max_tokens must be a whole number >= 1, got 10.5"),
    ({"max_tokens": True}, "max_tokens must be a whole number >= 1, got True"),
    ({"top_logprobs": -1}, "top_logprobs must be a whole number >= 0, got -1"),
    ({"seed": "7"}, "seed must be a whole number, got '7'"),
    ({"logprobs": 1}, "logprobs must be True or False, got 1"),
    ({"stop": ["END", 3]}, "stop must be a string or a list of strings, got ['END', 3]"),
])
def test_values_the_api_would_refuse_are_one_line(params, message):
    with pytest.raises(ConfigurationError) as caught:
        check_params(params)
    assert str(caught.value) == message


def test_good_values_and_unset_ones_pass():
    check_params({"temperature": 0, "top_p": 1.0, "frequency_penalty": -2, "presence_penalty": 2.0, "seed": 7,
                  "stop": "END", "logprobs": True, "top_logprobs": 0, "max_tokens": 1, "extra_body": {},
                  "response_format": {"type": "json_object"}})
    check_params({"temperature": None, "max_tokens": None})


def test_whole_numbers_and_seconds():
    check_whole("max_retries", 0, 0)
    check_whole("max_retries", None, 0)
    check_seconds("timeout", 0.001)
    check_seconds("timeout", None)
    with pytest.raises(ConfigurationError, match=r"^max_history must be a whole number >= 1, got 0$"):
        check_whole("max_history", 0, 1)
    for value in (0, -1, "10", float("nan"), True):
        with pytest.raises(ConfigurationError, match=r"^first_byte_timeout must be a number of seconds > 0, got "):
            check_seconds("first_byte_timeout", value)
