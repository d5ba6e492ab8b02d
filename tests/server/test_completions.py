"""Chat Completions replies as planned and encoded by server/completions.py, seen through the real
openai SDK: streamed and whole text alike, exact usage, deltas that never split a character,
max_tokens cuts, forced finish reasons, logprobs, and UTF-16 halves."""

from __future__ import annotations

import pytest
from support.loopback_client import QUESTION, chat_logs, cookbook_prompt_tokens, encode, sdk, stream, streamed_text

from jupyter_llmchat.core.tokens import get_encoding


def test_streamed_text_equals_non_streamed_text_and_usage_is_exact(loopback):
    client = sdk(loopback)
    messages = [{"role": "system", "content": "You are terse."},
                {"role": "user", "content": "Explain streaming, please.", "name": "ada"}]
    whole = client.chat.completions.create(model="gpt-4o", messages=messages)
    chunks = stream(client, messages, model="gpt-4o")
    text = whole.choices[0].message.content
    assert streamed_text(chunks) == text
    expected_prompt = cookbook_prompt_tokens(messages, "gpt-4o")
    assert expected_prompt == 3 + (3 + 1 + len(encode("You are terse."))) + (
        3 + 1 + len(encode("Explain streaming, please.")) + 1 + len(encode("ada")))
    for usage in (whole.usage, chunks[-1].usage):
        assert usage.prompt_tokens == expected_prompt
        assert usage.completion_tokens == len(encode(text, "gpt-4o"))
        assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
        assert usage.prompt_tokens_details.cached_tokens == 0
        assert usage.completion_tokens_details.reasoning_tokens == 0
    # role chunk, one chunk per token (ASCII text), finish chunk, usage chunk with no choices
    assert chunks[0].choices[0].delta.role == "assistant" and chunks[0].choices[0].delta.content == ""
    content = list(chunks[1:-2])
    assert len(content) == whole.usage.completion_tokens
    assert all(c.usage is None for c in chunks[:-1])
    assert chunks[-2].choices[0].finish_reason == "stop" and chunks[-1].choices == []
    assert whole.choices[0].finish_reason == "stop"
    assert len({c.id for c in chunks}) == 1 and chunks[0].id.startswith("chatcmpl-")
    assert {c.object for c in chunks} == {"chat.completion.chunk"} and whole.object == "chat.completion"
    assert {c.model for c in chunks} == {"gpt-4o"} and chunks[0].system_fingerprint


def test_multibyte_characters_split_across_tokens_arrive_whole(loopback):
    reply = "Grüße 👋🏽 世界 — naïve café ✅"
    encoding = get_encoding("o200k_base")
    pieces = encoding.decode_tokens_bytes(encode(reply))
    assert any(_incomplete_utf8(p) for p in pieces)  # the test needs a split character
    loopback.queue(reply=reply)
    chunks = stream(sdk(loopback))
    deltas = [c.choices[0].delta.content for c in chunks[1:-2]]
    assert "".join(deltas) == reply
    assert "\ufffd" not in "".join(deltas)
    assert len(deltas) < len(pieces)
    assert chunks[-1].usage.completion_tokens == len(pieces)


def _incomplete_utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
        return False
    except UnicodeDecodeError:
        return True


def test_max_tokens_truncates_with_finish_reason_length(loopback):
    client = sdk(loopback)
    loopback.queue(reply=" word" * 50, times=2)
    whole = client.chat.completions.create(model="gpt-4o-mini", messages=QUESTION, max_tokens=5)
    assert (whole.choices[0].message.content, whole.choices[0].finish_reason) == (" word" * 5, "length")
    assert whole.usage.completion_tokens == 5
    chunks = stream(client, model="o3-mini", max_completion_tokens=7)
    assert streamed_text(chunks) == " word" * 7
    assert chunks[-2].choices[0].finish_reason == "length"
    assert [r.outcome for r in chat_logs(loopback)] == ["length", "length"]


def test_queued_finish_reason(loopback):
    loopback.queue(reply="I can't continue", finish_reason="content_filter")
    chunks = stream(sdk(loopback))
    assert chunks[-2].choices[0].finish_reason == "content_filter"


def test_logprobs_per_token_streamed_and_not(loopback):
    client = sdk(loopback)
    loopback.queue(reply="Yes, indeed it is.", times=2)
    whole = client.chat.completions.create(model="gpt-4o-mini", messages=QUESTION, logprobs=True,
                                           top_logprobs=3)
    entries = whole.choices[0].logprobs.content
    assert "".join(e.token for e in entries) == "Yes, indeed it is."
    assert len(entries) == whole.usage.completion_tokens == len(encode("Yes, indeed it is."))
    for entry in entries:
        assert bytes(entry.bytes) == entry.token.encode()
        assert entry.logprob <= 0
        assert len(entry.top_logprobs) == 3
        assert entry.top_logprobs[0].token == entry.token
        assert entry.top_logprobs[0].logprob == entry.logprob
        assert [t.logprob for t in entry.top_logprobs] == sorted((t.logprob for t in entry.top_logprobs),
                                                                 reverse=True)
    chunks = stream(client, logprobs=True, top_logprobs=3)
    streamed = [e for c in chunks[1:-2] for e in c.choices[0].logprobs.content]
    assert [e.model_dump() for e in streamed] == [e.model_dump() for e in entries]
    assert chunks[0].choices[0].logprobs is None


@pytest.mark.parametrize("fault, contents", [
    ("split_surrogates", ["a", "\ud83d", "\ude00", " b"]),
    ("lone_surrogate", ["a", "\ud83d", " b"]),
])
def test_characters_outside_the_bmp_cut_into_utf16_halves(loopback, fault, contents):
    loopback.queue(reply="a😀 b", fault=fault)
    chunks = stream(sdk(loopback))
    assert [c.choices[0].delta.content for c in chunks if c.choices][1:-1] == contents
