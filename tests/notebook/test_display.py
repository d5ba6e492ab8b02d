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
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat
import openai
import pytest

from jupyter_llmchat.core.reply import PrintSink, Reply, Usage
from jupyter_llmchat.notebook.display import MarkdownDisplaySink, make_sink
from jupyter_llmchat.notebook.formatted import FormattedSink

ROOT = Path(__file__).resolve().parents[2]

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


def test_one_huge_paragraph_is_split_at_sentences_while_it_streams() -> None:
    """No block boundary at all: the tail is still kept short, at sentence ends."""
    sink, area, clock = new_sink()
    sink.start("m")
    answer = " ".join(f"Sentence {i} says **something {i}** about `x{i}`." for i in range(800))
    stream(sink, clock, answer)
    sent = sum(len(data.get("text/markdown", "")) for _, data, _ in area.messages)
    assert sent / len(area.messages) < 1500  # without the split: len(answer) / 2 = 18,000
    pieces = [o["text/markdown"] for o in area.visible()]
    assert len(pieces) >= 2 and all(p.endswith("`. ") for p in pieces[:-1])  # frozen at sentence ends
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
    assert area.outputs == [{}]  # no answer, no footer: the error itself is raised by ask()


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


def test_make_sink_outside_a_kernel_is_plain_text() -> None:
    assert isinstance(make_sink(), PrintSink)
    assert isinstance(make_sink(kind="display", footer=False), MarkdownDisplaySink)
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


def test_a_freeze_at_a_soft_cut_closes_the_fence_it_ends_in() -> None:
    """A long code block is split while it streams: the frozen piece closes the fence, the live
    piece reopens it; the end shows the one exact answer."""
    sink, area, clock = new_sink(freeze_cost=100, soft_min=200)
    answer = "Code:\n\n```python\n" + "".join(f"value_{i} = {i}\n" for i in range(60)) + "```\n"
    sink.start("m")
    stream(sink, clock, answer, step=0.05)
    pieces = [o["text/markdown"] for o in area.visible()]
    assert len(pieces) >= 3
    assert all(p.endswith("\n```") for p in pieces[1:-1])  # frozen inside the fence: closed
    assert all(p.startswith("```python\n") for p in pieces[2:])  # reopened with its opener
    sink.finish(Reply(text=answer, model="m"))
    assert area.visible()[0]["text/markdown"] == answer


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

    def outputs(self) -> list[dict[str, Any]]:
        """The cell's outputs as a front end ends up with them (display ids updated in place)."""
        outputs: list[dict[str, Any]] = []
        where: dict[str, list[int]] = {}
        for m in self.messages:
            kind, content = m["msg_type"], m["content"]
            display_id = content.get("transient", {}).get("display_id")
            if kind == "display_data":
                if display_id:
                    where.setdefault(display_id, []).append(len(outputs))
                outputs.append({"type": kind, "data": content["data"]})
            elif kind == "update_display_data":
                for i in where.get(display_id, []):
                    outputs[i]["data"] = content["data"]
            elif kind in ("stream", "error"):
                outputs.append({"type": kind, "content": content})
        return outputs

    def markdown_outputs(self) -> list[str]:
        return [o["data"]["text/markdown"] for o in self.outputs() if "text/markdown" in o.get("data", {})]

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


def ask(kernel: Kernel, loopback: Any, question: str, *, tokens: int, rate: float | None, **run: Any) -> Execution:
    loopback.queue(tokens=tokens, rate=rate)
    return kernel.run(f"sink = make_sink(); r = bot.ask({question!r}, sink=sink, history=False)", **run)


def answer_output_bytes(run: Execution) -> int:
    """Wire size of the final answer display (the last message that carries text/plain == answer)."""
    finals = [s for m, s in zip(run.messages, run.sizes)
              if m["msg_type"] in ("display_data", "update_display_data") and "text/plain" in m["content"]["data"]]
    return finals[0]


def test_kernel_make_sink_is_the_display_renderer(kernel: Kernel) -> None:
    kernel.run("from jupyter_llmchat.notebook.display import make_sink")
    assert kernel.value("type(make_sink()).__name__") == "MarkdownDisplaySink"


