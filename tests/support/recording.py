"""A ReplySink that keeps every call, for tests that compare what streamed with what returned."""

from __future__ import annotations

from jupyter_llmchat.core.reply import Reply


class RecordingSink:
    """Records start/write/finish; ``interrupt_after`` N writes raises KeyboardInterrupt, which
    is what a kernel interrupt looks like inside the stream."""

    def __init__(self, interrupt_after: int | None = None) -> None:
        self.started: list[str] = []
        self.deltas: list[str] = []
        self.finished: list[Reply] = []
        self.interrupt_after = interrupt_after

    def start(self, model: str) -> None:
        self.started.append(model)

    def write(self, text: str) -> None:
        self.deltas.append(text)
        if self.interrupt_after is not None and len(self.deltas) >= self.interrupt_after:
            raise KeyboardInterrupt

    def finish(self, reply: Reply) -> None:
        self.finished.append(reply)
