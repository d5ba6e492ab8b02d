"""render: live Markdown in a notebook cell, one exact final display, bounded IOPub traffic, no flashes.

Unit tests drive ``MarkdownDisplaySink`` with a fake clock and an ``OutputArea`` that applies
display messages the way a front end (or nbclient) does, keeping what it shows after every
message (a "frame"): no frame may show a line of the answer twice, and a line once shown never
disappears. The kernel tests run the real thing: an ipykernel started with jupyter_client, the
Chatbot over the real openai SDK against the loopback server, IOPub messages applied in order.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
import openai
import pytest
from support.fake_clock import FakeClock
from support.markdown_corpus import CORPUS
from support.output_area import FakeCell, OutputArea

from jupyter_llmchat.core.reply import PrintSink, Reply, Usage
from jupyter_llmchat.notebook.display import MarkdownDisplaySink, make_sink
from jupyter_llmchat.notebook.formatted import FormattedSink
from jupyter_llmchat.notebook.plain_text import CellTextSink
from jupyter_llmchat.notebook.safe_markdown import safe_markdown

ROOT = Path(__file__).resolve().parents[2]

TRICKY = (
    "# Plan\n\nIntro with **bold**, `code` and a [link](https://example.com).\n\n"
    "| Name | Tokens | Share |\n|:-----|-------:|------:|\n| prompt | 12 | 40% |\n| reply | 18 | 60% |\n\n"
    "1. first step\n2. second step with `inline`\n3. third\n\n"
    "- a bullet\n- another **strong** bullet\n  continued line\n\n"
    "```python\ndef f(x):\n    return x * 2  # ``` not a fence here\n\n\nprint(f(21))\n```\n\n"
    "Setext heading\n--------------\n\n~~~\ntilde fence\n~~~\n\n> quoted\n\nLast paragraph, no newline"
)


def sections(n: int) -> str:
    """An answer of ``n`` sections whose every line is unique (so a line shown twice is a duplicate)."""
    parts = []
    for i in (f"{k:02d}" for k in range(n)):  # "1" would be the start of "10"
        parts.append(
            f"## Section {i}\n\nParagraph {i} explains **point {i}** with `code_{i}` and more words about it, "
            f"enough to wrap on a narrow screen ({i}).\n\n"
            f"- item {i}.a with detail\n- item {i}.b with detail\n\n"
            f"```python\ndef f_{i}(x):\n    return x + {i}\n```\n\n"
            f"| key {i} | value {i} |\n|---|---|\n| k{i} | v{i} |\n")
    return "\n".join(parts)


def check_frames(area: OutputArea | list[list[dict[str, str]]], answer: str) -> None:
    """No frame shows a line of the answer twice, and a line once shown never disappears."""
    frames = area.frames if isinstance(area, OutputArea) else area
    counts: dict[str, int] = {}
    for line in answer.split("\n"):
        counts[line] = counts.get(line, 0) + 1
    # a fence's opening line is shown again by the piece that continues a split code block
    unique = {line for line, n in counts.items() if n == 1 and len(line.strip()) >= 6
              and not line.lstrip(" >-*0123456789.").startswith(("```", "~~~"))}
    before: set[str] = set()
    for number, frame in enumerate(frames):
        shown: list[str] = []
        for output in frame:
            lines = output.get("text/markdown", "").split("\n")
            shown += [line for line in lines[:-1] if line in unique]  # complete lines only
        assert len(shown) == len(set(shown)), f"frame {number} shows a line twice: {shown}"
        now = set(shown)
        assert before <= now, f"frame {number} lost {before - now}"
        before = now


def stream(sink: MarkdownDisplaySink, clock: FakeClock, text: str, *, seed: int = 0, step: float = 0.02) -> None:
    rng = random.Random(seed)
    i = 0
    while i < len(text):
        n = rng.randint(1, 4)
        sink.write(text[i : i + n])
        i += n
        clock.now += step


def new_sink(**options: Any) -> tuple[MarkdownDisplaySink, OutputArea, FakeClock]:
    area, clock = OutputArea(), FakeClock(1000.0)
    options.setdefault("trailing", False)
    return MarkdownDisplaySink(publisher=area, clock=clock, **options), area, clock


def pieces_markdown(sink: MarkdownDisplaySink, area: OutputArea) -> list[str]:
    """The answer outputs (all but the footer) as the area shows them."""
    return [o["text/markdown"] for o in area.visible()[:-1]]


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


def test_the_first_text_shows_the_moment_it_arrives_even_after_a_held_back_marker() -> None:
    """A first delta that is only a half-typed marker ("#") shows nothing; the next delta shows at
    once, not an interval later (throttling starts after the first text)."""
    sink, area, clock = new_sink(interval=0.1)
    sink.start("m")
    sink.write("#")
    assert area.outputs == [{"text/markdown": "*m · answering…*"}]  # nothing to show yet: the placeholder stays
    clock.now += 0.02
    sink.write(" Notes")
    assert area.outputs == [{"text/markdown": "# Notes"}]  # at once
    clock.now += 0.02
    sink.write(" on")
    assert area.outputs == [{"text/markdown": "# Notes"}]  # now throttled
    clock.now += 0.1
    sink.write(" it")
    assert area.outputs == [{"text/markdown": "# Notes on it"}]


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("step", [0.02, 0.0005, 0.2])
def test_a_cell_it_owns_ends_with_exactly_the_answer_and_the_footer(seed: int, step: float) -> None:
    answer = sections(12)
    cell = FakeCell()
    sink, area, clock = new_sink(cell=cell)
    sink.start("m")
    stream(sink, clock, answer, seed=seed, step=step)
    assert sink.frozen_pieces  # it froze as it streamed ...
    sink.finish(Reply(text=answer, model="m"))
    # ... and ends as one output, the footer at the end of its Markdown, its text/plain the exact answer
    assert area.outputs == [{"text/markdown": answer + "\n\n<sub>m</sub>", "text/plain": answer}]
    assert [m for m in area.messages if m[0] == "clear"] == [("clear", {}, True)]
    assert cell.claimed and all(m[0].startswith(cell.claimed[0]) for m in area.messages if m[0] != "clear")
    check_frames(area, answer)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("step", [0.02, 0.0005, 0.2])
def test_elsewhere_the_frozen_pieces_stay_whole_and_the_last_shows_the_exact_tail(seed: int, step: float) -> None:
    answer = sections(12)
    sink, area, clock = new_sink()  # bot.ask in any cell: other outputs may be there, nothing is cleared
    sink.start("m")
    stream(sink, clock, answer, seed=seed, step=step)
    sink.finish(Reply(text=answer, model="m"))
    pieces = pieces_markdown(sink, area)
    assert "".join(pieces) == answer and len(pieces) == len(sink.frozen_pieces) + 1
    assert area.outputs == area.visible()  # no empty output anywhere
    assert area.visible()[-1] == {"text/markdown": "<sub>m</sub>", "text/plain": "[m]"}
    assert not [m for m in area.messages if m[0] == "clear"]
    check_frames(area, answer)


@pytest.mark.parametrize("name", sorted(CORPUS))
@pytest.mark.parametrize("step", [0.02, 0.3])
def test_no_frame_shows_a_line_twice_or_loses_one(name: str, step: float) -> None:
    """Answers the way models write them, streamed slowly or quickly with frequent freezes."""
    answer = "\n\n".join([CORPUS[name]] * 3)
    for cell in (FakeCell(), None):
        sink, area, clock = new_sink(cell=cell, freeze_cost=150, soft_min=200)
        sink.start("m")
        stream(sink, clock, answer, step=step)
        sink.finish(Reply(text=answer, model="m"))
        check_frames(area, answer)
        if cell is not None and sink.frozen_pieces:  # one output (display-safe; the exact text is its text/plain)
            assert area.visible() == [{"text/markdown": safe_markdown(answer + "\n\n<sub>m</sub>"), "text/plain": answer}]


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
    sink, area, clock = new_sink(cell=FakeCell())
    sink.start("m")
    paragraphs = [f"Paragraph {i}: " + "some words here " * 12 for i in range(200)]
    answer = "\n\n".join(paragraphs)
    stream(sink, clock, answer)
    sent = sum(len(data.get("text/markdown", "")) for _, data, _ in area.messages)
    updates = len(area.messages)
    assert sent / updates < 800  # the reference recipe would average len(answer) / 2 = 20,000
    sink.finish(Reply(text=answer, model="m"))
    assert area.visible()[0]["text/plain"] == answer


def test_cells_cut_only_where_the_pieces_are_no_taller_than_the_whole() -> None:
    """The pieces become one output at the end: every cut is before a paragraph, heading or table
    (never before a list, fence or quote, never inside a block: those leave the pieces taller, and
    the swap would make the output jump up). A long code block or list goes on in the live output."""
    sink, area, clock = new_sink(freeze_cost=100)
    code = "```python\n" + "".join(f"value_{i} = {i}\n" for i in range(60)) + "```\n\n"
    answer = sections(6) + "\n" + code + "After the code.\n\n- a list\n- of items\n\n> a quote\n\nThe end.\n"
    sink.start("m")
    stream(sink, clock, answer, step=0.05)
    sink.finish(Reply(text=answer, model="m"))
    starts = [answer[start:].split("\n", 1)[0] for start, _ in sink.frozen_pieces[1:]] + [
        answer[sink.frozen_pieces[-1][1]:].split("\n", 1)[0]]
    assert len(starts) >= 4
    assert all(line.startswith(("## Section", "Paragraph", "| key", "After", "The end")) for line in starts), starts
    assert "".join(pieces_markdown(sink, area)) == answer


def test_one_huge_paragraph_stays_whole_in_the_cell() -> None:
    """No block boundary at all: the cell does not split the paragraph (two paragraphs would reflow
    at the end); only its live output is resent, and the chat panel splits it (test_bubbles)."""
    sink, area, clock = new_sink(cell=FakeCell())
    sink.start("m")
    answer = " ".join(f"Sentence {i} says **something {i}** about `x{i}`." for i in range(200))
    stream(sink, clock, answer)
    assert sink.frozen_pieces == []
    sink.finish(Reply(text=answer, model="m"))
    assert area.visible()[0] == {"text/markdown": answer, "text/plain": answer}


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
        ("truncated", {"finish_reason": "length"}, "**⚠ answer truncated: it reached an output token limit (finish\\_reason=length)**"),
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


def test_failure_before_any_text_leaves_no_empty_output() -> None:
    """In a cell the magic owns, the placeholder goes when the error the magic raises arrives
    (clear with wait); elsewhere it says what happened (the error is raised to the caller too)."""
    sink, area, _ = new_sink(cell=FakeCell())
    sink.start("m")
    sink.finish(Reply(text="", model="m", status="failed", error="401: bad key"))
    assert area.messages[-1] == ("clear", {}, True) and area.clear_next
    sink, area, _ = new_sink()
    sink.start("m")
    sink.finish(Reply(text="", model="m", status="failed", error="401: bad key"))
    assert area.outputs == [{"text/markdown": "**⚠ request failed: 401: bad key**",
                             "text/plain": "[request failed: 401: bad key]"}]


def test_stopped_before_any_text_shows_the_notice_in_the_placeholders_place() -> None:
    sink, area, _ = new_sink()
    sink.start("m")
    sink.finish(Reply(text="", model="m", status="interrupted"))
    assert area.outputs == [{"text/markdown": "**⚠ answer interrupted before any text**\n\n<sub>m</sub>",
                             "text/plain": "[answer interrupted before any text]\n[m]"}]


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


@pytest.mark.parametrize("owned", [True, False])
@pytest.mark.parametrize("fail_on", [1, 2, 5, 9, 14, 30])
def test_keyboard_interrupt_inside_write_leaves_a_consistent_state(fail_on: int, owned: bool) -> None:
    """Ctrl-C lands in the middle of sending a display message; finish() still shows the answer once."""
    sink, area, clock = new_sink(cell=FakeCell() if owned else None, freeze_cost=300)
    area.fail_on = fail_on
    sink.start("m")
    answer = sections(6)
    written = ""
    with pytest.raises(KeyboardInterrupt):
        for i in range(0, len(answer), 3):
            delta = answer[i : i + 3]
            written += delta
            sink.write(delta)
            clock.now += 0.3
    sink.finish(Reply(text=written, model="m", status="interrupted"))
    footer = "**⚠ answer interrupted: partial text kept**\n\n<sub>m</sub>"
    if owned and sink.frozen_pieces:  # one output: the answer, its footer with the notice and the facts
        assert area.visible() == [{"text/markdown": f"{written}\n\n{footer}", "text/plain": written}]
    else:
        assert area.visible()[-1]["text/markdown"] == footer
        assert "".join(pieces_markdown(sink, area)) == written


def test_make_sink_outside_a_kernel_is_plain_text() -> None:
    assert isinstance(make_sink(), PrintSink)
    assert isinstance(make_sink(kind="display", footer=False), MarkdownDisplaySink)
    assert isinstance(make_sink(kind="print", cell=FakeCell()), CellTextSink)  # type: ignore[arg-type]
    code = make_sink(kind="code", footer=False)
    assert isinstance(code, FormattedSink) and (code.kind, code.in_kernel, code.footer) == ("code", False, False)
    with pytest.raises(ValueError, match="kind must be 'auto', 'display', 'print', 'code' or 'json'"):
        make_sink(kind="html")  # type: ignore[arg-type]


def test_the_sink_is_a_context_manager_that_always_stops_its_thread() -> None:
    area = OutputArea()
    with MarkdownDisplaySink(publisher=area, interval=0.05) as sink:
        sink.start("m")
        sink.write("partial")
        thread = sink._repainter._thread
        assert thread is not None and thread.is_alive()
    assert not thread.is_alive()  # left without finish(): the thread is stopped all the same
    assert area.outputs == [{"text/markdown": "partial"}]


# -- real kernel ----------------------------------------------------------------------------------

DISPLAY_TYPES = ("display_data", "update_display_data", "clear_output", "stream")


@dataclass
class Execution:
    """One execute request's IOPub messages, in arrival order, and the wire size of each."""

    msg_id: str
    messages: list[dict[str, Any]]
    sizes: list[int]
    foreign: int  # display messages that arrived with another parent (must stay 0)

    @property
    def displays(self) -> list[dict[str, Any]]:
        return [m for m in self.messages if m["msg_type"] in DISPLAY_TYPES]

    def display_bytes(self) -> int:
        return sum(s for m, s in zip(self.messages, self.sizes) if m["msg_type"] in DISPLAY_TYPES)

    def frames(self) -> list[list[dict[str, Any]]]:
        """The cell's outputs after each message, applied as a front end applies them (display ids
        updated in place, clear_output with wait=True done when the next output arrives)."""
        outputs: list[dict[str, Any]] = []
        where: dict[str, list[int]] = {}
        clear_next = False
        frames: list[list[dict[str, Any]]] = []
        for m in self.messages:
            kind, content = m["msg_type"], m["content"]
            if kind not in (*DISPLAY_TYPES, "error"):
                continue
            if kind == "clear_output":
                if content["wait"]:
                    clear_next = True
                    continue
                outputs, where = [], {}
            elif kind == "update_display_data":
                for i in where.get(content["transient"]["display_id"], []):
                    outputs[i] = dict(content["data"])
            else:
                if clear_next:
                    outputs, where, clear_next = [], {}, False
                if kind == "display_data":
                    display_id = content.get("transient", {}).get("display_id")
                    if display_id:
                        where.setdefault(display_id, []).append(len(outputs))
                    outputs.append(dict(content["data"]))
                elif kind == "stream" and outputs and outputs[-1].get("stream") == content["name"]:
                    outputs[-1] = {**outputs[-1], "text": outputs[-1]["text"] + content["text"]}  # as front ends join them
                else:
                    outputs.append({"stream": content.get("name", "error"), "text": content.get("text", "")})
            frames.append([dict(o) for o in outputs])
        return frames

    def outputs(self) -> list[dict[str, Any]]:
        """The cell's outputs as a front end ends up with them."""
        frames = self.frames()
        return frames[-1] if frames else []

    def markdown_outputs(self) -> list[str]:
        return [o["text/markdown"] for o in self.outputs() if "text/markdown" in o]

    def stdout(self) -> str:
        return "".join(m["content"]["text"] for m in self.messages if m["msg_type"] == "stream")

    def peak_per_second(self) -> int:
        """Most display messages in any 1-second window (kernel send times from the headers)."""
        times = sorted(m["header"]["date"].timestamp() for m in self.displays)
        best, j = 0, 0
        for i, t in enumerate(times):
            while times[j] < t - 1.0:
                j += 1
            best = max(best, i - j + 1)
        return best


