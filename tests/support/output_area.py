"""A front end's output area and a cell the sink owns, faked for the Markdown sink's tests: the
sink's publisher and its cell, as the kernel and ``cell_watch.CellWatch`` give them in a ``%%chat`` cell."""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any


class FakeCell:
    """A cell the sink owns (what ``cell_watch.CellWatch`` says in a ``%%chat`` cell)."""

    def __init__(self, *, alone: bool = True) -> None:
        self.alone = alone
        self.claimed: list[str] = []

    def claim(self, prefix: str) -> None:
        self.claimed.append(prefix)

    def ours(self) -> Any:
        return nullcontext()

    def only_ours(self) -> bool:
        return self.alone


@dataclass
class OutputArea:
    """Applies display messages like a front end (``clear_output(wait=True)`` clears when the next
    output arrives, in the same step); keeps every message and what is shown after each (frames)."""

    outputs: list[dict[str, str]] = field(default_factory=list)
    ids: dict[str, int] = field(default_factory=dict)
    messages: list[tuple[str, dict[str, str], bool]] = field(default_factory=list)
    frames: list[list[dict[str, str]]] = field(default_factory=list)
    fail_on: int | None = None  # raise KeyboardInterrupt on this message (a Ctrl-C mid-send)
    clear_next: bool = False

    def show(self, display_id: str, data: dict[str, str], *, update: bool) -> None:
        if self.fail_on is not None and len(self.messages) == self.fail_on:
            self.fail_on = None
            raise KeyboardInterrupt
        self.messages.append((display_id, dict(data), update))
        if not update:
            if self.clear_next:
                self.outputs, self.ids, self.clear_next = [], {}, False
            self.ids[display_id] = len(self.outputs)
            self.outputs.append(dict(data))
        elif display_id in self.ids:
            self.outputs[self.ids[display_id]] = dict(data)
        self.frames.append([dict(o) for o in self.outputs])

    def clear(self, *, wait: bool) -> None:
        self.messages.append(("clear", {}, wait))
        if wait:
            self.clear_next = True
        else:
            self.outputs, self.ids = [], {}
            self.frames.append([])

    def visible(self) -> list[dict[str, str]]:
        return [o for o in self.outputs if o]
