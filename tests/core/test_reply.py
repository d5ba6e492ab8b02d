"""Reply notices and the plain-text sinks."""

from __future__ import annotations

import io

from jupyter_llmchat.core.reply import NullSink, PrintSink, Reply, ReplySink, Usage


def test_notices_name_what_happened():
    assert Reply("x", "m").notice is None
    assert "max_tokens" in Reply("x", "m", status="truncated").notice
    assert "content filter" in Reply("x", "m", status="filtered").notice
    assert Reply("x", "m", status="interrupted").notice == "answer interrupted: partial text kept"
    assert Reply("", "m", status="failed", error="boom").notice == "request failed: boom"


def test_print_sink_writes_plain_text_and_marks_partial_answers():
    out = io.StringIO()
    sink = PrintSink(out)
    assert isinstance(sink, ReplySink) and isinstance(NullSink(), ReplySink)
    sink.start("gpt-4o")
    for piece in ["Hello", ", ", "world"]:
        sink.write(piece)
    sink.finish(Reply("Hello, world", "gpt-4o", status="interrupted"))
    assert out.getvalue() == "Hello, world\n[answer interrupted: partial text kept]\n"


def test_usage_total():
    assert Usage(10, 5, 3).total_tokens == 15


def test_print_sink_flushes_on_an_interval_not_per_token():
    class CountingStream(io.StringIO):
        flushes = 0

        def flush(self) -> None:
            self.flushes += 1

    out = CountingStream()
    sink = PrintSink(out, flush_interval=3600)
    for _ in range(1000):
        sink.write("tok ")
    sink.finish(Reply("tok " * 1000, "m"))
    assert out.flushes == 2  # the first write, then the end
    assert out.getvalue() == "tok " * 1000 + "\n"