class Kernel:
    def __init__(self) -> None:
        from jupyter_client.manager import start_new_kernel

        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
        self.manager, self.client = start_new_kernel(kernel_name="python3", env=env, cwd=str(ROOT))

    def run(self, code: str, *, timeout: float = 180, interrupt_after: int | None = None) -> Execution:
        """Execute ``code``; optionally interrupt the kernel once that many display messages arrived."""
        msg_id = self.client.execute(code)
        run = Execution(msg_id, [], [], 0)
        interrupted = False
        while True:
            msg = self.client.get_iopub_msg(timeout=timeout)
            if msg["parent_header"].get("msg_id") != msg_id:
                run.foreign += msg["msg_type"] in DISPLAY_TYPES
                continue
            run.messages.append(msg)
            run.sizes.append(sum(len(frame) for frame in self.client.session.serialize(msg)))
            if interrupt_after is not None and not interrupted and len(run.displays) >= interrupt_after:
                self.manager.interrupt_kernel()
                interrupted = True
            if msg["msg_type"] == "error":
                raise AssertionError("\n".join(msg["content"]["traceback"]))
            if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                return run

    def value(self, expression: str) -> Any:
        out = self.run(f"import json as _json; print(_json.dumps({expression}))").stdout()
        return json.loads(out)

    def close(self) -> None:
        self.client.stop_channels()
        self.manager.shutdown_kernel(now=True)


