"""The generated Markdown replies (server/markdown.py) as the real openai SDK receives them: the
disclosure that quotes the question, every block kind, the exact length, the same reply each time."""

from __future__ import annotations

from support.loopback_client import QUESTION, encode, sdk

from jupyter_llmchat.server import DISCLOSURE


def test_default_reply_says_it_is_the_offline_demo_and_quotes_the_question(loopback):
    client = sdk(loopback)
    question = "What is the capital of France?"
    text = client.chat.completions.create(
        model="loopback-demo", messages=[{"role": "user", "content": question}]).choices[0].message.content
    assert text.startswith(DISCLOSURE)
    assert "not from a model" in text.split("\n")[0]
    assert f"“{question}”" in text.split("\n")[0]
    assert len(encode(text)) >= 150  # default_tokens, ended at a block edge


def test_generated_markdown_has_every_block_kind_and_exact_length(loopback):
    loopback.queue(tokens=1200)
    response = sdk(loopback).chat.completions.create(model="gpt-4o-mini", messages=QUESTION)
    text = response.choices[0].message.content
    assert response.usage.completion_tokens == 1200
    assert DISCLOSURE not in text  # only default replies carry the disclosure
    lines = text.splitlines()
    assert any(line.startswith("# ") for line in lines)
    assert any(line.startswith("## ") for line in lines)
    assert any(line.startswith("- ") for line in lines)
    assert any(line.startswith("1. ") for line in lines)
    assert any(line.startswith("|:---") for line in lines)
    assert "```python\n" in text
    # deterministic: the same question gets the same reply
    loopback.queue(tokens=1200)
    again = sdk(loopback).chat.completions.create(model="gpt-4o-mini", messages=QUESTION)
    assert again.choices[0].message.content == text