def test_kernel_awkward_deltas_end_as_one_exact_markdown_output(kernel: Kernel) -> None:
    """Deltas of 1-3 characters cut fences, tables and lists anywhere; many repaints and merges."""
    code = (
        "import random, time\n"
        "from jupyter_llmchat.notebook.display import MarkdownDisplaySink\n"
        "from jupyter_llmchat.core.reply import Reply\n"
        f"answer = {TRICKY * 5!r}\n"
        "sink = MarkdownDisplaySink(interval=0.002, max_outputs=5, freeze_cost=200)\n"
        "sink.start('m')\n"
        "rng, i = random.Random(3), 0\n"
        "while i < len(answer):\n"
        "    n = rng.randint(1, 3); sink.write(answer[i:i + n]); i += n; time.sleep(0.0005)\n"
        "sink.finish(Reply(text=answer, model='m'))\n"
    )
    run = kernel.run(code)
    assert run.foreign == 0
    assert run.markdown_outputs() == [TRICKY * 5, "<sub>m</sub>"]
    outputs = run.outputs()
    assert len(outputs) <= 6 and all(o["data"] == {} for o in outputs[1:-1])
    assert len(run.displays) > 20  # it really streamed in many pieces


@pytest.mark.parametrize(("tokens", "rate", "max_ratio"), [(2000, None, 4), (500, 50.0, 25)])
def test_kernel_chatbot_stream_is_exact_and_within_limits(
    kernel: Kernel, loopback: Any, tokens: int, rate: float | None, max_ratio: int
) -> None:
    setup_bot(kernel, loopback)
    question = f"Explain streaming in {tokens} tokens"
    expected = expected_reply(loopback, question, tokens)
    assert "```python" in expected and "| Name |" in expected and "\n- " in expected
    run = ask(kernel, loopback, question, tokens=tokens, rate=rate)
    assert run.foreign == 0  # every display message belongs to the cell that asked
    markdown = run.markdown_outputs()
    assert markdown[0] == expected and len(markdown) == 2 and markdown[1].startswith("<sub>gpt-4o-mini")
    total, final = run.display_bytes(), answer_output_bytes(run)
    assert total <= max_ratio * final, (total, final, len(run.displays))
    assert run.peak_per_second() <= 20
    assert kernel.value("r.status") == "complete"


def test_kernel_interrupt_leaves_a_marked_partial_answer(kernel: Kernel, loopback: Any) -> None:
    setup_bot(kernel, loopback)
    question = "A long answer, please"
    expected = expected_reply(loopback, question, 3000)
    run = ask(kernel, loopback, question, tokens=3000, rate=50.0, interrupt_after=8)
    status, partial = kernel.value("[r.status, r.text]")
    assert status == "interrupted"
    assert 0 < len(partial) < len(expected) and expected.startswith(partial)
    markdown = run.markdown_outputs()
    assert markdown[0] == partial
    assert markdown[1].startswith("**⚠ answer interrupted: partial text kept**")
    assert all(o["data"] == {} for o in run.outputs()[1:-1])


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


def test_notebook_saved_by_nbclient_holds_exactly_the_answer(loopback: Any) -> None:
    from support.kernel_notebook import run_cells

    question = "Notebook export check"
    expected = expected_reply(loopback, question, 600)
    loopback.queue(tokens=600, rate=400.0)
    result = run_cells([
        "from jupyter_llmchat import Chatbot\nfrom jupyter_llmchat.notebook.display import make_sink\n"
        f"bot = Chatbot('gpt-4o-mini', base_url={loopback.base_url!r}, api_key='test-key')",
        f"_ = bot.ask({question!r}, sink=make_sink())",
    ])
    nbformat.validate(result.nb)
    outputs = result.outputs(1)
    answers = [o for o in outputs if o.get("data", {}).get("text/markdown") == expected]
    assert len(answers) == 1 and answers[0].data["text/plain"] == expected
    assert outputs[-1].data["text/markdown"].startswith("<sub>gpt-4o-mini")
    assert all(o.output_type == "display_data" and o.data == {} for o in outputs if o not in answers and o is not outputs[-1])
    from nbconvert import MarkdownExporter

    exported, _ = MarkdownExporter().from_notebook_node(result.nb)
    assert exported.count(expected.strip()) == 1  # the exported notebook holds the answer once


@pytest.mark.parametrize("launcher", [[sys.executable, "-c"], [sys.executable, "-m", "IPython", "--quick", "--no-banner", "-c"]])
def test_terminal_and_plain_python_get_plain_text(loopback: Any, launcher: list[str]) -> None:
    question = "Plain please"
    expected = expected_reply(loopback, question, 120)
    loopback.queue(tokens=120)
    code = (
        "from jupyter_llmchat import Chatbot\nfrom jupyter_llmchat.notebook.display import make_sink\n"
        "sink = make_sink(); print(type(sink).__name__)\n"
        f"_ = Chatbot('gpt-4o-mini', base_url={loopback.base_url!r}, api_key='k').ask({question!r}, sink=sink)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TERM": "xterm-256color"}
    out = subprocess.run([*launcher, code], capture_output=True, text=True, env=env, timeout=120, check=True).stdout
    assert out == "PrintSink\n" + expected + ("" if expected.endswith("\n") else "\n")
    assert "\x1b" not in out
