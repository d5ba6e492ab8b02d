"""Reply notices, the plain-text sink, and what every streaming sink shares (LiveSink)."""

from __future__ import annotations

import io
import threading

import pytest

from jupyter_llmchat.core.reply import LiveSink, NullSink, PrintSink, Reply, ReplySink, Usage


class FakeClock:
    def __init__(self) -> None:
        self.now = 10.0

    def __call__(self) -> float:
        return self.now


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
    assert Reply("x", "m", status="truncated").notice == "answer truncated: it reached max_tokens (finish_reason=length)"
    assert Reply("x", "m", status="filtered").notice == (
        "answer stopped by the provider's content filter (finish_reason=content_filter)")
    assert Reply("x", "m", status="interrupted").notice == "answer interrupted: partial text kept"
    assert Reply("", "m", status="failed", error="boom").notice == "request failed: boom"
    assert Reply("", "m", status="tool_calls", error="no tools were given").notice == (
        "answer ended with tool calls that were not run (finish_reason=tool_calls): no tools were given")


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
    out, clock = CountingStream(), FakeClock()
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
