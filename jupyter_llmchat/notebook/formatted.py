"""A sink for answers shown transformed once complete: ``%%chat --json`` and ``-f code``.

While the answer streams, its raw text is shown (at most ``UPDATES_PER_SECOND`` repaints); at
the end the same output is replaced by the formatted result: indented JSON, or the answer's
first code block as code. Outside a kernel (terminal IPython) only the result is printed.
"""

from __future__ import annotations

import json
import re
import sys
import time
from typing import Any

from ..core.reply import Reply

UPDATES_PER_SECOND = 10
_FENCE = "```"
CODE_FENCE = re.compile(r"^[ \t]*(`{3,}|~{3,})[ \t]*([\w+#.-]*)[^\n]*\n(.*?)^[ \t]*\1[ \t]*$",
                        re.DOTALL | re.MULTILINE)


class FormattedSink:
    """ReplySink that ends with a formatted display (``kind`` is "json" or "code")."""

    def __init__(self, kind: str, *, in_kernel: bool = True, footer: bool = True) -> None:
        if kind not in ("json", "code"):
            raise ValueError(f"kind must be 'json' or 'code', got {kind!r}")
        self.kind = kind
        self.in_kernel = in_kernel
        self.footer = footer
        self.parts: list[str] = []
        self._handle: Any = None
        self._last = 0.0

    def start(self, model: str) -> None:
        if self.in_kernel:
            from IPython.display import display

            self._handle = display({"text/plain": "…"}, raw=True, display_id=True)
            self._last = time.monotonic()

    def write(self, text: str) -> None:
        self.parts.append(text)
        now = time.monotonic()
        if self._handle is not None and now - self._last >= 1 / UPDATES_PER_SECOND:
            self._last = now
            self._handle.update({"text/plain": "".join(self.parts)}, raw=True)

    def finish(self, reply: Reply) -> None:
        from .display import footer_markdown

        bundle, note = format_answer(reply.text, self.kind)
        if self._handle is not None:
            self._handle.update(bundle, raw=True)
        elif reply.text:
            print(bundle["text/plain"])
        if note:
            print(f"[{note}]", file=sys.stdout)
        footer = footer_markdown(reply, facts=self.footer)  # the renderer's footer: same look
        if footer is not None:
            if self._handle is not None:
                from IPython.display import display

                display({"text/markdown": footer[0], "text/plain": footer[1]}, raw=True)
            else:
                print(footer[1])


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
    """(language, code) of the first fenced code block in ``text``, or None."""
    match = CODE_FENCE.search(text)
    if match is None:
        return None
    return match.group(2), match.group(3).rstrip("\n")


def _markdown(text: str) -> dict[str, Any]:
    return {"text/plain": text, "text/markdown": text}


def _longest_backtick_run(text: str) -> int:
    longest = run = 0
    for char in text:
        run = run + 1 if char == "`" else 0
        longest = max(longest, run)
    return longest
