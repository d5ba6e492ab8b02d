"""``LoopbackServer`` (server/loopback.py): binding to 127.0.0.1 only, stopping for real, and
defaults changed while it runs."""

from __future__ import annotations

import http.client

import openai
import pytest
from support.loopback_client import QUESTION, encode, sdk

from jupyter_llmchat.server import LoopbackServer


def test_binds_to_127_0_0_1_only():
    with pytest.raises(ValueError, match="127.0.0.1 only"):
        LoopbackServer(host="0.0.0.0")
    with LoopbackServer() as server:
        assert server.address == ("127.0.0.1", server.port)
        assert server.base_url == f"http://127.0.0.1:{server.port}/v1"
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        conn.request("GET", "/v1/models", headers={"Host": "evil.example"})  # DNS rebinding
        assert conn.getresponse().status == 403
        conn.close()


def test_stop_ends_a_stream_in_progress_and_frees_the_port():
    server = LoopbackServer().start()
    port = server.port
    server.queue(tokens=500, rate=5.0)  # would take 100 s
    chunks = sdk(server).chat.completions.create(model="gpt-4o-mini", messages=QUESTION, stream=True)
    next(chunks)
    server.stop()
    with pytest.raises(openai.APIConnectionError):
        list(chunks)
    with pytest.raises(RuntimeError, match="not running"):
        _ = server.base_url
    with LoopbackServer(port=port) as again:  # the port is free again
        assert again.port == port


def test_stop_closes_kept_alive_connections():
    server = LoopbackServer().start()
    client = sdk(server)
    assert client.models.list().data  # leaves a pooled keep-alive connection open
    server.stop()
    with pytest.raises(openai.APIConnectionError):
        client.models.list()


def test_defaults_can_be_changed_while_running(loopback):
    loopback.default_tokens = 400  # the fixture puts it back
    text = sdk(loopback).chat.completions.create(model="gpt-4o-mini", messages=QUESTION).choices[
        0].message.content
    assert len(encode(text)) >= 400
    with pytest.raises(ValueError, match="default_rate must be > 0"):
        loopback.default_rate = 0
    with pytest.raises(ValueError, match="default_tokens must be an integer >= 1"):
        loopback.default_tokens = 0
