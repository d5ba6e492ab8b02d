"""Simulated prompt caching (server/prompt_cache.py) as usage reports it to the real openai SDK."""

from __future__ import annotations

from support.loopback_client import QUESTION, cookbook_prompt_tokens, encode, sdk


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
