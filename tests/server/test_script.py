"""Scripts for the next requests (server/script.py): built from keywords or JSON alike, and checked
when made, with one line saying what is wrong."""

from __future__ import annotations

import pytest

from jupyter_llmchat.server.script import Script


def test_queue_rejects_bad_scripts_in_one_line(loopback):
    with pytest.raises(ValueError, match="unknown fault 'meltdown'; choose one of: rate_limit"):
        loopback.queue(fault="meltdown")
    with pytest.raises(ValueError, match="not both"):
        loopback.queue(reply="x", tokens=5)
    with pytest.raises(ValueError, match="rate must be > 0"):
        loopback.queue(rate=0)
    with pytest.raises(ValueError, match="times must be"):
        loopback.queue(times=0)
    assert loopback.pending == 0


def test_a_script_from_json_is_the_same_as_from_keywords_and_round_trips():
    script = Script.from_mapping({"reply": "hi", "rate": 20, "times": 2, "tool_calls": [{"name": "f", "arguments": "{"}]})
    assert script == Script(reply="hi", rate=20, times=2, tool_calls=[{"name": "f", "arguments": "{"}])
    assert Script.from_mapping(script.to_dict()) == script
    assert Script.from_mapping({}) == Script()  # the default reply


@pytest.mark.parametrize("data, message", [
    ([{"reply": "x"}], "a loopback script must be a JSON object, got list"),
    ({"speed": 3, "reply": "x", "volume": 11}, "unknown loopback option(s) speed, volume; known: after_tokens, delay, "
                                               "fault, finish_reason, fragment, rate, reply, retry_after, times, "
                                               "tokens, tool_calls"),
    ({"tokens": True}, "tokens has the wrong type: bool"),
    ({"reply": 5}, "reply has the wrong type: int"),
    ({"delay": -1}, "delay must be >= 0, got -1"),
    ({"after_tokens": -2}, "after_tokens must be >= 0, got -2"),
    ({"finish_reason": "done"}, "unknown finish_reason 'done'; choose one of: stop, length, content_filter, tool_calls"),
    ({"times": 1.5}, "times must be an integer >= 1, got 1.5"),
    ({"fragment": 0}, "fragment must be >= 1, got 0"),
    ({"tool_calls": []}, 'tool_calls must be a non-empty list of {"name": ..., "arguments": ...} objects'),
    ({"tool_calls": [{"arguments": {}}]}, "each tool call needs a \"name\" string, got {'arguments': {}}"),
    ({"tool_calls": [{"name": "f", "args": {}}]}, "unknown tool call field(s) args; known: arguments, id, name"),
    ({"tool_calls": [{"name": "f", "arguments": 3}]}, "a tool call's arguments must be an object, or a string sent as it is"),
])
def test_a_bad_script_from_json_is_refused_with_what_is_wrong(data, message):
    with pytest.raises(ValueError) as refused:
        Script.from_mapping(data)
    assert str(refused.value) == message
