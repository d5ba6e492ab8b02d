"""CellTextSink: -f text in a cell the magic owns ends as one stream output (the real kernel and
nbclient run is in test_display.test_notebook_saved_by_nbclient_holds_exactly_the_answer)."""

from __future__ import annotations

import io
from contextlib import nullcontext
from typing import Any

from support.fake_clock import FakeClock

from jupyter_llmchat.core.reply import Reply
from jupyter_llmchat.notebook.plain_text import CellTextSink


class Cell:
    def __init__(self, *, alone: bool) -> None:
        self.alone = alone
        self.ours_entered = 0

    def ours(self) -> Any:
        self.ours_entered += 1
        return nullcontext()

    def only_ours(self) -> bool:
        return self.alone


class Stream(io.StringIO):
    """Records each flush as one message, and a clear as the front end does it (on the next output)."""

    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []
        self.sent = 0

    def flush(self) -> None:
        text = self.getvalue()[self.sent:]
        if text:
            self.messages.append(text)
            self.sent = len(self.getvalue())

    def clear(self, *, wait: bool) -> None:
        self.messages.append(f"<clear wait={wait}>")


def run(text: str, cell: Cell, *, writes: int) -> Stream:
    stream, clock = Stream(), FakeClock(10.0)
    sink = CellTextSink(cell, stream, interval=0.1, trailing=False, publisher=stream, clock=clock)  # type: ignore[arg-type]
    sink.start("m")
    size = max(1, len(text) // writes)
    for i in range(0, len(text), size):
        sink.write(text[i:i + size])
        clock.now += 0.2
    sink.finish(Reply(text=text, model="m"))
    return stream


def test_many_flushes_end_as_one_message_after_a_clear() -> None:
    stream = run("one two three four five", Cell(alone=True), writes=5)
    assert stream.messages[-2:] == ["<clear wait=True>", "one two three four five\n"]
    assert len(stream.messages) > 3  # it streamed in pieces first


def test_nothing_is_cleared_when_the_cell_holds_other_outputs_or_nothing_streamed_before() -> None:
    crowded = run("one two three four five", Cell(alone=False), writes=5)
    assert "<clear wait=True>" not in crowded.messages and "".join(crowded.messages) == "one two three four five\n"
    single = run("short", Cell(alone=True), writes=1)  # the first paint sent "short", the end its newline
    assert single.messages == ["short", "<clear wait=True>", "short\n"]
    stream, clock = Stream(), FakeClock(10.0)
    sink = CellTextSink(Cell(alone=True), stream, trailing=False, publisher=stream, clock=clock)  # type: ignore[arg-type]
    sink.finish(Reply(text="", model="m", status="interrupted"))  # nothing streamed: nothing to replace
    assert stream.messages == ["[answer interrupted before any text]\n"]


def test_its_writes_are_the_cells_own() -> None:
    cell = Cell(alone=True)
    run("one two three", cell, writes=3)
    assert cell.ours_entered >= 3  # every paint and the end wrote inside cell.ours()
