"""A sink for answers shown transformed once complete: ``%%chat --json`` and ``-f code``.

While the answer streams, its raw text is shown on the repaint policy of every view (the
``LiveSink``'s ``Repainter``: at most every interval, and once more when the stream stalls); at the
end the same output is replaced by the formatted result: indented JSON, or the answer's first
code block as code (found by ``markdown_blocks``, the one Markdown parser), and the footer every
view shows. With ``code_cells``, ``-f code`` also puts the code into the cell below (the first
run adds that cell, a re-run replaces its code: ``code_cell``). Outside a kernel (terminal
IPython) only the result is printed.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from typing import Any

from ..core.repaint import DEFAULT_INTERVAL
from ..core.reply import LiveSink, Reply
from .code_cell import CodeCells
from .footer import footer_markdown
from .markdown_blocks import fenced_blocks
from .publish import Bundle, DisplayPublisher, IPythonPublisher, updates_shown
from .safe_markdown import safe_markdown

__all__ = ["FormattedSink", "first_code_block", "format_answer"]

_FENCE = "```"


class FormattedSink(LiveSink):
    """ReplySink that ends with a formatted display (``kind`` is "json" or "code")."""

    def __init__(self, kind: str, *, in_kernel: bool = True, footer: bool = True,
                 interval: float = DEFAULT_INTERVAL, trailing: bool = True,
                 publisher: DisplayPublisher | None = None, code_cells: CodeCells | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if kind not in ("json", "code"):
            raise ValueError(f"kind must be 'json' or 'code', got {kind!r}")
        super().__init__(interval=interval, trailing=trailing and in_kernel, clock=clock)
        self.kind = kind
        self.in_kernel = in_kernel
        self.footer = footer
        self.code_cells = code_cells
        self._publisher = publisher
        self._id = f"llmchat-{uuid.uuid4().hex[:10]}"
        self._shown: Bundle | None = None  # what the answer's output shows (None: not created)
        self._updates: bool | None = None  # updates reach the screen (None: not asked yet)

    def _show_start(self, model: str) -> None:
        if self._live():
            self._show({"text/plain": "…"})

    def _paint(self) -> None:
        self._collect()
        if self._live() and not self._finished:
            self._show({"text/plain": self._text})

    def _live(self) -> bool:
        """Whether the raw text streams live (in a kernel, not inside an ipywidgets Output)."""
        if self._updates is None:
            self._updates = self.in_kernel and updates_shown(self._get_publisher())
        return self._updates

    def _show_final(self, reply: Reply) -> None:
        bundle, note = format_answer(reply.text, self.kind)
        script = self._put_code(reply)
        if self.in_kernel:
            if script is not None and footer_markdown(reply, facts=self.footer) is None:
                self._show({"application/javascript": script})  # no footer to run it in: this output
            self._show(bundle)
        elif reply.text:
            print(bundle["text/plain"])
        if note:
            print(f"[{note}]")
        footer = footer_markdown(reply, facts=self.footer)  # the one footer: the cell's look
        if footer is not None:
            if self.in_kernel:
                footer_id, footer_data = f"{self._id}-footer", {"text/markdown": footer[0], "text/plain": footer[1]}
                if script is not None:  # the script runs as the output appears, then it is the footer
                    self._publish(footer_id, {"application/javascript": script}, update=False)
                self._publish(footer_id, footer_data, update=script is not None)
            else:
                print(footer[1])

    def _put_code(self, reply: Reply) -> str | None:
        """``-f code``: put the answer's code into the cell below; a script to run in the page, if any."""
        if self.kind != "code" or self.code_cells is None or reply.status == "failed":
            return None
        block = first_code_block(reply.text)
        if block is None:
            return None
        from IPython import get_ipython

        shell = get_ipython()
        return self.code_cells.put(shell, block[1]) if shell is not None else None

    def _show(self, data: Bundle) -> None:
        if data != self._shown:
            created = self._shown is not None
            self._shown = data
            self._publish(self._id, data, update=created)

    def _publish(self, display_id: str, data: Bundle, *, update: bool) -> None:
        if "text/markdown" in data:  # every Markdown we publish is display-safe
            data = {**data, "text/markdown": safe_markdown(data["text/markdown"])}
        self._get_publisher().show(display_id, data, update=update)

    def _get_publisher(self) -> DisplayPublisher:
        if self._publisher is None:
            self._publisher = IPythonPublisher()
        return self._publisher


def format_answer(text: str, kind: str) -> tuple[dict[str, Any], str | None]:
    """(display bundle, note or None) for an answer shown as ``kind``."""
    if kind == "json":
        try:
            value = json.loads(text)
        except json.JSONDecodeError as error:
            return _markdown(text), f"the answer is not valid JSON ({error.msg} at line {error.lineno}): " \
                                    "shown as received"
        pretty = json.dumps(value, indent=2, ensure_ascii=False)
        return {"text/plain": pretty, "text/markdown": f"{_FENCE}json\n{pretty}\n{_FENCE}"}, None
    block = first_code_block(text)
    if block is None:
        return _markdown(text), "no code block in the answer: the next cell was left alone"
    language, code = block
    fence = "`" * max(3, _longest_backtick_run(code) + 1)
    return {"text/plain": code, "text/markdown": f"{fence}{language or 'python'}\n{code}\n{fence}"}, None


def first_code_block(text: str) -> tuple[str, str] | None:
    """(language, code) of the first complete fenced code block in ``text`` (in a list item or a
    quote too, its indentation removed as a front end shows it), or None."""
    for block in fenced_blocks(text):
        if block.complete:
            return block.language, block.code.rstrip("\n")
    return None


def _markdown(text: str) -> dict[str, Any]:
    return {"text/plain": text, "text/markdown": text}


def _longest_backtick_run(text: str) -> int:
    longest = run = 0
    for char in text:
        run = run + 1 if char == "`" else 0
        longest = max(longest, run)
    return longest
