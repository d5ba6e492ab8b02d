"""Deterministic Markdown replies of a requested length, for demos, renderer tests and benchmarks.

The text is seeded from the question, so the same request always gets the same reply (streamed
and non-streamed replies can be compared), and it exercises everything a renderer must handle:
headings, paragraphs with inline code and emphasis, bulleted and numbered lists, a pipe table and
a fenced Python block, repeated in sections until the length is reached.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable

DISCLOSURE = ("This reply comes from the jupyter_llmchat offline demo server, not from a model: the "
              "text below is generated placeholder Markdown. To talk to a real model, set "
              "OPENAI_API_KEY or point base_url at an OpenAI-compatible endpoint.")

_TOPICS = ["tokenization", "streaming", "context windows", "prompt caching", "rate limits",
           "retries", "notebooks", "rendering", "conversation history", "cost tracking"]
_NOUNS = ["token", "reply", "prompt", "message", "stream", "kernel", "budget", "window",
          "chunk", "cell", "display", "request", "model", "session", "cache"]
_VERBS = ["counts", "trims", "renders", "streams", "stores", "measures", "checks", "keeps",
          "sends", "updates", "limits", "records"]
_ADJECTIVES = ["exact", "partial", "cached", "long", "short", "streamed", "pinned", "oldest",
               "newest", "visible", "quiet", "fast"]
_CODE = [
    "def count_words(text: str) -> int:\n    return len(text.split())\n\nprint(count_words({s!r}))",
    "from collections import deque\n\nhistory = deque(maxlen={n})\nhistory.append({s!r})\n"
    "print(len(history))",
    "total = 0\nfor step in range({n}):\n    total += step * step\nprint(f\"sum of squares: {{total}}\")",
    "tokens = {s!r}.split()\nwidths = {{t: len(t) for t in tokens}}\nprint(max(widths, key=widths.get))",
]


def disclosure(question: str, limit: int = 80) -> str:
    """The opening sentence of a default reply: what this is, and the question quoted briefly."""
    quoted = " ".join(question.split())
    if len(quoted) > limit:
        quoted = quoted[: limit - 1].rstrip() + "…"
    return f"{DISCLOSURE} You asked: “{quoted}”" if quoted else DISCLOSURE


def generate_markdown(question: str, min_tokens: int, count: Callable[[str], int], *,
                      opening: str | None = None) -> str:
    """Markdown of at least ``min_tokens`` tokens (as ``count`` measures), ending at a block edge.

    ``opening`` is put first (the disclosure sentence for default replies).
    """
    rng = random.Random(hashlib.sha256(question.encode("utf-8")).digest())
    blocks: list[str] = [opening] if opening else []
    blocks.append(f"# {_title(rng)}")
    total = sum(count(block) + 1 for block in blocks)
    section = 0
    while True:
        for block in _section(rng, section):
            blocks.append(block)
            total += count(block) + 1  # +1 for the blank line between blocks
            if total >= min_tokens and not block.startswith("#"):  # never end on a heading
                text = "\n\n".join(blocks) + "\n"
                # per-block sums can differ slightly from the whole; top up if short
                if count(text) >= min_tokens:
                    return text
        section += 1


def _section(rng: random.Random, index: int) -> list[str]:
    topic = rng.choice(_TOPICS)
    blocks = [f"## {index + 1}. {topic.capitalize()}", _paragraph(rng, topic)]
    kinds = ["bullets", "numbers", "table", "code"]
    rng.shuffle(kinds)
    if index == 0:  # short demo replies still show a code block (the tour's `-f code` step uses it)
        kinds.remove("code")
        kinds.insert(0, "code")
    for kind in kinds:
        if kind == "bullets":
            blocks.append("\n".join(f"- {_sentence(rng)}" for _ in range(rng.randint(3, 5))))
        elif kind == "numbers":
            blocks.append("\n".join(f"{i}. {_sentence(rng)}" for i in range(1, rng.randint(3, 5) + 1)))
        elif kind == "table":
            blocks.append(_table(rng))
        else:
            code = rng.choice(_CODE).format(s=rng.choice(_NOUNS) + " " + rng.choice(_VERBS),
                                            n=rng.randint(3, 99))
            blocks.append(f"```python\n{code}\n```")
        blocks.append(_paragraph(rng, topic))
    return blocks


def _title(rng: random.Random) -> str:
    return f"Notes on {rng.choice(_TOPICS)} and {rng.choice(_TOPICS)}"


def _sentence(rng: random.Random) -> str:
    words = [rng.choice(_ADJECTIVES), rng.choice(_NOUNS), rng.choice(_VERBS), "the",
             rng.choice(_ADJECTIVES), rng.choice(_NOUNS)]
    if rng.random() < 0.3:
        words[1] = f"`{words[1]}`"
    if rng.random() < 0.3:
        words[4] = f"**{words[4]}**"
    return " ".join(words).capitalize() + "."


def _paragraph(rng: random.Random, topic: str) -> str:
    body = " ".join(_sentence(rng) for _ in range(rng.randint(2, 4)))
    return f"When it comes to *{topic}*, {body[0].lower()}{body[1:]}"


def _table(rng: random.Random) -> str:
    rows = ["| Name | Tokens | Share |", "|:-----|-------:|------:|"]
    for _ in range(rng.randint(2, 4)):
        tokens = rng.randint(10, 5000)
        rows.append(f"| {rng.choice(_NOUNS)} | {tokens} | {rng.randint(1, 99)}% |")
    return "\n".join(rows)
