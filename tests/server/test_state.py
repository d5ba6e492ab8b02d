"""What a running loopback server remembers (server/state.py): the script queue with ``times``, the
request log, reset, the masked log entries as JSON, and dropping kept-alive connections on stop."""

from __future__ import annotations

import socket

from support.loopback_client import encode

from jupyter_llmchat.server.script import Script
from jupyter_llmchat.server.state import DEFAULT_MODELS, LoggedRequest, ServerState

LONG_PROMPT = [{"role": "user", "content": "Context: " + " lorem ipsum" * 700}]


def new_state() -> ServerState:
    return ServerState(api_key=None, default_tokens=150, default_rate=None, models=DEFAULT_MODELS, strict=True)


def entry(path: str) -> LoggedRequest:
    return LoggedRequest("POST", path, {"authorization": "Bearer ***"}, {"model": "gpt-4o-mini"}, 1700000000.0)


def test_scripts_are_taken_in_order_each_as_many_times_as_asked_then_the_default():
    state = new_state()
    assert state.pending() == 0
    assert state.push([Script(reply="twice", times=2)]) == 2
    assert state.push([Script(tokens=5), Script(fault="server_error")]) == 4
    assert state.pop() == Script(reply="twice", times=2)
    assert state.pending() == 3
    assert state.pop() == Script(reply="twice", times=1)
    assert [state.pop(), state.pop()] == [Script(tokens=5), Script(fault="server_error")]
    assert state.pending() == 0
    assert state.pop() == Script() == state.pop()  # an empty queue: the default reply, every time


def test_the_request_log_keeps_every_entry_in_order_and_hands_out_copies():
    state = new_state()
    first, second = entry("/v1/models"), entry("/v1/chat/completions")
    state.record(first)
    state.record(second)
    seen = state.requests()
    assert seen == [first, second]
    seen.clear()  # a caller's list is its own
    assert state.requests() == [first, second]


def test_a_log_entry_is_plain_json_data():
    logged = entry("/openai/deployments/gpt-4o/chat/completions")
    logged.query, logged.status, logged.outcome = "api-version=2024-10-21", 200, "complete"
    assert logged.to_dict() == {
        "method": "POST", "path": "/openai/deployments/gpt-4o/chat/completions",
        "headers": {"authorization": "Bearer ***"}, "body": {"model": "gpt-4o-mini"}, "time": 1700000000.0,
        "query": "api-version=2024-10-21", "status": 200, "outcome": "complete"}


def test_reset_forgets_the_queue_the_log_and_the_prompt_cache():
    state = new_state()
    state.push([Script(reply="left over", times=3)])
    state.record(entry("/v1/chat/completions"))
    assert state.cache.cached_tokens("gpt-4o-mini", LONG_PROMPT, 1500) == 0  # first seen
    sequence = 3 + len(encode("user")) + len(encode(LONG_PROMPT[0]["content"]))  # as the cache counts it
    assert sequence - sequence % 128 == 1280
    assert state.cache.cached_tokens("gpt-4o-mini", LONG_PROMPT, 1500) == 1280  # the same prompt again
    state.reset()
    assert (state.pending(), state.requests(), state.pop()) == (0, [], Script())
    assert state.cache.cached_tokens("gpt-4o-mini", LONG_PROMPT, 1500) == 0  # seen before the reset only


def test_drop_connections_shuts_down_the_tracked_ones_only():
    state = new_state()
    tracked, tracked_peer = socket.socketpair()
    forgotten, forgotten_peer = socket.socketpair()
    try:
        state.track(tracked, True)
        state.track(forgotten, True)
        state.track(forgotten, False)  # its request ended: no longer the server's to close
        assert state.connections == {tracked}
        state.drop_connections()
        assert tracked_peer.recv(1) == b""  # the peer sees the connection end
        forgotten.sendall(b"x")
        assert forgotten_peer.recv(1) == b"x"  # still open
        state.drop_connections()  # twice is harmless
    finally:
        for sock in (tracked, tracked_peer, forgotten, forgotten_peer):
            sock.close()