@pytest.fixture(scope="module")
def kernel() -> Iterator[Kernel]:
    k = Kernel()
    try:
        yield k
    finally:
        k.close()


def expected_reply(loopback: Any, question: str, tokens: int) -> str:
    """The server's reply to ``question`` asked without streaming (the same text it streams)."""
    loopback.queue(tokens=tokens)
    client = openai.OpenAI(base_url=loopback.base_url, api_key="test-key", max_retries=0)
    done = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": question}])
    client.close()
    return done.choices[0].message.content


def setup_bot(kernel: Kernel, loopback: Any) -> None:
    kernel.run(
        "from jupyter_llmchat import Chatbot\n"
        "from jupyter_llmchat.notebook.display import MarkdownDisplaySink, make_sink\n"
        "from jupyter_llmchat.core.reply import Reply\n"
        f"bot = Chatbot('gpt-4o-mini', base_url={loopback.base_url!r}, api_key='test-key')\n"
    )


def setup_magic(kernel: Kernel, loopback: Any) -> None:
    kernel.run("%load_ext jupyter_llmchat\n%config ChatMagics.store = ':memory:'\n"
               f"%config ChatMagics.base_url = {loopback.base_url!r}\n%config ChatMagics.api_key = 'test-key'")


def answer_output_bytes(run: Execution) -> int:
    """Wire size of the final answer display (the last message that carries text/plain == answer)."""
    finals = [s for m, s in zip(run.messages, run.sizes)
              if m["msg_type"] in ("display_data", "update_display_data") and "text/plain" in m["content"]["data"]]
    return finals[0]


