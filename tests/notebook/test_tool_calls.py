"""Tool call blocks: their HTML (every string escaped, the payload corpus kept as text in every
field, in HTML and inside Markdown as JupyterLab renders it), the cell sink placing them where
they came (the text before them above, the answer below, the final swap keeping the order), and
the chat panel drawing them in the answer's bubble with Approve / Deny for a confirm=True tool.
The answers come from the real openai SDK against the loopback server."""

from __future__ import annotations

import html
import json
import threading
import time
from html.parser import HTMLParser
from typing import Any

import pytest
from support.output_area import FakeCell, OutputArea
from support.xss_corpus import PAYLOADS, dangers, render_like_jupyterlab

from jupyter_llmchat import Chatbot
from jupyter_llmchat.core.reply import NullSink, Reply, ToolCall, status_notice
from jupyter_llmchat.core.tool_loop import DECLINED
from jupyter_llmchat.core.tools import Tool
from jupyter_llmchat.notebook.bubbles import bubble_html
from jupyter_llmchat.notebook.display import MarkdownDisplaySink
from jupyter_llmchat.notebook.footer import footer_markdown
from jupyter_llmchat.notebook.math_regions import math_regions
from jupyter_llmchat.notebook.panel import ChatPanel
from jupyter_llmchat.notebook.safe_markdown import safe_markdown
from jupyter_llmchat.notebook.tool_calls import (
    SHOWN_CHARS,
    answer_with_calls,
    calls_bundle,
    calls_from_messages,
    calls_html,
    calls_markdown,
    calls_plain,
    outcome_text,
    tool_turns,
    turn_html,
)
from jupyter_llmchat.server import LoopbackServer

WRENCH = "\U0001f527"


