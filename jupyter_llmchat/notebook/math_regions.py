"""Where JupyterLab and Notebook 7 take math out of a Markdown text before parsing it.

A port of ``removeMath`` from ``@jupyterlab/rendermime`` (latex.ts, JupyterLab 4): before marked
parses a Markdown output, the front end cuts out every ``$...$``, ``$$...$$``, ``\\\\(...\\\\)``,
``\\\\[...\\\\]`` and ``\\begin{env}...\\end{env}`` it finds (never across a blank line, braces
balanced), except dollars inside code it recognizes by its own regexes, and pastes them back,
HTML-escaped, into the rendered HTML. ``safe_markdown`` uses it to check that no such cut starts
inside code and ends outside it: marked would then see the code's other backtick run alone, and
the code's text as Markdown. Pure string functions.
"""

from __future__ import annotations

import re

__all__ = ["math_regions"]

# removeMath's MATHSPLIT: the tokens it looks at (the rest is text)
_SPLIT = re.compile(r"(\$\$?|\\(?:begin|end)\{[a-z]*\*?\}|\\[{}$]|[{}]|(?:\n\s*)+|@@\d+@@|\\\\[()[\]])", re.I)
# the code whose dollars it protects: fenced blocks at column 0, one-line code spans
_FENCED = re.compile(r"^(?P<fence>`{3,}|~{3,})[^`\n]*\n[\s\S]*?^(?P=fence)`*$", re.M)
_SPAN = re.compile(r"(^|[^\\])(`+)([^\n]*?[^`\n])\2(?!`)", re.M)
_HIDDEN_DOLLAR = "\x01"  # a protected dollar: not a token


def math_regions(text: str) -> list[tuple[int, int]]:
    """The ``(start, end)`` offsets of every stretch of ``text`` JupyterLab takes out as math."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")  # same length only if no \r: callers pass none
    if "`" in text or "~~~" in text:
        chars = list(text)
        for pattern in (_FENCED, _SPAN):
            for m in pattern.finditer(text):
                for i in range(m.start(), m.end()):
                    if chars[i] == "$":
                        chars[i] = _HIDDEN_DOLLAR
        text = "".join(chars)
    blocks = _SPLIT.split(text)
    starts = []
    offset = 0
    for block in blocks:
        starts.append(offset)
        offset += len(block)
    starts.append(offset)
    regions: list[tuple[int, int]] = []
    start: int | None = None
    end: str | None = None
    last: int | None = None
    braces = 0
    i = 1
    while i < len(blocks):
        block = blocks[i]
        if block.startswith("@"):
            pass  # its own placeholder syntax: kept aside and put back as it was
        elif start is not None:
            if block == end:
                if braces:
                    last = i
                else:
                    regions.append((starts[start], starts[i + 1]))
                    start = end = last = None
            elif re.search(r"\n.*\n", block):
                if last is not None:
                    i = last
                    regions.append((starts[start], starts[i + 1]))
                start = end = last = None
                braces = 0
            elif block == "{":
                braces += 1
            elif block == "}" and braces:
                braces -= 1
        elif block in ("$", "$$"):
            start, end, braces = i, block, 0
        elif block in ("\\\\(", "\\\\["):
            start, end, braces = i, "\\\\)" if block.endswith("(") else "\\\\]", 0
        elif block[1:6] == "begin":
            start, end, braces = i, "\\end" + block[6:], 0
        i += 2
    if start is not None and last is not None:
        regions.append((starts[start], starts[last + 1]))
    return regions