def test_kernel_make_sink_is_the_display_renderer(kernel: Kernel) -> None:
    kernel.run("from jupyter_llmchat.notebook.display import make_sink")
    assert kernel.value("type(make_sink()).__name__") == "MarkdownDisplaySink"


def test_kernel_awkward_deltas_stream_without_flashes(kernel: Kernel) -> None:
    """Deltas of 1-3 characters cut fences, tables and lists anywhere; many repaints and freezes.
    Outside a cell the magic owns, the pieces stay: together exactly the answer, none empty."""
    answer = "\n\n".join([TRICKY, sections(8)])
    code = (
        "import random, time\n"
        "from jupyter_llmchat.notebook.display import MarkdownDisplaySink\n"
        "from jupyter_llmchat.core.reply import Reply\n"
        f"answer = {answer!r}\n"
        "sink = MarkdownDisplaySink(interval=0.002, freeze_cost=200, max_rate=100_000)\n"
        "sink.start('m')\n"
        "rng, i = random.Random(3), 0\n"
        "while i < len(answer):\n"
        "    n = rng.randint(1, 3); sink.write(answer[i:i + n]); i += n; time.sleep(0.0005)\n"
        "sink.finish(Reply(text=answer, model='m'))\n"
    )
    run = kernel.run(code)
    assert run.foreign == 0
    markdown = run.markdown_outputs()
    assert "".join(markdown[:-1]) == answer and markdown[-1] == "<sub>m</sub>" and len(markdown) > 3
    assert all(o for o in run.outputs())  # no empty output
    assert len(run.displays) > 20  # it really streamed in many pieces
    check_frames(run.frames(), answer)


