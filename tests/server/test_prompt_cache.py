"""Simulated prompt caching (server/prompt_cache.py): the common prefix in 128-token steps from 1024 up,
per model, images as markers, the prompts kept, and what usage reports to the real openai SDK."""

from __future__ import annotations

from typing import Any

from support.loopback_client import QUESTION, cookbook_prompt_tokens, encode, sdk

from jupyter_llmchat.server.prompt_cache import PromptCache


def test_prompt_caching_reports_the_shared_prefix_in_128_token_steps(loopback):
    client = sdk(loopback)
    system = "Context: " + " lorem ipsum" * 700
    first = [{"role": "system", "content": system}, {"role": "user", "content": "alpha question"}]
    second = [{"role": "system", "content": system}, {"role": "user", "content": "beta question"}]
    a = client.chat.completions.create(model="gpt-4o-mini", messages=first)
    b = client.chat.completions.create(model="gpt-4o-mini", messages=second)
    assert a.usage.prompt_tokens_details.cached_tokens == 0
    assert encode("alpha question")[0] != encode("beta question")[0]
    shared = 3 + len(encode("system")) + len(encode(system)) + 3 + len(encode("user"))
    assert shared >= 1024
    assert b.usage.prompt_tokens_details.cached_tokens == shared - shared % 128
    assert b.usage.prompt_tokens == cookbook_prompt_tokens(second)
    # another model has its own cache; short prompts are never cached
    c = client.chat.completions.create(model="gpt-4o", messages=second)
    assert c.usage.prompt_tokens_details.cached_tokens == 0
    client.chat.completions.create(model="gpt-4o-mini", messages=QUESTION)
    d = client.chat.completions.create(model="gpt-4o-mini", messages=QUESTION)
    assert d.usage.prompt_tokens_details.cached_tokens == 0


def shared_prefix(messages: list[dict[str, Any]], model: str = "gpt-4o-mini") -> int:
    """Tokens of the cache's sequence for these messages: 3 markers, the role, the text, per message."""
    return sum(3 + len(encode(m["role"], model)) + len(encode(m["content"], model)) for m in messages)


SYSTEM = {"role": "system", "content": "Context: " + " lorem ipsum" * 700}


def test_the_cache_counts_the_common_prefix_in_128_token_steps_from_1024_up():
    cache = PromptCache()
    first = [SYSTEM, {"role": "user", "content": "alpha question"}]
    second = [SYSTEM, {"role": "user", "content": "beta question"}]
    assert encode("alpha question")[0] != encode("beta question")[0]
    shared = shared_prefix([SYSTEM]) + 3 + len(encode("user"))  # up to the first word of the question
    assert shared == 1411
    assert cache.cached_tokens("gpt-4o-mini", first, cookbook_prompt_tokens(first)) == 0  # nothing seen yet
    assert cache.cached_tokens("gpt-4o-mini", second, cookbook_prompt_tokens(second)) == 1408
    assert cache.cached_tokens("gpt-4o-mini", second, 1200) == 1200  # never more than the prompt
    assert cache.cached_tokens("gpt-4o-mini", second, 1000) == 0  # a prompt under 1024 tokens is not cached
    assert cache.cached_tokens("gpt-4o", second, cookbook_prompt_tokens(second, "gpt-4o")) == 0  # per model


def test_a_common_prefix_under_1024_tokens_is_not_cached():
    cache = PromptCache()
    short = [{"role": "user", "content": " lorem ipsum" * 400}]
    assert shared_prefix(short) < 1024
    cache.cached_tokens("gpt-4o-mini", short + [{"role": "user", "content": "one"}], 1100)
    assert cache.cached_tokens("gpt-4o-mini", short + [{"role": "user", "content": " lorem" * 400}], 1100) == 0


def test_an_image_is_one_marker_equal_images_share_the_prefix_and_different_ones_end_it():
    def prompt(url: str) -> list[dict[str, Any]]:
        return [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}},
                                             {"type": "text", "text": SYSTEM["content"]}]}]

    cache = PromptCache()
    cache.cached_tokens("gpt-4o", prompt("https://example.com/a.png"), 1500)
    assert cache.cached_tokens("gpt-4o", prompt("https://example.com/b.png"), 1500) == 0  # the prefix ends at it
    sequence = 3 + len(encode("user", "gpt-4o")) + 1 + len(encode(SYSTEM["content"], "gpt-4o"))
    assert sequence == 1408
    assert cache.cached_tokens("gpt-4o", prompt("https://example.com/a.png"), 1500) == 1408


def test_the_cache_remembers_the_last_prompts_it_keeps_and_clear_forgets_them():
    cache = PromptCache(keep=1)
    other = [{"role": "system", "content": "Other: " + " dolor sit" * 700}]
    cache.cached_tokens("gpt-4o-mini", [SYSTEM], 1300)
    cache.cached_tokens("gpt-4o-mini", other, 1300)  # pushes SYSTEM out: only one prompt is kept
    assert cache.cached_tokens("gpt-4o-mini", [SYSTEM], 1300) == 0
    assert cache.cached_tokens("gpt-4o-mini", [SYSTEM], 1300) == 1280
    cache.clear()
    assert cache.cached_tokens("gpt-4o-mini", [SYSTEM], 1300) == 0
