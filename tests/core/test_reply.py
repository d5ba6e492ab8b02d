"""Reply notices, the plain-text sink, and what every streaming sink shares (LiveSink)."""

from __future__ import annotations

import io
import threading

import pytest
from support.fake_clock import FakeClock

from jupyter_llmchat.core.reply import (
    STATUS_NOTICES,
    LiveSink,
    NullSink,
    PrintSink,
    Reply,
    ReplySink,
    ToolCall,
    Usage,
    status_notice,
    truncated_notice,
)


class CountingStream(io.StringIO):
    """Counts flushes; records what had been written at each one."""

    def __init__(self) -> None:
        super().__init__()
        self.flushed: list[str] = []
        self.event = threading.Event()

    def flush(self) -> None:
        self.flushed.append(self.getvalue())
        self.event.set()


def test_notices_name_what_happened() -> None:
    assert Reply("x", "m").notice is None
    assert Reply("x", "m", status="truncated").notice == (  # the request unknown: true whatever it was
        "answer truncated: it reached an output token limit (finish_reason=length)")
    assert Reply("x", "m", status="filtered").notice == (
        "answer stopped by the provider's content filter (finish_reason=content_filter)")
    assert Reply("x", "m", status="interrupted").notice == "answer interrupted: partial text kept"
    assert Reply("", "m", status="failed", error="boom").notice == "request failed: boom"
    assert Reply("", "m", status="tool_calls", error="no tools were given").notice == (
        "answer ended with tool calls that were not run (finish_reason=tool_calls): no tools were given")


def test_a_truncated_answer_names_the_limit_it_reached() -> None:
    def cut(params: dict, usage: Usage | None = None, rounds: int = 1) -> str | None:
        return Reply("x", "m", status="truncated", finish_reason="length", usage=usage, rounds=rounds,
                     request={"model": "m", "params": params}).notice

    assert cut({"max_tokens": 1500}) == "answer truncated: it reached max_tokens=1,500 (finish_reason=length)"
    assert cut({"max_completion_tokens": 200}) == "answer truncated: it reached max_tokens=200 (finish_reason=length)"
    assert cut({"temperature": 0.2}) == cut({}) == (
        "answer truncated: it reached the model's or the server's output limit; max_tokens was not set "
        "(finish_reason=length)")
    # max_tokens was set but the endpoint counted fewer answer tokens: another limit cut it first.
    assert cut({"max_tokens": 500}, Usage(10, 120)) == (
        "answer truncated: it reached the model's or the server's output limit before max_tokens=500 "
        "(finish_reason=length)")
    assert cut({"max_tokens": 500}, Usage(10, 500)) == cut({"max_tokens": 500})
    # our own count, or a count summed over tool rounds, says nothing of the last request's cut
    assert cut({"max_tokens": 500}, Usage(10, 120, source="counted")) == cut({"max_tokens": 500})
    assert cut({"max_tokens": 500}, Usage(10, 120), rounds=2) == cut({"max_tokens": 500})
    assert status_notice("truncated") == STATUS_NOTICES["truncated"]
    assert status_notice("interrupted") == "answer interrupted: partial text kept"
    assert status_notice("interrupted", has_text=False) == "answer interrupted before any text"
    assert status_notice("truncated", params={"max_tokens": 7}) == truncated_notice(7)
    assert status_notice("filtered", params={}) == STATUS_NOTICES["filtered"]  # only "truncated" depends on it


def test_the_repr_is_one_short_line_of_text() -> None:
    reply = Reply("The answer is **42**.", "gpt-4o-mini", finish_reason="stop", usage=Usage(12, 42), cost=0.000123,
                  request={"model": "gpt-4o-mini", "params": {"temperature": 0}})
    assert repr(reply) == "<Reply gpt-4o-mini complete, 42 tokens, $0.00012: 'The answer is **42**.'>"
    assert str(reply) == repr(reply)
    long = Reply("line one\nline 'two' \x1b[31m" + "x" * 100, "m", status="truncated")
    assert repr(long) == '<Reply m truncated: "line one\\nline \'two\' \\x1b[31m' + "x" * 35 + '"…>'  # 60 characters
    # A model name from the endpoint is escaped unless it is a plain name.
    assert repr(Reply("", "evil\n<b>model</b>", status="interrupted")) == (
        "<Reply 'evil\\n<b>model</b>' interrupted: ''>")
    assert repr(Reply("hi", "llama3.1:8b-instruct", from_cache=True, cost=0.0)) == (
        "<Reply llama3.1:8b-instruct complete, from cache: 'hi'>")
    calls = [ToolCall("c1", "f", "{}", outcome="ok"), ToolCall("c2", "g", "{}", outcome="ok")]
    assert repr(Reply("done", "m", calls=calls, rounds=2, parsed={"a": 1})) == (
        "<Reply m complete, 2 tool calls, parsed dict: 'done'>")
    assert repr(Reply("", "m", refusal="I can't help with that.")) == (
        "<Reply m complete: refusal \"I can't help with that.\">")