@pytest.mark.parametrize(("tokens", "rate", "max_ratio"), [(2000, None, 4), (500, 50.0, 25)])
def test_kernel_chat_cell_is_exact_and_within_limits(
    kernel: Kernel, loopback: Any, tokens: int, rate: float | None, max_ratio: int
) -> None:
    """A %%chat cell: live Markdown with no frame showing a line twice or losing one, and at the
    end exactly the answer and the footer; IOPub traffic bounded."""
    setup_magic(kernel, loopback)
    question = f"Explain streaming in {tokens} tokens"
    expected = expected_reply(loopback, question, tokens)
    assert "```python" in expected and "| Name |" in expected and "\n- " in expected
    loopback.queue(tokens=tokens, rate=rate)
    run = kernel.run(f"%%chat --no-history\n{question}")
    assert run.foreign == 0  # every display message belongs to the cell that asked
    outputs = run.outputs()
    froze = any(m["msg_type"] == "clear_output" for m in run.messages)
    if froze:  # the pieces were swapped for one output, the footer at its end
        assert len(outputs) == 1 and outputs[0]["text/plain"] == expected
        answer, footer = outputs[0]["text/markdown"].rsplit("\n\n", 1)
        assert answer == safe_markdown(expected).rstrip("\n")
    else:  # the live output became the answer; the footer followed
        assert len(outputs) == 2 and outputs[0] == {"text/markdown": safe_markdown(expected), "text/plain": expected}
        footer = outputs[1]["text/markdown"]
    assert footer.startswith("<sub>gpt-4o-mini · ")
    assert froze or rate is None  # at 50 tokens/s it froze finished blocks as it went
    check_frames(run.frames(), expected)
    total, final = run.display_bytes(), answer_output_bytes(run)
    assert total <= max_ratio * final, (total, final, len(run.displays))
    assert run.peak_per_second() <= 20


