"""render: live Markdown in a notebook cell, one exact final display, bounded IOPub traffic.

Unit tests drive ``MarkdownDisplaySink`` with a fake clock and an ``OutputArea`` that applies
display messages the way a front end (or nbclient) does. The kernel tests run the real thing:
an ipykernel started with jupyter_client, the Chatbot over the real openai SDK against the
loopback server, IOPub messages counted as they arrive.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat
import openai
import pytest

from jupyter_llmchat.markdown_tail import close_open
from jupyter_llmchat.render import MarkdownDisplaySink, footer_markdown, make_sink
from jupyter_llmchat.reply import PrintSink, Reply, Usage

ROOT = Path(__file__).resolve().parents[1]

TRICKY = (
    "# Plan\n\nIntro with **bold**, `code` and a [link](https://example.com).\n\n"
    "| Name | Tokens | Share |\n|:-----|-------:|------:|\n| prompt | 12 | 40% |\n| reply | 18 | 60% |\n\n"
    "1. first step\n2. second step with `inline`\n3. third\n\n"
    "- a bullet\n- another **strong** bullet\n  continued line\n\n"
    "```python\ndef f(x):\n    return x * 2  # ``` not a fence here\n\n\nprint(f(21))\n```\n\n"
    "Setext heading\n--------------\n\n~~~\ntilde fence\n~~~\n\n> quoted\n\nLast paragraph, no newline"
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class OutputArea:
    """Applies ``display_data`` / ``update_display_data`` like a front end; keeps every message."""

    outputs: list[dict[str, str]] = field(default_factory=list)
    ids: dict[str, int] = field(default_factory=dict)
    messages: list[tuple[str, dict[str, str], bool]] = field(default_factory=list)
    fail_on: int | None = None  # raise KeyboardInterrupt on this message (a Ctrl-C mid-send)

    def show(self, display_id: str, data: dict[str, str], *, update: bool) -> None:
        if self.fail_on is not None and len(self.messages) == self.fail_on:
            self.fail_on = None
            raise KeyboardInterrupt
        self.messages.append((display_id, dict(data), update))
        if not update:
            self.ids[display_id] = len(self.outputs)
            self.outputs.append(dict(data))
        elif display_id in self.ids:
            self.outputs[self.ids[display_id]] = dict(data)

    def visible(self) -> list[dict[str, str]]:
        return [o for o in self.outputs if o]


def stream(sink: MarkdownDisplaySink, clock: FakeClock, text: str, *, seed: int = 0, step: float = 0.02) -> None:
    rng = random.Random(seed)
    i = 0
    while i < len(text):
        n = rng.randint(1, 4)
        sink.write(text[i : i + n])
        i += n
        clock.now += step


def new_sink(**options: Any) -> tuple[MarkdownDisplaySink, OutputArea, FakeClock]:
    area, clock = OutputArea(), FakeClock()
    options.setdefault("trailing", False)
    return MarkdownDisplaySink(publisher=area, clock=clock, **options), area, clock


# -- unit: the sink's output layout --------------------------------------------------------------


def test_placeholder_then_first_text_then_one_exact_final_output() -> None:
    sink, area, clock = new_sink()
    sink.start("gpt-4o-mini")
    assert area.outputs == [{"text/markdown": "*gpt-4o-mini · answering…*"}]
    sink.write("Hello **wor")
    assert area.outputs == [{"text/markdown": "Hello **wor**"}]  # shown at once, closed for display
    sink.write("ld**")
    assert area.outputs == [{"text/markdown": "Hello **wor**"}]  # within the interval: not yet
    clock.now += 0.2
    sink.write("!")
    assert area.outputs == [{"text/markdown": "Hello **world**!"}]
    sink.finish(Reply(text="Hello **world**!", model="gpt-4o-mini", usage=Usage(12, 4), total_time=1.25, cost=0.00012))
    assert area.outputs == [
        {"text/markdown": "Hello **world**!", "text/plain": "Hello **world**!"},
        {"text/markdown": "<sub>gpt-4o-mini · 12 in · 4 out tokens · 1.2 s · $0.00012</sub>",
         "text/plain": "[gpt-4o-mini · 12 in · 4 out tokens · 1.2 s · $0.00012]"},
    ]


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("step", [0.02, 0.0005, 0.2])
def test_long_answer_final_output_is_exact_and_outputs_stay_bounded(seed: int, step: float) -> None:
    answer = TRICKY + "\n\n" + "\n\n".join(TRICKY for _ in range(6))
    sink, area, clock = new_sink(max_outputs=6)
    sink.start("m")
    stream(sink, clock, answer, seed=seed, step=step)
    assert len(area.outputs) <= 6
    assert area.visible()[0]["text/markdown"].startswith("# Plan\n\nIntro with **bold**")
    sink.finish(Reply(text=answer, model="m"))
    assert area.visible()[0] == {"text/markdown": answer, "text/plain": answer}
    assert len(area.visible()) == 2 and area.visible()[1]["text/markdown"] == "<sub>m</sub>"
    assert len(area.outputs) <= 7  # answer, blanked pieces, footer
    created = {display_id for display_id, _, update in area.messages if not update}
    assert all(display_id in created for display_id, _, update in area.messages if update)


def test_repaints_are_on_time_not_per_token() -> None:
    sink, area, clock = new_sink(interval=0.125)
    sink.start("m")
    answer = "word " * 2000
    for i in range(0, len(answer), 5):  # 2,000 tokens at 50 tokens/s: 40 s
        sink.write(answer[i : i + 5])
        clock.now += 0.02
    # at most one repaint per 0.125 s, and at least one per 0.15 s (what is shown lags <= 150 ms);
    # here they land every 7th write (0.14 s)
    assert 40 / 0.15 <= len(area.messages) <= 40 / 0.125 + 2
    sink.finish(Reply(text=answer, model="m"))


def test_only_the_live_tail_is_resent() -> None:
    """Blocks that are finished move into frozen outputs; updates then carry only the tail."""
    sink, area, clock = new_sink()
    sink.start("m")
    paragraphs = [f"Paragraph {i}: " + "some words here " * 12 for i in range(200)]
    answer = "\n\n".join(paragraphs)
    stream(sink, clock, answer)
    sent = sum(len(data.get("text/markdown", "")) for _, data, _ in area.messages)
    updates = len(area.messages)
    assert sent / updates < 800  # the reference recipe would average len(answer) / 2 = 20,000
    sink.finish(Reply(text=answer, model="m"))
    assert area.visible()[0]["text/markdown"] == answer


def test_code_fence_is_closed_while_it_streams() -> None:
    sink, area, clock = new_sink()
    sink.start("m")
    sink.write("Here:\n\n```python\nprint(")
    assert area.outputs[-1]["text/markdown"] == "Here:\n\n```python\nprint(\n```"
    clock.now += 1
    sink.write("1)\n``")
    assert area.outputs[-1]["text/markdown"] == "Here:\n\n```python\nprint(1)\n```"


@pytest.mark.parametrize(
    ("status", "extra", "notice"),
    [
        ("interrupted", {}, "**⚠ answer interrupted: partial text kept**"),
        ("truncated", {"finish_reason": "length"}, "**⚠ answer truncated: it reached max\\_tokens (finish\\_reason=length)**"),
        ("failed", {"error": "connection lost"}, "**⚠ request failed: connection lost**"),
    ],
)
def test_partial_answers_are_marked_even_without_footer(status: str, extra: dict[str, Any], notice: str) -> None:
    sink, area, clock = new_sink(footer=False)
    sink.start("m")
    sink.write("Partial ans")
    sink.finish(Reply(text="Partial ans", model="m", status=status, **extra))  # type: ignore[arg-type]
    assert area.visible() == [
        {"text/markdown": "Partial ans", "text/plain": "Partial ans"},
        {"text/markdown": notice, "text/plain": f"[{Reply(text='x', model='m', status=status, **extra).notice}]"},  # type: ignore[arg-type]
    ]


def test_failure_before_any_text_clears_the_placeholder() -> None:
    sink, area, _ = new_sink()
    sink.start("m")
    sink.finish(Reply(text="", model="m", status="failed", error="401: bad key"))
    assert area.visible() == [{"text/markdown": "<sub>m</sub>", "text/plain": "[m]"}]  # the error itself is raised
    assert area.outputs[0] == {}


def test_finish_without_start_and_from_cache() -> None:
    sink, area, _ = new_sink()
    sink.finish(Reply(text="cached answer", model="m", from_cache=True, usage=Usage(3, 2)))
    assert area.visible() == [
        {"text/markdown": "cached answer", "text/plain": "cached answer"},
        {"text/markdown": "<sub>m · 3 in · 2 out tokens · from cache</sub>",
         "text/plain": "[m · 3 in · 2 out tokens · from cache]"},
    ]


def test_plain_text_can_be_left_out() -> None:
    sink, area, _ = new_sink(plain_text=False, footer=False)
    sink.start("m")
    sink.write("x")
    sink.finish(Reply(text="x", model="m"))
    assert area.visible() == [{"text/markdown": "x"}]


@pytest.mark.parametrize("fail_on", [1, 2, 5, 9, 14, 30])
def test_keyboard_interrupt_inside_write_leaves_a_consistent_state(fail_on: int) -> None:
    """Ctrl-C lands in the middle of sending a display message; finish() still shows one answer."""
    sink, area, clock = new_sink(max_outputs=4)
    area.fail_on = fail_on
    sink.start("m")
    written = ""
    with pytest.raises(KeyboardInterrupt):
        for i in range(0, len(TRICKY * 4), 3):
            delta = (TRICKY * 4)[i : i + 3]
            written += delta
            sink.write(delta)
            clock.now += 0.3
    sink.finish(Reply(text=written, model="m", status="interrupted"))
    assert area.visible()[0] == {"text/markdown": written, "text/plain": written}
    assert area.visible()[1]["text/markdown"].startswith("**⚠ answer interrupted")
    assert len(area.visible()) == 2  # the answer, and one footer with the notice and the facts