# -- reading the blocks back -------------------------------------------------------------------------
class _Blocks(HTMLParser):
    """The blocks as a reader sees them: per block its summary text and its (label, text) sections,
    and every tag and attribute met."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.blocks: list[dict[str, Any]] = []
        self.tags: set[str] = set()
        self.attributes: set[str] = set()
        self._in: list[str] = []
        self._text = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        self.attributes.update(name for name, _ in attrs)
        if tag == "details":
            self.blocks.append({"summary": "", "sections": [], "open": any(n == "open" for n, _ in attrs)})
        if tag in ("summary", "div", "pre"):
            self._text = ""
        self._in.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if self._in and self._in[-1] == tag:
            self._in.pop()
        block = self.blocks[-1] if self.blocks else None
        if block is None:
            return
        if tag == "summary":
            block["summary"] = self._text
        elif tag == "div" and "details" in self._in:
            block["sections"].append([self._text, None])
        elif tag == "pre":
            block["sections"][-1][1] = self._text

    def handle_data(self, data: str) -> None:
        self._text += data


def read_blocks(markup: str) -> _Blocks:
    parser = _Blocks()
    parser.feed(markup)
    parser.close()
    return parser


def done(name: str, arguments: str, result: str, seconds: float = 0.25, **fields: Any) -> ToolCall:
    return ToolCall("call_1", name, arguments, outcome="ok", result=result, seconds=seconds, **fields)


# -- the blocks --------------------------------------------------------------------------------------
def test_a_block_shows_name_arguments_outcome_time_and_result() -> None:
    call = done("to_fahrenheit", '{"celsius": 21}', "69.8")
    blocks = read_blocks(calls_html([call]))
    assert blocks.blocks == [{
        "summary": f'{WRENCH} to_fahrenheit {{"celsius": 21}} · done in 250 ms',
        "sections": [["arguments", '{\n  "celsius": 21\n}'], ["result", "69.8"]],
        "open": False}]
    assert blocks.tags == {"div", "details", "summary", "b", "code", "span", "pre"}
    assert blocks.attributes == {"class", "style"}
    assert calls_plain([call]) == f'{WRENCH} to_fahrenheit({{"celsius": 21}}) · done in 250 ms → 69.8'
    assert calls_bundle([call]) == {"text/html": calls_html([call]), "text/plain": calls_plain([call])}


def test_each_outcome_is_said_plainly() -> None:
    def call(outcome: str, **fields: Any) -> ToolCall:
        return ToolCall("c", "f", "{}", outcome=outcome, **fields)  # type: ignore[arg-type]

    assert [outcome_text(c) for c in (
        call("pending"), call("pending", approved=True), call("pending", approved=False),
        call("ok", seconds=0.0004), call("ok", seconds=2.5, approved=True), call("ok", seconds=12.25),
        call("error", seconds=0.01), call("invalid"), call("declined", error="the user declined", approved=False),
        call("declined", error="it needs the user's approval and nobody could be asked"),
        call("stopped", seconds=1.0), call("skipped"))] == [
        "running…", "approved, running…", "declined",
        "done in under 1 ms", "approved, done in 2.50 s", "done in 12.2 s",
        "raised an error in 10 ms", "invalid call", "declined",
        "not run: nobody could approve it",
        "stopped in 1.00 s", "not run"]
    assert outcome_text(call("pending"), waiting=True) == "waiting for your approval"


def test_a_failed_call_shows_its_error_and_a_waiting_one_opens_without_a_result() -> None:
    failed = ToolCall("c1", "lookup", '{"id": ', outcome="invalid", result="Error: not JSON",
                      error="the arguments are not valid JSON: Expecting value")
    waiting = ToolCall("c2", "run_python", '{"code": "print(1)"}')
    blocks = read_blocks(calls_html([failed, waiting], waiting=waiting)).blocks
    assert blocks == [
        {"summary": f'{WRENCH} lookup {{"id": · invalid call', "open": False,
         "sections": [["arguments", '{"id": '], ["invalid call", "the arguments are not valid JSON: Expecting value"]]},
        {"summary": f'{WRENCH} run_python {{"code": "print(1)"}} · waiting for your approval', "open": True,
         "sections": [["arguments", '{\n  "code": "print(1)"\n}']]}]
    assert calls_plain([failed, waiting], waiting=waiting) == (
        f'{WRENCH} lookup({{"id":) · invalid call → the arguments are not valid JSON: Expecting value\n'
        f'{WRENCH} run_python({{"code": "print(1)"}}) · waiting for your approval')


def test_long_arguments_and_results_are_cut_and_say_so() -> None:
    result = "x" * (SHOWN_CHARS + 1234)
    sections = read_blocks(calls_html([done("dump", "{}", result)])).blocks[0]["sections"]
    assert sections[1] == ["result", "x" * SHOWN_CHARS + "\n… (1,234 more characters not shown)"]


@pytest.mark.parametrize("payload", PAYLOADS)
def test_the_payload_corpus_stays_text_in_every_field(payload: str) -> None:
    """A payload as the tool's name, the arguments (raw and inside JSON), the result and the error:
    no live HTML, in the HTML blocks and in the Markdown form rendered as JupyterLab renders it;
    each reads back exactly; nothing in the Markdown form is math."""
    calls = [
        ToolCall("a", payload, json.dumps({"text": payload}), outcome="ok", result=payload, seconds=0.5),
        ToolCall("b", "f", payload, outcome="invalid", result=f"Error: {payload}", error=payload),
    ]
    for markup in (calls_html(calls), render_like_jupyterlab(calls_markdown(calls))):
        assert dangers(markup) == []
        first, second = read_blocks(markup).blocks
        expected = json.dumps({"text": payload}, ensure_ascii=False, indent=2)
        assert first["sections"] == [["arguments", expected], ["result", payload]]
        assert first["summary"].startswith(f"{WRENCH} {payload} ")
        assert second["sections"] == [["arguments", payload], ["invalid call", payload]]
    markdown = calls_markdown(calls)
    assert "\n" not in markdown and math_regions(markdown) == []
    assert not any(char in markdown for char in "$\\@`")


def test_an_answer_with_calls_keeps_their_order_and_each_stretch_display_safe() -> None:
    first = done("a", "{}", "1")
    second = done("b", "{}", "2")
    answer = "Looking <img src=x onerror=alert(1)>\n\n```python\nx = 1\n\nNow **done** $5."
    at = answer.index("\n\nNow")
    composed = answer_with_calls(answer, [(0, [first]), (at, [second])], "<sub>footer</sub>")
    assert composed == "\n\n".join([
        calls_markdown([first]),
        safe_markdown(answer[:at] + "\n```"),  # the fence open at the calls is closed before them
        calls_markdown([second]),
        safe_markdown(answer[at:].lstrip("\n") + "\n\n<sub>footer</sub>"),
    ])
    assert answer_with_calls("", [(0, [first])], None) == calls_markdown([first])
    assert answer_with_calls("", [(0, [first])], "*note*") == calls_markdown([first]) + "\n\n*note*"
    assert dangers(render_like_jupyterlab(composed)) == []


# -- the cell -----------------------------------------------------------------------------------------
def weather(city: str) -> str:
    """The weather in a city.

    Args:
        city: The city's name.
    """
    return f"sunny in {city}"


def make_bot(server: LoopbackServer, *tools: Any, **options: Any) -> Chatbot:
    return Chatbot("gpt-4o-mini", base_url=server.base_url, api_key="sk-test", tools=list(tools), **options)


def ask_in_cell(bot: Chatbot, question: str, *, owned: bool = True, **options: Any) -> tuple[Reply, OutputArea]:
    area = OutputArea()
    with MarkdownDisplaySink(publisher=area, cell=FakeCell() if owned else None) as sink:
        reply = bot.ask(question, sink=sink, **options)
    return reply, area


def footer_bundle(reply: Reply) -> dict[str, str]:
    footer = footer_markdown(reply)
    assert footer is not None
    return {"text/markdown": footer[0], "text/plain": footer[1]}


def test_a_cell_shows_the_calls_above_the_answer(loopback: LoopbackServer) -> None:
    bot = make_bot(loopback, weather)
    loopback.queue(tool_calls=[{"name": "weather", "arguments": {"city": "Oslo"}},
                               {"name": "weather", "arguments": {"city": "<b>Lima</b>"}}])
    loopback.queue(reply="Sunny in **both**.")
    reply, area = ask_in_cell(bot, "Weather in Oslo and Lima?")
    assert [(c.name, c.arguments, c.outcome, c.result) for c in reply.calls] == [
        ("weather", '{"city": "Oslo"}', "ok", "sunny in Oslo"),
        ("weather", '{"city": "<b>Lima</b>"}', "ok", "sunny in <b>Lima</b>")]
    assert area.outputs == [calls_bundle(reply.calls),
                            {"text/markdown": "Sunny in **both**.", "text/plain": "Sunny in **both**."},
                            footer_bundle(reply)]
    # the calls took the placeholder's place: from their first frame on, they are the first output
    kinds = [[("calls" if "text/html" in o else o.get("text/markdown", "")[:8]) for o in frame] for frame in area.frames]
    assert kinds[0] == ["*gpt-4o-"]
    assert all(frame[0] == "calls" for frame in kinds[1:])
    assert ["calls", "*gpt-4o-"] in kinds  # the next round's placeholder under the calls
    summaries = [b["summary"] for b in read_blocks(area.frames[1][0]["text/html"]).blocks]
    assert summaries == [f'{WRENCH} weather {{"city": "Oslo"}} · running…']


def test_text_before_the_calls_stays_above_them_and_the_swap_keeps_the_order(loopback: LoopbackServer) -> None:
    bot = make_bot(loopback, weather)
    loopback.queue(reply="Let me *check*.", tool_calls=[{"name": "weather", "arguments": {"city": "Oslo"}}])
    loopback.queue(reply="It is sunny.")
    reply, area = ask_in_cell(bot, "Weather in Oslo?")
    assert reply.text == "Let me *check*.\n\nIt is sunny."
    footer = footer_markdown(reply)
    assert footer is not None
    assert area.outputs == [{
        "text/markdown": "\n\n".join(["Let me *check*.", calls_markdown(reply.calls), "It is sunny.", footer[0]]),
        "text/plain": reply.text}]
    streamed = [[o.get("text/markdown") or "calls" for o in frame] for frame in area.frames[:-1]]
    assert ["Let me *check*.", "calls", "*gpt-4o-mini · answering…*"] in streamed  # the next round's placeholder
    assert all(frame.index("calls") == 1 for frame in streamed if "calls" in frame)  # below the text, always


def test_outside_an_owned_cell_the_outputs_stay_as_they_streamed(loopback: LoopbackServer) -> None:
    bot = make_bot(loopback, weather)
    loopback.queue(reply="Checking.", tool_calls=[{"name": "weather", "arguments": {"city": "Oslo"}}])
    loopback.queue(reply="Sunny.")
    reply, area = ask_in_cell(bot, "Weather?", owned=False)
    assert area.outputs == [{"text/markdown": "Checking."}, calls_bundle(reply.calls),
                            {"text/markdown": "\n\nSunny."}, footer_bundle(reply)]


def test_a_round_that_fails_after_the_calls_keeps_them(loopback: LoopbackServer) -> None:
    from jupyter_llmchat.core.errors import ChatError

    bot = make_bot(loopback, weather, max_retries=0)
    loopback.queue(tool_calls=[{"name": "weather", "arguments": {"city": "Oslo"}}])
    loopback.queue(fault="unauthorized")
    area = OutputArea()
    with MarkdownDisplaySink(publisher=area, cell=FakeCell()) as sink, pytest.raises(ChatError):
        bot.ask("Weather?", sink=sink)
    calls, failure = area.outputs
    assert [b["summary"] for b in read_blocks(calls["text/html"]).blocks] == [
        f'{WRENCH} weather {{"city": "Oslo"}} · done in ' + calls["text/plain"].split("done in ")[1].split(" →")[0]]
    assert failure["text/markdown"].startswith("**⚠ request failed: ")


def test_max_tool_rounds_is_said_under_the_calls(loopback: LoopbackServer) -> None:
    bot = make_bot(loopback, weather, max_tool_rounds=1)
    loopback.queue(tool_calls=[{"name": "weather", "arguments": {"city": "Oslo"}}])
    loopback.queue(tool_calls=[{"name": "weather", "arguments": {"city": "Lima"}}])
    reply, area = ask_in_cell(bot, "Weather?")
    assert (reply.status, reply.text) == ("tool_calls", "")
    assert [c.outcome for c in reply.calls] == ["ok", "skipped"]
    calls, notice = area.outputs
    assert calls == calls_bundle(reply.calls)  # the skipped call joined the same group: no text between
    assert notice == footer_bundle(reply)
    assert notice["text/plain"].startswith(
        "[answer ended with tool calls that were not run (finish_reason=tool_calls): stopped after 1 rounds of "
        "tool calls (max_tool_rounds=1); the model asked for more]\n")


def test_outside_a_kernel_a_confirm_tool_is_declined_with_the_reason(loopback: LoopbackServer) -> None:
    """The cell's sink outside a kernel, stdin no terminal: nobody can be asked, so the call is not
    run and the model is told why (a real kernel asks: test_approval.py)."""
    ran: list[str] = []

    def delete(path: str) -> str:
        """Delete a file."""
        ran.append(path)
        return "deleted"

    bot = make_bot(loopback, Tool(delete, confirm=True))
    loopback.queue(tool_calls=[{"name": "delete", "arguments": {"path": "/tmp/x"}}])
    loopback.queue(reply="Not deleted.")
    reply, area = ask_in_cell(bot, "Delete /tmp/x")
    assert ran == []
    (call,) = reply.calls
    assert (call.outcome, call.approved) == ("declined", False)
    assert call.result == ("Not run: it needs the user's approval and nobody could be asked (no approve= given "
                           "and no terminal).")
    assert area.outputs[0] == calls_bundle(reply.calls)


# -- the history -------------------------------------------------------------------------------------
def test_history_turns_group_calls_with_their_answer(loopback: LoopbackServer) -> None:
    bot = make_bot(loopback, weather, max_tool_rounds=1)
    loopback.queue(reply="Checking.", tool_calls=[{"name": "weather", "arguments": {"city": "Oslo"}}])
    loopback.queue(reply="Sunny.")
    first = bot.ask("One?", sink=NullSink())
    loopback.queue(tool_calls=[{"name": "weather", "arguments": {"city": "Lima"}}])
    loopback.queue(tool_calls=[{"name": "nope", "arguments": {}}])
    bot.ask("Two?", sink=NullSink())
    history = bot.history
    assert [m.role for m in history] == ["user", "assistant", "tool", "assistant", "user", "assistant", "tool",
                                         "assistant", "tool"]
    turns = tool_turns(history)
    assert [(message.role, [m.role for m in calls]) for message, calls in turns] == [
        ("user", []), ("assistant", ["assistant", "tool"]), ("user", []),
        ("tool", ["assistant", "tool", "assistant", "tool"])]
    rebuilt = calls_from_messages(turns[1][1])
    assert [(c.name, c.arguments, c.outcome, c.result, c.seconds) for c in rebuilt] == [
        ("weather", '{"city": "Oslo"}', "ok", "sunny in Oslo", None)]
    known = {call.id: call for call in first.calls}
    assert calls_from_messages(turns[1][1], known) == first.calls
    trailing = calls_from_messages(turns[3][1])
    assert [(c.name, c.outcome) for c in trailing] == [("weather", "ok"), ("nope", "skipped")]
    assert turn_html(turns[1][1], known) == "<p>Checking.</p>" + calls_html(first.calls)


# -- the panel ----------------------------------------------------------------------------------------
def test_the_panel_draws_calls_in_the_answer_bubble_not_as_bubbles(loopback: LoopbackServer) -> None:
    bot = make_bot(loopback, weather)
    panel = ChatPanel(bot, fetch_models=False)
    loopback.queue(tool_calls=[{"name": "weather", "arguments": {"city": "<img src=x onerror=alert(1)>"}}])
    loopback.queue(reply="Sunny.")
    panel.send("Weather?")
    panel.wait()
    reply = panel.last_reply
    assert reply is not None and reply.calls
    user, answer = panel.messages.children
    calls = bot.history[1:3]
    assert answer.value == bubble_html("assistant", "Sunny.", label="gpt-4o-mini",
                                       calls=turn_html(calls, {reply.calls[0].id: reply.calls[0]}))
    blocks = read_blocks(answer.value).blocks
    assert blocks[0]["sections"][0] == ["arguments", '{\n  "city": "<img src=x onerror=alert(1)>"\n}']
    assert "<img" not in answer.value.replace("&lt;img", "")
    streamed = panel.last_sink.bubble  # type: ignore[union-attr]
    assert [child.value for child in streamed.widget.children][1] == calls_html(reply.calls)
    panel.close()


def test_the_panel_marks_an_answer_that_ended_with_calls(loopback: LoopbackServer) -> None:
    bot = make_bot(loopback, weather, max_tool_rounds=1)
    panel = ChatPanel(bot, fetch_models=False)
    loopback.queue(tool_calls=[{"name": "weather", "arguments": {"city": "Oslo"}}])
    loopback.queue(tool_calls=[{"name": "weather", "arguments": {"city": "Lima"}}])
    panel.send("Weather?")
    panel.wait()
    reply = panel.last_reply
    assert reply is not None and reply.status == "tool_calls"
    user, answer = panel.messages.children
    known = {call.id: call for call in reply.calls}
    assert answer.value == bubble_html("assistant", "", status="tool_calls", label="gpt-4o-mini",
                                       calls=turn_html(bot.history[1:], known))
    assert html.escape(status_notice("tool_calls") or "") in answer.value
    streamed = panel.last_sink.bubble  # type: ignore[union-attr]
    assert streamed.widget.children[-1].value == f'<div class="llmchat-notice">{html.escape(status_notice("tool_calls") or "")}</div>'
    panel.close()


def test_answers_with_calls_asked_elsewhere_show_in_the_panel(loopback: LoopbackServer) -> None:
    bot = make_bot(loopback, weather)
    panel = ChatPanel(bot, fetch_models=False)
    loopback.queue(tool_calls=[{"name": "weather", "arguments": {"city": "Oslo"}}])
    loopback.queue(reply="Sunny.")
    reply = bot.ask("Weather?", sink=NullSink())  # as a %%chat cell of the same session would
    user, answer = panel.messages.children
    assert answer.value == bubble_html("assistant", "Sunny.", label="gpt-4o-mini",
                                       calls=turn_html(bot.history[1:3], {reply.calls[0].id: reply.calls[0]}))
    panel.close()


def approval_buttons(panel: ChatPanel) -> Any:
    """Wait until the streaming bubble shows Approve / Deny; return that widget."""
    deadline = time.monotonic() + 30
    while True:
        sink = panel.last_sink
        if sink is not None:
            found = [c for c in sink.bubble.widget.children if "llmchat-approval" in c._dom_classes]
            if found:
                return found[0]
        assert time.monotonic() < deadline, "no Approve / Deny shown"
        time.sleep(0.01)


def test_the_panel_asks_before_a_confirm_tool_runs(loopback: LoopbackServer) -> None:
    ran: list[str] = []

    def write_file(name: str) -> str:
        """Write a file."""
        ran.append(name)
        return f"wrote {name}"

    bot = make_bot(loopback, Tool(write_file, confirm=True))
    panel = ChatPanel(bot, fetch_models=False)
    # approve one call, deny the next: both in one round
    loopback.queue(tool_calls=[{"name": "write_file", "arguments": {"name": "a.txt"}},
                               {"name": "write_file", "arguments": {"name": "b.txt"}}])
    loopback.queue(reply="Wrote a.txt only.")
    panel.send("Write a.txt and b.txt")
    buttons = approval_buttons(panel)
    question, approve, deny = buttons.children
    calls_widget = panel.last_sink.bubble.widget.children[1]  # type: ignore[union-attr]
    blocks = read_blocks(calls_widget.value).blocks
    assert [(b["summary"].split(" · ")[-1], b["open"]) for b in blocks] == [("waiting for your approval", True)]
    assert (approve.description, deny.description) == ("Approve", "Deny")
    approve.click()
    while (second := approval_buttons(panel)) is buttons:
        time.sleep(0.01)
    second.children[2].click()
    panel.wait()
    reply = panel.last_reply
    assert reply is not None
    assert [(c.outcome, c.approved, c.result) for c in reply.calls] == [
        ("ok", True, "wrote a.txt"), ("declined", False, DECLINED)]
    assert ran == ["a.txt"]
    tool_messages = [m for m in loopback.requests[-1].body["messages"] if m["role"] == "tool"]
    assert [m["content"] for m in tool_messages] == ["wrote a.txt", DECLINED]
    states = [b["summary"].split(" · ")[-1] for b in read_blocks(panel.messages.children[-1].value).blocks]
    assert states[0].startswith("approved, done in ") and states[1] == "declined"
    assert all("llmchat-approval" not in c._dom_classes for c in panel.last_sink.bubble.widget.children)  # type: ignore[union-attr]
    panel.close()


def test_stop_during_approval_ends_the_answer_at_once(loopback: LoopbackServer) -> None:
    ran: list[str] = []

    def write_file(name: str) -> str:
        """Write a file."""
        ran.append(name)
        return "wrote"

    bot = make_bot(loopback, Tool(write_file, confirm=True))
    panel = ChatPanel(bot, fetch_models=False)
    loopback.queue(tool_calls=[{"name": "write_file", "arguments": {"name": "a.txt"}}])
    panel.send("Write a.txt")
    approval_buttons(panel)
    requests = len(loopback.requests)
    stopper = threading.Thread(target=panel.stop)
    stopper.start()
    stopper.join()
    panel.wait(30)
    assert not panel.busy
    reply = panel.last_reply
    assert reply is not None and reply.status == "interrupted"
    assert [(c.outcome, c.error) for c in reply.calls] == [
        ("stopped", "stopped by the user while it waited for the user's approval")]
    assert ran == [] and len(loopback.requests) == requests  # nothing run, nothing more asked
    assert html.escape(status_notice("interrupted", has_text=False) or "") in panel.messages.children[-1].value
    panel.close()