def test_kernel_interrupt_leaves_a_marked_partial_answer(kernel: Kernel, loopback: Any) -> None:
    setup_bot(kernel, loopback)
    question = "A long answer, please"
    expected = sections(80)  # every cut a hard one: the pieces join to the text
    loopback.queue(reply=expected, rate=50.0)
    run = kernel.run(f"r = bot.ask({question!r}, history=False)", interrupt_after=8)
    status, partial = kernel.value("[r.status, r.text]")
    assert status == "interrupted"
    assert 0 < len(partial) < len(expected) and expected.startswith(partial)
    markdown = run.markdown_outputs()
    assert "".join(markdown[:-1]) == safe_markdown(partial)  # a fence the interrupt left open is closed
    assert markdown[-1].startswith("**⚠ answer interrupted: partial text kept**")
    assert all(o for o in run.outputs())


def test_kernel_stalled_stream_is_shown_by_the_helper_thread(kernel: Kernel) -> None:
    """Text left pending when deltas stop arriving is shown within an interval, routed to the cell."""
    code = (
        "import time\n"
        "from jupyter_llmchat.notebook.display import MarkdownDisplaySink\n"
        "from jupyter_llmchat.core.reply import Reply\n"
        "sink = MarkdownDisplaySink(interval=0.1)\n"
        "sink.start('m'); sink.write('First words'); sink.write(' and more')\n"
        "time.sleep(1.5)\n"
        "sink.finish(Reply(text='First words and more', model='m'))\n"
    )
    run = kernel.run(code)
    assert run.foreign == 0
    shown = [m["content"]["data"] for m in run.displays if m["msg_type"] == "update_display_data"]
    assert {"text/markdown": "First words and more"} in shown  # before finish, without text/plain
    assert run.markdown_outputs()[0] == "First words and more"


