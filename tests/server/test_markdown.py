"""The generated Markdown replies (server/markdown.py), called directly and as the real openai SDK
receives them: the disclosure that quotes the question, every block kind, the length reached at a
block edge, the same reply for the same question."""

from __future__ import annotations

from support.loopback_client import QUESTION, encode, sdk

from jupyter_llmchat.server import DISCLOSURE
from jupyter_llmchat.server.markdown import disclosure, generate_markdown


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


def test_the_disclosure_quotes_the_question_on_one_line_and_cuts_a_long_one():
    assert disclosure("  What   is\n the capital?  ") == DISCLOSURE + " You asked: “What is the capital?”"
    long = disclosure("x" * 100)
    assert long == DISCLOSURE + " You asked: “" + "x" * 79 + "…”"
    assert disclosure(" \n ") == DISCLOSURE  # nothing to quote


def words(text: str) -> int:
    return len(text.split())


def test_generated_markdown_is_seeded_by_the_question_and_reaches_the_length_at_a_block_edge():
    assert generate_markdown("q", 40, words) == (
        "# Notes on prompt caching and conversation history\n\n## 1. Conversation history\n\nWhen it comes to "
        "*conversation history*, exact `request` measures the oldest stream. Newest session trims the **fast** "
        "chunk. Streamed cache sends the partial prompt. Exact cell checks the **cached** message.\n")
    assert generate_markdown("q", 40, words) == generate_markdown("q", 40, words)
    assert generate_markdown("another q", 40, words) != generate_markdown("q", 40, words)
    for length in (1, 57, 300):
        text = generate_markdown("q", length, words)
        assert words(text) >= length and text.endswith("\n") and not text.split("\n\n")[-1].startswith("#")


def test_the_opening_comes_first_and_the_first_section_shows_code_at_once():
    text = generate_markdown("q", 500, words, opening="Opening line.")
    blocks = text.split("\n\n")
    assert blocks[:3] == ["Opening line.", "# Notes on prompt caching and conversation history",
                          "## 1. Conversation history"]
    assert blocks[4].startswith("```python\n")  # after the section's first paragraph: short replies show code
