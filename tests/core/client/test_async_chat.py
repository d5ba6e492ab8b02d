"""AsyncChat against the loopback server through the real openai SDK: whole answers, each failure
said as the map's runner needs it (retry or not, throttled, retry-after, reachable), no retry of
its own, the ChatClient's key, address, query and Azure settings carried over, nothing left running."""

from __future__ import annotations

import socket
import threading
from typing import Any

import pytest
from openai import OpenAI

from jupyter_llmchat.core import errors
from jupyter_llmchat.core.client import AsyncChat, AttemptFailed, ChatClient, Completion
from jupyter_llmchat.core.reply import Usage
from jupyter_llmchat.server import LoopbackServer

KEY = "sk-async-secret-0123456789"
QUESTION = [{"role": "user", "content": "hi"}]


def ask(client: ChatClient, messages: list[dict[str, Any]] = QUESTION, **params: Any) -> Completion:
    with AsyncChat(client.sdk) as chat:
        return chat.submit(chat.complete("gpt-4o-mini", messages, params)).result(timeout=60)


def failure(client: ChatClient, **params: Any) -> AttemptFailed:
    with pytest.raises(AttemptFailed) as caught:
        ask(client, **params)
    return caught.value


def test_a_whole_answer_with_its_usage_as_the_server_sent_it(loopback) -> None:
    loopback.queue(reply="Hello there")
    answer = ask(ChatClient(base_url=loopback.base_url, api_key=KEY), temperature=0)
    assert answer == Completion("Hello there", "stop", None, Usage(8, 2, 0), "gpt-4o-mini")
    (entry,) = loopback.requests
    assert entry.body == {"model": "gpt-4o-mini", "messages": QUESTION, "temperature": 0}  # not streamed
    assert entry.headers["authorization"] == "Bearer ***"
    loopback.queue(fault="refusal")
    refused = ask(ChatClient(base_url=loopback.base_url, api_key=KEY))
    assert (refused.text, refused.refusal) == ("", "I'm sorry, but I can't help with that request.")


@pytest.mark.parametrize(("fault", "retryable", "status", "throttled", "retry_after", "stage"), [
    ("rate_limit", True, 429, True, 0.25, "sending"),
    ("server_error", True, 500, False, None, "sending"),
    ("context_length", False, 400, False, None, "sending"),
    ("unauthorized", False, 401, False, None, "sending"),
    ("disconnect", True, None, False, None, "before_text"),
    ("malformed", True, None, False, None, "before_text"),
])
def test_each_failure_says_whether_asking_again_may_help(loopback, fault, retryable, status, throttled, retry_after,
                                                           stage) -> None:
    loopback.queue(fault=fault, retry_after=0.25)
    failed = failure(ChatClient(base_url=loopback.base_url, api_key=KEY))
    assert (failed.retryable, failed.status, failed.throttled, failed.retry_after, failed.stage, failed.reachable) == (
        retryable, status, throttled, retry_after, stage, True)
    assert len(loopback.requests) == 1  # the SDK retried nothing: the map's runner decides


def test_the_client_words_each_failure_in_one_line(loopback) -> None:
    client = ChatClient(base_url=loopback.base_url, api_key=KEY)
    loopback.queue(fault="disconnect")
    failed = failure(client)
    said = client.map_error(failed.cause, model="gpt-4o-mini", retries=0, stage=failed.stage)
    assert isinstance(said, errors.StreamError)
    assert str(said).startswith(f"the stream from {loopback.base_url} dropped before any text (")
    loopback.queue(fault="html_page")
    page = failure(client)
    assert not page.retryable and isinstance(page.cause, errors.BadRequestError)
    assert str(page.cause) == (f"{loopback.base_url} answered with a web page, not a chat completion: base_url= must "
                               "be the API's root (often ending in /v1), not a website")


def test_an_endpoint_nobody_listens_on_is_unreachable() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    failed = failure(ChatClient(base_url=f"http://127.0.0.1:{port}/v1", api_key=KEY))
    assert (failed.retryable, failed.reachable) == (True, False)


def test_the_key_the_query_of_the_base_url_and_the_headers_are_carried_over() -> None:
    with LoopbackServer(api_key=KEY) as server:
        sdk = OpenAI(base_url=server.base_url, api_key=KEY, default_headers={"X-Team": "data"},
                     default_query={"tenant": "t1"})
        with AsyncChat(sdk) as chat:
            chat.submit(chat.complete("gpt-4o-mini", QUESTION, {})).result(timeout=60)
        (entry,) = server.requests
        assert (entry.status, entry.query, entry.headers["x-team"]) == (200, "tenant=t1", "data")
        gateway = ChatClient(base_url=f"{server.base_url}?api-version=7", api_key=KEY)
        ask(gateway)
        assert server.requests[-1].query == "api-version=7"


def test_azure_settings_are_carried_over() -> None:
    with LoopbackServer(api_key=KEY) as server:
        client = ChatClient(azure_endpoint=server.root_url, api_key=KEY, api_version="2024-10-21",
                            azure_deployment="gpt-4o")
        server.queue(reply="from azure")
        assert ask(client).text == "from azure"
        entry = server.requests[-1]
        assert (entry.path, entry.query, entry.headers["api-key"]) == (
            "/openai/deployments/gpt-4o/chat/completions", "api-version=2024-10-21", "***")


def test_closing_ends_the_thread_and_the_loop(loopback) -> None:
    chat = AsyncChat(ChatClient(base_url=loopback.base_url, api_key=KEY).sdk, name="llmchat-map-test")
    chat.start()
    assert [t.name for t in threading.enumerate()].count("llmchat-map-test") == 1
    assert chat.submit(chat.complete("gpt-4o-mini", QUESTION, {})).result(timeout=60).finish_reason == "stop"
    chat.close()
    chat.close()  # twice is harmless
    assert "llmchat-map-test" not in [t.name for t in threading.enumerate()]
    with pytest.raises(RuntimeError, match="AsyncChat is not started"):
        chat.submit(chat.complete("gpt-4o-mini", QUESTION, {}))