def test_kernel_bot_ask_without_a_sink_renders_live_markdown(kernel: Kernel, loopback: Any) -> None:
    """bot.ask(...) in a cell streams live Markdown like %%chat (the top-level package's default-sink
    hook), with its footer; the core itself imported no IPython to do it."""
    setup_bot(kernel, loopback)
    question = "Default sink please"
    expected = sections(6)
    loopback.queue(reply=expected, rate=400.0)
    run = kernel.run(f"reply = bot.ask({question!r}, history=False)")
    markdown = run.markdown_outputs()
    assert "".join(markdown[:-1]) == expected
    assert markdown[-1].startswith("<sub>gpt-4o-mini · ")
    assert run.displays[0]["content"]["data"] == {"text/markdown": "*gpt-4o-mini · answering…*"}  # live: placeholder first
    assert not run.stdout()  # no plain text printed
    assert kernel.value("type(__import__('jupyter_llmchat.core.reply', fromlist=['x']).default_sink()).__name__") == \
        "MarkdownDisplaySink"


def test_notebook_saved_by_nbclient_holds_exactly_the_answer(loopback: Any) -> None:
    """A saved %%chat cell holds the answer and the footer and nothing else; nbconvert exports it
    once and says nothing about it."""
    import logging

    from nbconvert import HTMLExporter, MarkdownExporter
    from support.kernel_notebook import run_cells

    question = "Notebook export check"
    expected = expected_reply(loopback, question, 1500)
    loopback.queue(tokens=1500, rate=300.0)
    loopback.queue(tokens=600, rate=200.0)
    loopback.queue(reply=sections(14), rate=300.0)  # every cut a hard one: the pieces join to the answer
    result = run_cells([
        "%load_ext jupyter_llmchat\n%config ChatMagics.store = ':memory:'\n"
        f"%config ChatMagics.base_url = {loopback.base_url!r}\n%config ChatMagics.api_key = 'test-key'",
        f"%%chat --no-history\n{question}",
        "%%chat -f text --no-history\nPlain text please",
        "%%chat --no-history\n{print('printed by the question') or 'Another'} question",
    ])
    nbformat.validate(result.nb)
    outputs = result.outputs(1)  # streamed in pieces, saved as one output: the answer, its footer at the end
    assert [o.output_type for o in outputs] == ["display_data"]
    assert outputs[0].data["text/plain"] == expected
    answer, footer = outputs[0].data["text/markdown"].rsplit("\n\n", 1)
    assert answer == safe_markdown(expected).rstrip("\n") and footer.startswith("<sub>gpt-4o-mini · ")
    text = result.outputs(2)  # -f text: one output, not one per flush
    assert [(o.output_type, o.name) for o in text] == [("stream", "stdout")] and len(text[0].text) > 1000
    # something else in the cell (a print in an {expression}): nothing is cleared, nothing lost
    crowded = result.outputs(3)
    assert crowded[0].output_type == "stream" and crowded[0].text == "printed by the question\n"
    pieces = [o.data["text/markdown"] for o in crowded[1:]]
    assert len(pieces) >= 3 and pieces[-1].startswith("<sub>gpt-4o-mini") and all(pieces)
    asked = loopback.requests[-1].body["messages"][-1]["content"]
    assert asked == "Another question" and "".join(pieces[:-1]) == sections(14)
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    for exporter in (MarkdownExporter(), HTMLExporter()):
        exporter.log.addHandler(Keep(level=logging.WARNING))
        exported, _ = exporter.from_notebook_node(result.nb)
        assert records == []  # no nbconvert warnings
    exported, _ = MarkdownExporter().from_notebook_node(result.nb)
    assert exported.count(expected.strip()) == 1  # the exported notebook holds the answer once


