"""Display-safe Markdown: how every Markdown output of ours shows text a model or an endpoint wrote.

JupyterLab and Notebook 7 render the Markdown outputs of cells run in the session as *trusted*
HTML, without their sanitizer: an answer holding ``<img src=x onerror=...>`` would run script in
the Jupyter origin, which can drive the kernel. ``safe_markdown`` rewrites such text so that marked
(the front ends' GFM parser, after JupyterLab takes math out) and CommonMark parsers render it with
no live HTML, links only to http(s) and mailto (and data:image for images), and currency dollars
as dollars while real math still typesets:

- Raw HTML shows as text: every ``<`` outside code becomes ``&lt;`` (``\\lt`` inside math), except
  an ``<https://...>``/``<mailto:...>`` autolink and the plain tags ``<br>``, ``<sub>``, ``<sup>``
  where they cannot start an HTML block.
- Code stays exact where its extent is certain. A fenced block is kept when no parser can read
  its lines otherwise (its info string cut to the language word, which JupyterLab puts into an
  attribute unescaped). A code span is kept when it pairs the same in every parse of its line:
  not across a table cell boundary, no backtick a link destination, bare URL or strikethrough
  could take, no JupyterLab math cut across it. Any other backtick run is backslash-escaped, and a
  region whose kind is uncertain is treated as text (a stray ``&lt;`` in a rare code block is
  cosmetic; live HTML is not).
- A link, image or reference definition whose destination does not start, plainly written, with
  ``http://``, ``https://`` or ``mailto:`` (``data:image/...`` for an image) shows as text; so does a
  definition whose label holds a backtick, and a bare ``ftp://``.
- Math: ``$...$`` pairs that read as math (pandoc's rule: no space inside the dollars, no digit
  after the closing one), ``$$...$$``, ``\\begin{env}...\\end{env}`` stay; a model's one-backslash
  ``\\(...\\)`` and ``\\[...\\]`` get the second backslash JupyterLab looks for; every other dollar
  becomes ``\\\\$``, which MathJax shows as ``$``; TeX commands that link or load (``\\href``,
  ``\\url``, ``\\require``, ...) are disarmed.
The exact text stays in the conversation, the store and ``text/plain``. Pure string functions.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .markdown_blocks import FencedBlock, fenced_blocks
from .math_regions import math_regions

__all__ = ["allowed_destination", "safe_bundle", "safe_markdown"]

_LINK = re.compile(r"(?:https?://|mailto:)", re.I)
_IMAGE_DATA = re.compile(r"data:image/(?:png|jpe?g|gif|webp|bmp|avif)[;,]", re.I)
_AUTOLINK = re.compile(r"<(?:https?://|mailto:)[^\s<>`\x00-\x1f\x7f]*>", re.I)
_PLAIN_TAG = re.compile(r"<(?:br ?/?|/?sub|/?sup)>")
_URLISH = re.compile(r"(?:https?://|ftp://|www\.)\S*", re.I)
_RUN = re.compile(r"`+")
_CONTENT_START = re.compile(r"[ \t>]*(?:(?:[-+*]|\d{1,9}[.)])(?:[ \t]+[ \t>]*|$))*")
_TILDE_FENCE = re.compile(r"[ \t>]*(?:(?:[-+*]|\d{1,9}[.)])[ \t]+[ \t>]*)*(~{3})")
_BEGIN = re.compile(r"begin\{([a-z]*\*?)\}")  # removeMath starts math only at lowercase \begin
_LINKING_TEX = re.compile(r"(?:href|url|require|style|class|cssId|data|mmlToken|unicode)(?![A-Za-z])")
_INFO_WORD = re.compile(r"[A-Za-z0-9_+#.\-]*")
_TEXY = re.compile(r"[\\^_{}=]")


def allowed_destination(destination: str, *, image: bool = False) -> bool:
    """Whether a link (or, with ``image``, an image) may point at ``destination`` as written in
    Markdown: it must start, after spaces, tabs or one line break, with ``http://``, ``https://``
    or ``mailto:`` (``data:image/png|jpeg|gif|webp|bmp|avif`` for images) written plainly. A scheme
    spelled with entities, escapes or characters a browser strips (``jav&#x61;script:``,
    ``java\\tscript:``) is refused, whatever it decodes to."""
    rest = destination.lstrip(" \t")
    if rest.startswith("\n"):
        rest = rest[1:].lstrip(" \t")
    if rest.startswith("<"):
        return bool(_AUTOLINK.match(rest))  # an angle destination is kept only as a plain autolink
    return bool(_LINK.match(rest) or (image and _IMAGE_DATA.match(rest)))


def safe_markdown(text: str) -> str:
    """``text`` (Markdown a model wrote) as Markdown that front ends show without live HTML or
    dangerous links, currency dollars as dollars; see the module docstring for the rules."""
    if not text:
        return text
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "\ufffd")
    forced: set[tuple[int, int]] = set()  # code spans found to be cut by JupyterLab's math: text
    dropped: set[int] = set()  # fenced blocks found to be cut by it: text
    while True:
        rendered = _Rendering(text, forced, dropped)
        crossed = rendered.crossed(math_regions(rendered.output))
        if not crossed:
            return rendered.output
        for key in crossed:
            if isinstance(key, int):
                dropped.add(key)
            else:
                forced.add(key)


def safe_bundle(data: dict[str, Any]) -> dict[str, Any]:
    """A display bundle with its ``text/markdown`` made display-safe (the rest as it is)."""
    markdown = data.get("text/markdown")
    if not isinstance(markdown, str) or not markdown:
        return data
    return {**data, "text/markdown": safe_markdown(markdown)}


# -- small helpers ---------------------------------------------------------------------------------
def _backslashes(s: str, i: int) -> int:
    """How many backslashes stand right before ``s[i]``."""
    k = 0
    while i - k > 0 and s[i - k - 1] == "\\":
        k += 1
    return k


def _escaped(s: str, i: int) -> bool:
    return _backslashes(s, i) % 2 == 1


def _balanced(s: str) -> bool:
    """Braces balance the way removeMath counts them (a backslashed brace does not count)."""
    depth = 0
    for i, char in enumerate(s):
        if char in "{}" and not (i and s[i - 1] == "\\"):
            depth += 1 if char == "{" else -1
            if depth < 0:
                return False
    return depth == 0


def _pair_spans(line: str) -> tuple[list[tuple[int, int, int, int]], list[tuple[int, int]]]:
    """CommonMark code spans of one line: (open start, open end, close start, close end) each, and
    the backtick runs that could open one but find no closer."""
    runs = [(m.start(), m.end()) for m in _RUN.finditer(line)]
    spans: list[tuple[int, int, int, int]] = []
    unpaired: list[tuple[int, int]] = []
    i = 0
    while i < len(runs):
        start, end = runs[i]
        if _escaped(line, start):
            start += 1  # a backslashed backtick is literal; the rest of its run may still open
            if start == end:
                i += 1
                continue
        length = end - start
        closer = next((j for j in range(i + 1, len(runs)) if runs[j][1] - runs[j][0] == length), None)
        if closer is None:
            unpaired.append((start, end))
            i += 1
        else:
            spans.append((start, end, runs[closer][0], runs[closer][1]))
            i = closer + 1
    return spans, unpaired


def _link_end(line: str, at: int) -> int | None:
    """Where an inline link whose destination starts at ``line[at:]`` (after its ``(``) ends on
    this line, generously (a greedy destination, its title, the closing parenthesis); None: it
    may go on to the next line."""
    n = len(line)
    i = at
    while i < n and line[i] in " \t":
        i += 1
    if i == n:
        return None
    while i < n and not line[i].isspace():
        i += 1
    token_end = i
    while i < n and line[i] in " \t":
        i += 1
    if i == n:
        return None if not line[at:token_end].rstrip().endswith(")") else token_end
    if line[i] in "\"'(":
        close = ")" if line[i] == "(" else line[i]
        j = i + 1
        while j < n and line[j] != close:
            j += 2 if line[j] == "\\" else 1
        if j >= n:
            return None
        k = line.find(")", j + 1)
        return None if k < 0 else k + 1
    return token_end


def _label_start(s: str, close: int, limit: int = 1000) -> int | None:
    """The ``[`` that opens the bracketed text ending at ``s[close] == "]"`` (nesting counted,
    escaped brackets skipped), or None."""
    depth = 0
    i = close - 1
    while i >= 0 and close - i <= limit:
        char = s[i]
        if char in "[]" and not _escaped(s, i):
            if char == "]":
                depth += 1
            elif depth:
                depth -= 1
            else:
                return i
        i -= 1
    return None


@dataclass
class _Line:
    """A text line after its backticks were settled: the line, its certain code spans, and for
    each character the column it had in the original line (-1: inserted)."""

    text: str
    spans: list[tuple[int, int, int, int]]
    origin: list[int]


class _Rendering:
    """One pass over the text: certain fences kept, every other line rewritten as text."""

    def __init__(self, text: str, forced: set[tuple[int, int]], dropped: set[int]) -> None:
        self.forced = forced
        lines = text.split("\n")
        starts = [0]
        for line in lines[:-1]:
            starts.append(starts[-1] + len(line) + 1)
        fence_of: dict[int, tuple[str, FencedBlock, int]] = {}  # line -> (role, block, block key)
        for block in fenced_blocks(text):
            first = bisect_right(starts, block.start) - 1
            span = _fence_lines(block, lines, first, starts)
            if span is None or block.start in dropped or not _certain(block, lines, first, *span):
                continue
            last, closed = span
            fence_of[first] = ("open", block, block.start)
            for i in range(first + 1, last + 1):
                fence_of[i] = ("code", block, block.start)
            if closed:
                fence_of[last] = ("close", block, block.start)
        out: list[str] = []
        self.span_marks: list[tuple[tuple[int, int], int, int, int, int]] = []  # key, output offsets
        self.fence_marks: list[tuple[int, int, int, int, int]] = []  # key, opener and closer lines
        length = 0
        i = 0
        while i < len(lines):
            role = fence_of.get(i)
            if role is None:
                j = i
                while j < len(lines) and j not in fence_of and lines[j].strip():
                    j += 1
                chunk = range(i, max(j, i + 1))
                shown = self._chunk(lines, chunk, length)
                for line in shown:
                    out.append(line)
                    length += len(line) + 1
                i = chunk[-1] + 1
                continue
            _, block, key = role
            opener_at = length
            out.append(_opener(lines[i]))
            length += len(out[-1]) + 1
            opener_end = opener_at + len(out[-1])
            i += 1
            while i < len(lines) and fence_of.get(i, ("",))[0] == "code" and fence_of[i][2] == key:
                out.append(lines[i])
                length += len(lines[i]) + 1
                i += 1
            if i < len(lines) and fence_of.get(i, ("",))[0] == "close" and fence_of[i][2] == key:
                out.append(lines[i])
                i += 1
            else:  # open at the end: close it, so what follows (a transcript's next part) stays out
                if out[-1] == "" and i >= len(lines):
                    out.pop()
                    length -= 1
                out.append(block.closing)
            closer_at = length
            length += len(out[-1]) + 1
            self.fence_marks.append((key, opener_at, opener_end, closer_at, closer_at + len(out[-1])))
        self.output = "\n".join(out)

    # -- text -----------------------------------------------------------------------------------
    def _chunk(self, lines: list[str], chunk: range, offset: int) -> list[str]:
        """Rewrite consecutive non-blank text lines (one stretch JupyterLab's math cannot leave)."""
        settled: list[_Line] = []
        carry = False  # a kept link on the previous line may take backticks of this one
        for index in chunk:
            following = lines[index + 1] if index + 1 < len(lines) and index + 1 in chunk else ""
            line, carry = self._settle(index, lines[index], following, carry)
            settled.append(line)
        return _Text(settled, self, offset, list(chunk)).shown

    def _settle(self, index: int, line: str, following: str, taken: bool) -> tuple[_Line, bool]:
        """Escape the backtick runs of ``line`` that are not certain code span delimiters."""
        origin = list(range(len(line)))
        while True:
            spans, unpaired = _pair_spans(line)
            inside = [False] * len(line)
            for a, _, _, d in spans:
                for p in range(a, d):
                    inside[p] = True
            ambiguous, continues = _ambiguous(line, inside, following, taken)
            bad = list(unpaired)
            for span in spans:
                a, b, c, d = span
                content = line[b:c]
                if ("`" in content or any(line[p] == "|" and not _escaped(line, p) for p in range(b, c))
                        or (b - a >= 2 and "](" in content)
                        or any(ambiguous[p] for p in range(a, b)) or any(ambiguous[p] for p in range(c, d))
                        or (index, origin[a]) in self.forced):
                    bad += [(a, b), (c, d)]
            if not bad:
                return _Line(line, spans, origin), continues
            for a, b in sorted(bad, reverse=True):
                line = line[:a] + "".join("\\`" for _ in range(b - a)) + line[b:]
                origin = origin[:a] + [x for p in range(a, b) for x in (-1, origin[p])] + origin[b:]

    def crossed(self, regions: Iterable[tuple[int, int]]) -> set[int | tuple[int, int]]:
        """The code (span keys, fence keys) a JupyterLab math region cuts across."""
        found: set[int | tuple[int, int]] = set()
        for a, b in regions:
            for key, p, q, r, t in self.span_marks:
                if _cuts(a, b, p, q, r, t):
                    found.add(key)
            for fence_key, p, q, r, t in self.fence_marks:
                if _cuts(a, b, p, q, r, t):
                    found.add(fence_key)
        return found


def _cuts(a: int, b: int, p: int, q: int, r: int, t: int) -> bool:
    """Whether the region [a, b) cuts code whose opening mark is [p, q) and closing mark [r, t)."""
    opens = a < q and b > p
    closes = a < t and b > r
    return (opens or closes) and not (a <= p and b >= t)


def _ambiguous(line: str, inside: list[bool], following: str, taken: bool) -> tuple[list[bool], bool]:
    """Characters of ``line`` that something other than a code span may take (a bare URL, a kept
    link's destination and title), and whether a kept link runs on into the next line."""
    n = len(line)
    marks = [taken] * n
    continues = False
    for m in _URLISH.finditer(line):
        if not inside[m.start()]:
            for p in range(m.start(), m.end()):
                marks[p] = True
    i = line.find("](")
    while i >= 0:
        if not inside[i] and not inside[i + 1]:
            rest = line[i + 2:] + "\n" + following
            if allowed_destination(rest, image=_is_image(line, i)):
                end = _link_end(line, i + 2)
                if end is None:
                    end, continues = n, True
                for p in range(i, end):
                    marks[p] = True
        i = line.find("](", i + 1)
    return marks, continues


def _is_image(s: str, close: int) -> bool:
    start = _label_start(s, close)
    return start is not None and start > 0 and s[start - 1] == "!" and not _escaped(s, start - 1)


def _fence_lines(block: FencedBlock, lines: list[str], first: int, starts: list[int]) -> tuple[int, bool] | None:
    """(last line index of the block, whether that line is its closing fence)."""
    if block.end >= 0:
        return bisect_right(starts, block.end) - 1, True
    last = first + len(block.lines)
    if last >= len(lines):
        return None
    return last, False


def _certain(block: FencedBlock, lines: list[str], first: int, last: int, closed: bool) -> bool:
    """Whether every parser reads lines ``first..last`` as this fenced block (``closed``: the last
    is its closing fence)."""
    opener = lines[first]
    m = re.search(r"`{3,}|~{3,}", opener)
    if m is None or "\t" in opener[:m.start()]:
        return False
    marker = m.group()
    prefix = block.closing[:len(block.closing) - len(marker)].rstrip(" ") if not block.top_level else ""
    for index in range(first + 1, last + 1):
        line = lines[index]
        bare = line.lstrip(" \t>")
        run = re.match(r"(`+|~+)[`~ \t]*$", bare)
        if run and run.group(1)[0] == marker[0] and len(run.group(1)) >= len(marker) and not (closed and index == last):
            return False  # marked would close the block here (CommonMark did not)
        if not block.top_level:
            if line.strip() and not line.startswith(prefix):
                return False
            if "\t" in line[:len(prefix) + 4]:
                return False
    return True


def _opener(line: str) -> str:
    """A fence's opening line with its info string cut to its first word's plain characters."""
    m = re.search(r"`{3,}|~{3,}", line)
    assert m is not None
    words = line[m.end():].split()
    word = _INFO_WORD.match(words[0]).group() if words else ""  # type: ignore[union-attr]
    return line[:m.end()] + word


class _Text:
    """The rewriting of one stretch of text lines (no blank line, no kept fence inside): what is
    code is copied, everything else made display-safe."""

    def __init__(self, settled: list[_Line], rendering: _Rendering, offset: int, indices: list[int]) -> None:
        s = "\n".join(line.text for line in settled)
        self.s = s
        n = len(s)
        self.code = [False] * n
        self.url = [False] * n
        spans: list[tuple[tuple[int, int], int, int, int, int]] = []
        at = 0
        for index, line in zip(indices, settled):
            for a, b, c, d in line.spans:
                spans.append(((index, line.origin[a]), at + a, at + b, at + c, at + d))
                for p in range(at + a, at + d):
                    self.code[p] = True
            at += len(line.text) + 1
        self.before: dict[int, str] = {}  # text inserted before a position
        self.replace: dict[int, str] = {}  # what a position shows instead of its character
        self.math = [False] * n
        self._dollar_math = False  # the stretch keeps $ or $$ math (then no dollar may stay bare)
        self._urls()
        self._links()
        self._definitions()
        self._tildes(settled)
        self._maths()
        self._tex_commands()
        self._angles(settled)
        out: list[str] = []
        size = 0
        where: dict[int, int] = {}
        marks = {p for _, *points in spans for p in points}
        for i, char in enumerate(s):
            if i in marks:
                where[i] = size
            piece = self.before.get(i, "") + (char if self.code[i] else self.replace.get(i, char))
            out.append(piece)
            size += len(piece)
        where[n] = size
        for key, p, q, r, t in spans:
            rendering.span_marks.append((key, offset + where[p], offset + where.get(q, size),
                                         offset + where[r], offset + where.get(t, size)))
        self.shown = "".join(out).split("\n")

    def free(self, i: int) -> bool:
        return 0 <= i < len(self.s) and not self.code[i] and not self.url[i]

    # -- links ------------------------------------------------------------------------------------
    def _urls(self) -> None:
        s = self.s
        for m in _URLISH.finditer(s):
            if self.code[m.start()]:
                continue
            end = m.end()
            while end > m.start() and self.code[end - 1]:
                end -= 1
            for p in range(m.start(), end):
                self.url[p] = True
            if m.group()[:3].lower() == "ftp":
                self.before[m.start() + 3] = "\\"  # ftp\:// : no link (only http(s) and mailto)

    def _links(self) -> None:
        s = self.s
        i = s.find("](")
        while i >= 0:
            if not self.code[i] and not self.code[i + 1]:
                if allowed_destination(s[i + 2:i + 4000], image=_is_image(s, i)):
                    j = i + 2
                    while j < len(s) and s[j] in " \t\n>":
                        j += 1
                    while j < len(s) and not s[j].isspace():
                        self.url[j] = not self.code[j]
                        j += 1
                else:
                    self.before[i + 1] = "\\"  # \( : the brackets show as text
            i = s.find("](", i + 1)

    def _definitions(self) -> None:
        """Neutralize link reference definitions (block level: inside code spans too) that point
        anywhere but http(s)/mailto or whose label holds a backtick (a reference to it could take
        a code span's backtick)."""
        s = self.s
        i = s.find("]:")
        while i >= 0:
            start = None if _escaped(s, i) else _label_start(s, i)
            if start is not None:
                line_start = s.rfind("\n", 0, start) + 1
                if _CONTENT_START.fullmatch(s, line_start, start) and (
                        "`" in s[start:i] or not allowed_destination(s[i + 2:i + 4000].replace(">", " ", 1)
                                                                     if s[i + 2:].lstrip(" \t\n").startswith(">")
                                                                     else s[i + 2:i + 4000])):
                    self.before[i + 1] = "\\"  # ]\: is no definition
            i = s.find("]:", i + 1)

    def _tildes(self, settled: list[_Line]) -> None:
        """No fence and no strikethrough that could take a backtick: a tilde run outside code
        with a backtick between it and the last tilde is escaped, and so is a line's ``~~~``."""
        s = self.s
        at = 0
        for line in settled:
            m = _TILDE_FENCE.match(line.text)
            if m and not self.code[at + m.start(1)]:
                self.before[at + m.start(1)] = "\\"
            at += len(line.text) + 1
        last = s.rfind("~")
        for m in re.finditer(r"~+", s):
            if m.start() < last and self.free(m.start()) and not _escaped(s, m.start()) and "`" in s[m.end():last]:
                for p in range(m.start(), m.end()):
                    self.before[p] = "\\"

    # -- math and money ---------------------------------------------------------------------------
    def _maths(self) -> None:
        s = self.s
        n = len(s)
        i = 0
        self._dollar_math = False
        while i < n:
            if not self.free(i):
                if s[i] == "$" and not self.code[i]:
                    self.replace[i] = "%24"  # a dollar in a URL: the same URL, no math delimiter
                i += 1
                continue
            char = s[i]
            if char == "$":
                i = self._dollar(i)
            elif char == "\\":
                i = self._backslash(i)
            else:
                i += 1
        currency = [p for p, shown in self.replace.items() if shown == "\\\\$"]
        if len(currency) == 1 and not self._dollar_math:
            del self.replace[currency[0]]  # a lone dollar: nothing to pair with, shown as written

    def _region(self, start: int, end: int) -> int:
        for p in range(start, end):
            self.math[p] = True
        return end

    def _dollar(self, i: int) -> int:
        s = self.s
        k = _backslashes(s, i)
        if k >= 2:
            return i + 1  # \\$ already shows a dollar
        if k == 1:
            self.replace[i] = "\\$"  # the model's \$ becomes \\$ (MathJax would pair \$ ... \$)
            return i + 1
        if s.startswith("$$", i) and self.free(i + 1):
            close = self._find(i + 2, "$$", same_line=False)
            if close is not None and s[i + 2:close].strip() and _balanced(s[i + 2:close]):
                self._dollar_math = True
                return self._region(i, close + 2)
            self.replace[i] = self.replace[i + 1] = "\\\\$"
            return i + 2
        close = self._inline_close(i)
        if close is not None:
            self._dollar_math = True
            return self._region(i, close + 1)
        self.replace[i] = "\\\\$"
        return i + 1

    def _inline_close(self, i: int) -> int | None:
        """Pandoc's rule: ``$`` + non-space ... non-space + ``$`` not followed by a digit, on one line."""
        s = self.s
        if i + 1 >= len(s) or s[i + 1].isspace():
            return None
        j = i + 1
        while j < len(s) and s[j] != "\n":
            if s[j] == "$" and not self.code[j] and not self.url[j] and _backslashes(s, j) == 0:
                after = s[j + 1] if j + 1 < len(s) else ""
                if s[j - 1].isspace() or after.isdigit() or after == "$" or not _balanced(s[i + 1:j]):
                    return None
                return j
            j += 1
        return None

    def _find(self, start: int, token: str, *, same_line: bool, run: int = 0) -> int | None:
        """The next free ``token`` from ``start`` (with ``run`` backslashes exactly before it when
        ``run`` is 1, at least 2 when 2, none when 0)."""
        s = self.s
        j = s.find(token, start)
        while j >= 0:
            if same_line and "\n" in s[start:j]:
                return None
            k = _backslashes(s, j)
            if self.free(j) and ((run == 0 and k == 0) or (run == 1 and k == 0) or (run == 2 and k % 2 == 0)):
                return j
            j = s.find(token, j + 1)
        return None

    def _backslash(self, i: int) -> int:
        s = self.s
        r = i
        while r < len(s) and s[r] == "\\":
            r += 1
        k = r - i
        nxt = s[r] if r < len(s) else ""
        if nxt in "([" and self.free(r):
            closer = ")" if nxt == "(" else "]"
            if k == 1:  # a model's \( x \) / \[ x \]: JupyterLab only finds \\( and \\[
                close = self._find(r + 1, "\\" + closer, same_line=nxt == "(", run=1)
                if close is not None and _balanced(s[r + 1:close]) and (nxt == "(" or _TEXY.search(s[r + 1:close])
                                                                       or "\n" in s[r + 1:close]):
                    self.replace[i] = "\\\\"
                    self.replace[close] = "\\\\"
                    self._region(i, close + 2)
                    return close + 2
                return r + 1
            close = self._find(r + 1, "\\\\" + closer, same_line=False, run=2)
            if close is not None and _balanced(s[r + 1:close]):
                return self._region(i, close + 3)
            self.replace[r] = "&#40;" if nxt == "(" else "&#91;"  # no math starts here
            return r + 1
        if nxt in ")]" and k >= 2 and self.free(r):
            self.replace[r] = "&#41;" if nxt == ")" else "&#93;"  # a closer with no opener
            return r + 1
        begin = _BEGIN.match(s, r)
        if begin and self.free(r):
            end = "\\end{" + begin.group(1) + "}"
            close = s.find(end, begin.end())
            while close >= 0 and not self.free(close):
                close = s.find(end, close + 1)
            if close >= 0 and _balanced(s[begin.end():close]):
                return self._region(i, close + len(end))
            self.replace[r + 5] = "&#123;"
            return begin.end()
        if s.startswith("end{", r) and self.free(r) and re.match(r"end\{[a-z]*\*?\}", s[r:], re.I):
            self.replace[r + 3] = "&#123;"
        return r

    def _tex_commands(self) -> None:
        """``\\href``, ``\\url``, ``\\require``... (which link or load) become ``\\\\href``: a line
        break and letters in math, the same ``\\href`` as text."""
        s = self.s
        for m in re.finditer(r"\\+", s):
            if (m.end() - m.start()) % 2 and _LINKING_TEX.match(s, m.end()) and self.free(m.end() - 1):
                self.replace[m.end() - 1] = self.replace.get(m.end() - 1, "\\") + "\\"

    # -- raw HTML ---------------------------------------------------------------------------------
    def _angles(self, settled: list[_Line]) -> None:
        s = self.s
        i = s.find("<")
        while i >= 0:
            if not self.code[i]:
                auto = _AUTOLINK.match(s, i)
                tag = _PLAIN_TAG.match(s, i)
                if self.math[i]:
                    self.replace[i] = "\\lt "
                elif auto and not self.math[i]:
                    for p in range(i, auto.end()):
                        self.url[p] = True
                    i = s.find("<", auto.end())
                    continue
                elif tag and self._inline_tag(i, tag.end()):
                    pass
                elif not _escaped(s, i):
                    self.replace[i] = "&lt;"
            i = s.find("<", i + 1)

    def _inline_tag(self, start: int, end: int) -> bool:
        """A plain tag is kept where it cannot open an HTML block: not alone at its line's content start."""
        s = self.s
        line_start = s.rfind("\n", 0, start) + 1
        line_end = s.find("\n", end)
        rest = s[end:] if line_end < 0 else s[end:line_end]
        return bool(rest.strip()) or not _CONTENT_START.fullmatch(s, line_start, start)
