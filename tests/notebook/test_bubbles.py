"""Bubbles and the streaming bubble: exact HTML for exact inputs, the shared freeze policy."""

from __future__ import annotations

from support.fake_clock import FakeClock

from jupyter_llmchat.notebook.bubbles import StreamingBubble, bubble_html
from jupyter_llmchat.notebook.freezing import FreezePolicy


def bubble(**options: int) -> StreamingBubble:
    return StreamingBubble("gpt-4o-mini", policy=FreezePolicy(clock=FakeClock(1.0), **options))


def test_bubble_html_exact() -> None:
    assert bubble_html("user", "a <b>\nline 2", label="you") == (
        '<div class="llmchat-bubble llmchat-user llmchat-complete"><div class="llmchat-role">you</div>'
        '<div class="llmchat-body"><div class="llmchat-text">a &lt;b&gt;\nline 2</div></div></div>')
    assert bubble_html("assistant", "*partial", status="interrupted", label="m") == (
        '<div class="llmchat-bubble llmchat-assistant llmchat-interrupted">'
        '<div class="llmchat-role">m</div><div class="llmchat-body"><p>*partial</p></div>'
        '<div class="llmchat-notice">answer interrupted: partial text kept</div></div>')
    assert bubble_html("assistant", "cut", status="truncated", label="m").endswith(
        '<div class="llmchat-notice">answer truncated: it reached an output token limit (finish_reason=length)</div></div>')


def test_streaming_bubble_freezes_finished_blocks_and_resends_only_the_tail() -> None:
    streaming = bubble(freeze_cost=20)
    streaming.paint("# Title\n\nFirst")  # nothing resent yet: nothing frozen
    assert streaming.frozen == [] and streaming.live.value == "<h1>Title</h1>\n<p>First</p>"
    streaming.paint("# Title\n\nFirst paragraph here.\n\nSecond one, longer")
    assert streaming.frozen == ["# Title\n\nFirst paragraph here.\n\n"]
    label, piece, live = streaming.widget.children
    assert label.value == '<div class="llmchat-role">gpt-4o-mini</div>'
    assert piece.value == "<h1>Title</h1>\n<p>First paragraph here.</p>"
    assert live.value == "<p>Second one, longer</p>"
    assert "llmchat-streaming" in streaming.widget._dom_classes
    streaming.paint("# Title\n\nFirst paragraph here.\n\nSecond one, longer ```py\n")
    streaming.finish("# Title\n\nFirst paragraph here.\n\nSecond one, longer", "interrupted")
    assert [child.value for child in streaming.widget.children] == [
        '<div class="llmchat-role">gpt-4o-mini</div>', "<h1>Title</h1>\n<p>First paragraph here.</p>",
        "<p>Second one, longer</p>", '<div class="llmchat-notice">answer interrupted: partial text kept</div>']
    assert streaming.widget._dom_classes == ("llmchat-bubble", "llmchat-assistant", "llmchat-interrupted")


def test_a_long_code_block_is_split_without_a_visible_seam() -> None:
    """A soft cut inside a fence: the frozen piece closes it, the live piece reopens it, and the
    CSS classes join the two code boxes; a later hard cut ends the continuation."""
    streaming = bubble(freeze_cost=50, soft_min=100)
    code = "```python\n" + "".join(f"line_{i} = {i}\n" for i in range(30))
    for end in range(40, len(code) + 1, 40):
        streaming.paint(code[:end])
    streaming.paint(code)
    label, *frozen, live = streaming.widget.children
    assert frozen and all(piece.value.startswith('<pre><code class="language-python">') for piece in frozen)
    assert all("llmchat-split" in piece._dom_classes for piece in frozen)
    assert all("llmchat-cont" in piece._dom_classes for piece in frozen[1:])
    assert "llmchat-cont" in live._dom_classes and streaming.live_prefix == "```python\n"
    assert live.value.startswith('<pre><code class="language-python">line_')
    streaming.finish(code + "```\n\nDone.", "complete")
    assert live.value.endswith("</code></pre>\n<p>Done.</p>")
    text = "".join(frozen_md.replace("```python\n", "").replace("\n```", "\n") for frozen_md in streaming.frozen)
    assert text.replace("\n\n", "\n") == code[len("```python\n"):streaming.live_start]


def test_no_text_moves_between_widgets_while_an_answer_streams() -> None:
    """Every change the front end gets (a widget's value, the bubble's children) leaves no line
    shown twice and none lost: a freeze only ever adds text nobody saw to the widget it closes."""
    import re

    clock = FakeClock(1.0)
    streaming = StreamingBubble("m", policy=FreezePolicy(clock=clock, freeze_cost=300, soft_min=200, max_rate=1000))
    answer = "".join(f"## Part {i:02d}\n\nWords of part {i:02d} go here, a sentence or two long.\n\n"
                     f"- point {i:02d}.a\n- point {i:02d}.b\n\n```python\nvalue_{i:02d} = {i}\n```\n\n"
                     for i in range(25))
    frames: list[list[str]] = []

    def frame(_: object = None) -> None:
        frames.append([re.sub(r"<[^>]+>", "", child.value) for child in streaming.widget.children[1:]])

    watched: set[int] = set()

    def watch(_: object = None) -> None:
        for child in streaming.widget.children[1:]:
            if id(child) not in watched:
                watched.add(id(child))
                child.observe(frame, names="value")
        frame()

    streaming.widget.observe(watch, names="children")
    watch()
    for end in range(3, len(answer) + 1, 3):
        streaming.paint(answer[:end])
        clock.now += 0.05
    streaming.finish(answer, "complete")
    assert len(streaming.frozen) >= 5
    lines = [line for line in answer.split("\n") if len(line) > 8 and not line.startswith("```")]
    seen: set[str] = set()
    for number, shown in enumerate(frames):
        text = [line for widget in shown for line in widget.split("\n")]
        now = {line.lstrip("# -") for line in text} & {line.lstrip("# -") for line in lines}
        counts = [sum(line.lstrip("# -") == wanted for line in text) for wanted in now]
        assert all(n == 1 for n in counts), f"frame {number} shows a line twice"
        assert seen <= now, f"frame {number} lost {seen - now}"
        seen = now
    assert seen == {line.lstrip("# -") for line in lines}