@pytest.mark.parametrize("launcher", [[sys.executable, "-c"], [sys.executable, "-m", "IPython", "--quick", "--no-banner", "-c"]])
def test_terminal_and_plain_python_get_plain_text(loopback: Any, launcher: list[str]) -> None:
    question = "Plain please"
    expected = expected_reply(loopback, question, 120)
    loopback.queue(tokens=120)
    loopback.queue(tokens=120)
    code = (
        "import sys\nfrom jupyter_llmchat import Chatbot\nfrom jupyter_llmchat.notebook.display import make_sink\n"
        "sink = make_sink(); print(type(sink).__name__)\n"
        f"bot = Chatbot('gpt-4o-mini', base_url={loopback.base_url!r}, api_key='k')\n"
        f"_ = bot.ask({question!r}, sink=sink, history=False)\n"
        f"_ = bot.ask({question!r}, history=False)  # no sink: the default one\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TERM": "xterm-256color"}
    out = subprocess.run([*launcher, code], capture_output=True, text=True, env=env, timeout=120, check=True).stdout
    answer = expected + ("" if expected.endswith("\n") else "\n")
    assert out == "PrintSink\n" + answer + answer
    assert "\x1b" not in out


def test_plain_python_bot_ask_imports_no_ipython(loopback: Any) -> None:
    """The default-sink hook only looks for a kernel; a script never imports IPython for it."""
    loopback.queue(reply="Hi from a script")
    code = ("import sys\nfrom jupyter_llmchat import Chatbot\n"
            f"Chatbot('gpt-4o-mini', base_url={loopback.base_url!r}, api_key='k').ask('hi')\n"
            "print(sorted(m for m in ('IPython', 'ipykernel', 'jupyter_llmchat.notebook') if m in sys.modules))\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120,
                         check=True).stdout
    assert out == "Hi from a script\n[]\n"