def test_the_repr_never_shows_the_request_or_a_key() -> None:
    key = "sk-test-DO-NOT-LEAK-4f9a2c"
    reply = Reply("ok", "m", request={"model": "m", "params": {"extra_headers": {"Authorization": f"Bearer {key}"}}},
                  logprobs=[{"token": "ok", "logprob": 0.0, "top_logprobs": []}], system_fingerprint="fp_1")
    assert repr(reply) == "<Reply m complete: 'ok'>" and key not in str(reply)


def test_usage_total() -> None:
    assert Usage(10, 5, 3).total_tokens == 15


def test_print_sink_writes_plain_text_and_marks_partial_answers() -> None:
    out = io.StringIO()
    with PrintSink(out) as sink:
        assert isinstance(sink, ReplySink) and isinstance(NullSink(), ReplySink)
        sink.start("gpt-4o")
        for piece in ["Hello", ", ", "world"]:
            sink.write(piece)
        sink.finish(Reply("Hello, world", "gpt-4o", status="interrupted"))
    assert out.getvalue() == "Hello, world\n[answer interrupted: partial text kept]\n"


def test_print_sink_flushes_on_the_repaint_policy_not_per_token() -> None:
    out, clock = CountingStream(), FakeClock(10.0)
    sink = PrintSink(out, interval=0.1, trailing=False, clock=clock)
    sink.start("m")
    for _ in range(1000):  # 1,000 tokens over 2 s: one flush per 0.1 s
        sink.write("tok ")
        clock.now += 0.002
    assert len(out.flushed) == 20
    assert out.flushed[0] == "tok " and out.flushed[1] == "tok " * 51
    sink.finish(Reply("tok " * 1000, "m"))
    assert out.getvalue() == "tok " * 1000 + "\n"
    assert len(out.flushed) == 21  # and once at the end


def test_print_sink_shows_a_stalled_stream_within_an_interval() -> None:
    """The writer stops after text that was not due yet: the repainter's thread writes it."""
    out = CountingStream()
    with PrintSink(out, interval=0.05) as sink:
        sink.start("m")
        sink.write("first")  # shown at once
        out.event.clear()
        sink.write(" second")  # not due: left for the helper thread
        assert out.event.wait(timeout=30)
        assert out.getvalue() == "first second"
        sink.finish(Reply("first second", "m"))
    assert out.getvalue() == "first second\n"


def test_leaving_the_with_block_stops_the_thread_even_without_finish() -> None:
    with PrintSink(io.StringIO(), interval=0.05) as sink:
        sink.start("m")
        thread = sink._repainter._thread
        assert thread is not None and thread.is_alive()
    thread.join(timeout=30)
    assert not thread.is_alive() and sink._repainter._thread is None
    sink.close()  # idempotent
    sink.finish(Reply("", "m"))  # and finish after close still shows the end, once
    sink.finish(Reply("", "m"))


def test_finish_stops_the_thread_and_runs_once() -> None:
    out = io.StringIO()
    sink = PrintSink(out, interval=0.05)
    sink.start("m")
    sink.write("x")
    thread = sink._repainter._thread
    sink.finish(Reply("x", "m"))
    sink.finish(Reply("x", "m"))
    assert thread is not None and not thread.is_alive()
    assert out.getvalue() == "x\n"
    sink.start("m")  # a late start does not bring the thread back
    assert sink._repainter._thread is None


def test_live_sink_needs_a_paint_and_a_final_display() -> None:
    sink = LiveSink(trailing=False)
    with pytest.raises(NotImplementedError):
        sink.write("x")
    with pytest.raises(NotImplementedError):
        sink.finish(Reply("x", "m"))


def test_null_sink_is_a_context_manager_that_discards() -> None:
    with NullSink() as sink:
        sink.start("m")
        sink.write("x")
        sink.finish(Reply("x", "m"))
    sink.close()


def test_default_sink_is_plain_text_unless_a_hook_says_otherwise() -> None:
    """Chatbot.ask without a sink asks default_sink(); the top-level package installs the hook that
    gives live Markdown in a kernel (and None, plain text, anywhere else: as here)."""
    from jupyter_llmchat.core import reply

    assert isinstance(reply.default_sink(), PrintSink)  # jupyter_llmchat's hook: not in a kernel
    saved = reply._default_sink_hook
    try:
        chosen = NullSink()
        reply.set_default_sink_hook(lambda: chosen)
        assert reply.default_sink() is chosen
        reply.set_default_sink_hook(lambda: None)
        assert isinstance(reply.default_sink(), PrintSink)
        reply.set_default_sink_hook(None)
        assert isinstance(reply.default_sink(), PrintSink)
    finally:
        reply.set_default_sink_hook(saved)


def test_a_cell_ending_in_a_reply_shows_its_repr_as_plain_text_only() -> None:
    from IPython.core.formatters import DisplayFormatter  # what a kernel uses for a cell's last value

    reply = Reply("<b>bold</b> $x$", "gpt-4o", usage=Usage(1, 2), cost=0.00002)
    assert DisplayFormatter().format(reply) == ({"text/plain": "<Reply gpt-4o complete, 2 tokens, $0.000020: "
                                                               "'<b>bold</b> $x$'>"}, {})
