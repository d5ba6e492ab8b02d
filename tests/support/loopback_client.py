"""Talking to the loopback server in tests: the real openai SDK, raw http.client, the request log.

Shared by the tests of the loopback server's modules (tests/server/test_<module>.py). Expected
token counts are recomputed here from the encoding with OpenAI's cookbook rules, not taken from
the server, so a miscount on either side shows up.
"""

from __future__ import annotations

import http.client
import json
import time
from typing import Any

from openai import OpenAI

from jupyter_llmchat.core.models import model_info
from jupyter_llmchat.core.tokens import get_encoding
from jupyter_llmchat.server import LoopbackServer

KEY = "sk-test-loopback-secret-0123456789"
QUESTION = [{"role": "user", "content": "Hi there"}]


def sdk(server: LoopbackServer, **kwargs: Any) -> OpenAI:
    kwargs.setdefault("max_retries", 0)
    return OpenAI(base_url=server.base_url, api_key=kwargs.pop("api_key", KEY), **kwargs)


def encode(text: str, model: str = "gpt-4o-mini") -> list[int]:
    return get_encoding(model_info(model).encoding).encode(text, disallowed_special=())


def cookbook_prompt_tokens(messages: list[dict[str, str]], model: str = "gpt-4o-mini") -> int:
    """3 per message + tokens of each value + 1 per name, + 3 priming the reply."""
    total = 3
    for message in messages:
        total += 3
        for key, value in message.items():
            total += len(encode(value, model)) + (1 if key == "name" else 0)
    return total


def stream(client: OpenAI, messages: list[dict[str, Any]] = QUESTION, **kwargs: Any) -> list[Any]:
    kwargs.setdefault("model", "gpt-4o-mini")
    return list(client.chat.completions.create(messages=messages, stream=True,
                                               stream_options={"include_usage": True}, **kwargs))


def streamed_text(chunks: list[Any]) -> str:
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def chat_logs(server: LoopbackServer) -> list[Any]:
    return [r for r in server.requests if r.path.endswith("/chat/completions")]


def chat_bodies(server: LoopbackServer) -> list[dict[str, Any]]:
    """The bodies of the chat requests the server received, in order."""
    return [r.body for r in chat_logs(server)]


class RawResponse:
    """A response read whole, its connection closed (a kept-alive socket left open would be
    closed by the garbage collector, with a ResourceWarning)."""

    def __init__(self, status: int, headers: http.client.HTTPMessage, body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body

    def getheader(self, name: str) -> str | None:
        return self.headers.get(name)

    def read(self) -> bytes:
        return self.body


def raw_chat(server: LoopbackServer, **body: Any) -> RawResponse:
    """POST a chat completion with http.client: the response exactly as sent."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request("POST", "/v1/chat/completions",
                     json.dumps({"model": "gpt-4o-mini", "messages": QUESTION, **body}),
                     {"Content-Type": "application/json"})
        response = conn.getresponse()
        return RawResponse(response.status, response.headers, response.read())
    finally:
        conn.close()


def wait_for(condition: Any, timeout: float = 20.0) -> None:
    """Poll ``condition`` until it holds (the server thread records outcomes as it goes)."""
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)
