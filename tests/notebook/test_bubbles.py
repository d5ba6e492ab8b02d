"""Bubbles, the streaming bubble and the status line: exact HTML for exact inputs."""

from __future__ import annotations

from jupyter_llmchat.core.reply import Reply, Usage
from jupyter_llmchat.notebook.bubbles import StreamingBubble, bubble_html, status_text


def test_bubble_html_exact() -> None:
    assert bubble_html("user", "a <b>\nline 2", label="you") == (
        '<div class="llmchat-bubble llmchat-user llmchat-complete"><div class="llmchat-role">you</div>'
        '<div class="llmchat-body"><div class="llmchat-text">a &lt;b&gt;\nline 2</div></div></div>')
    assert bubble_html("assistant", "*partial", status="interrupted", label="m") == (
        '<div class="llmchat-bubble llmchat-assistant llmchat-interrupted">'
        '<div class="llmchat-role">m</div><div class="llmchat-body"><p>*partial</p></div>'
        '<div class="llmchat-notice">stopped: partial answer kept</div></div>')


def test_status_text_exact() -> None:
    reply = Reply(text="x", model="gpt-4o-mini", usage=Usage(1200, 345), cost=0.000387, total_time=2.345)
    assert status_text(reply) == "gpt-4o-mini · 1,200 in · 345 out tokens · 2.3 s · $0.00039"
    stopped = Reply(text="x", model="llama3", status="interrupted", total_time=0.5)
    assert status_text(stopped) == "llama3 · 0.5 s · stopped: partial answer kept"
    failed = Reply(text="", model="m", status="failed", error="401: bad key", usage=Usage(0, 0), cost=0.0)
    assert status_text(failed) == "m · 0 in · 0 out tokens · $0 · request failed: 401: bad key"
    cached = Reply(text="x", model="m", usage=Usage(10, 2), cost=0.0234, total_time=0.0, from_cache=True)
    assert status_text(cached) == "m · 10 in · 2 out tokens · from cache"


def test_streaming_bubble_freezes_finished_blocks_and_resends_only_the_tail() -> None:
    bubble = StreamingBubble("gpt-4o-mini", freeze_at=20)
    bubble.paint("# Title\n\nFirst")  # 14 characters: nothing frozen yet
    assert bubble.frozen == [] and bubble.live.value == "<h1>Title</h1>\n<p>First</p>"
    bubble.paint("# Title\n\nFirst paragraph here.\n\nSecond one")
    assert bubble.frozen == ["# Title\n\n"]
    label, piece, live = bubble.widget.children
    assert label.value == '<div class="llmchat-role">gpt-4o-mini</div>'
    assert piece.value == "<h1>Title</h1>"
    assert live.value == "<p>First paragraph here.</p>\n<p>Second one</p>"
    assert "llmchat-streaming" in bubble.widget._dom_classes
    bubble.paint("# Title\n\nFirst paragraph here.\n\nSecond one ```py\n")
    bubble.finish("# Title\n\nFirst paragraph here.\n\nSecond one", "interrupted")
    assert bubble.frozen == ["# Title\n\n", "First paragraph here.\n\n"]
    assert [child.value for child in bubble.widget.children] == [
        '<div class="llmchat-role">gpt-4o-mini</div>', "<h1>Title</h1>", "<p>First paragraph here.</p>",
        "<p>Second one</p>", '<div class="llmchat-notice">stopped: partial answer kept</div>']
    assert bubble.widget._dom_classes == ("llmchat-bubble", "llmchat-assistant", "llmchat-interrupted")
