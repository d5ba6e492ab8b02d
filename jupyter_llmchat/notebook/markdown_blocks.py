"""The one Markdown block parser: where a streamed answer's blocks start, and its fenced code.

A line scanner that follows CommonMark's block structure (GFM tables included) as far as this
package needs it: the containers (block quotes, list items) and the leaves (paragraphs and
tables, fenced and indented code, HTML blocks, headings, thematic breaks) of text that may still
be growing. It says
- where the text can be cut so that the two parts render exactly like the whole (``find_boundaries``),
- which fenced code blocks it holds, with their content as a front end shows it (``fenced_blocks``),
- what is still open at its end (``scan``: an unclosed fence and the line that closes it).
When unsure it reports no cut: a missed cut costs bytes, a wrong one shows a broken answer.
Pure string functions, no IPython.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field

__all__ = ["BlockScan", "Boundaries", "FencedBlock", "fenced_blocks", "find_boundaries", "scan"]

# Block starts, matched where a line's content begins (after its container prefixes and indentation).
# Leaf blocks (_leaf_start): a heading, a code fence (the info string in group 2), a rule, a setext underline.
_ATX = re.compile(r"#{1,6}(?:[ \t]|$)")
_FENCE = re.compile(r"(`{3,}|~{3,})(.*)$")
_THEMATIC = re.compile(r"(?:(?:\*[ \t]*){3,}|(?:-[ \t]*){3,}|(?:_[ \t]*){3,})$")
_SETEXT = re.compile(r"(?:=+|-+)[ \t]*$")
# List items (_item_start): a bullet, or a number of at most 9 digits and its delimiter.
_BULLET = re.compile(r"([-+*])(?=[ \t]|$)")
_ORDERED = re.compile(r"(\d{1,9})([.)])(?=[ \t]|$)")
_DEFINITION = re.compile(r"\[(?:[^\]\\]|\\.)+\]:")  # a link reference definition starts so
# HTML blocks (CommonMark 4.6): types 1-5 run to an end marker, across blank lines; 6 and 7 end
# at a blank line, and 7 cannot interrupt a paragraph.
_HTML_ENDS = [
    (re.compile(r"<(?:script|pre|style|textarea)(?:[ \t>]|$)", re.I),
     re.compile(r"</(?:script|pre|style|textarea)>", re.I)),
    (re.compile(r"<!--"), re.compile(r"-->")),
    (re.compile(r"<\?"), re.compile(r"\?>")),
    (re.compile(r"<![A-Za-z]"), re.compile(r">")),
    (re.compile(r"<!\[CDATA\["), re.compile(r"\]\]>")),
]
_HTML_6 = re.compile(
    r"</?(?:address|article|aside|base|basefont|blockquote|body|caption|center|col|colgroup|dd|details|"
    r"dialog|dir|div|dl|dt|fieldset|figcaption|figure|footer|form|frame|frameset|h[1-6]|head|header|hr|"
    r"html|iframe|legend|li|link|main|menu|menuitem|nav|noframes|ol|optgroup|option|p|param|search|"
    r"section|summary|table|tbody|td|tfoot|th|thead|title|tr|track|ul)(?:[ \t]|/?>|$)", re.I)
_HTML_7 = re.compile(
    r"(?:<[A-Za-z][A-Za-z0-9-]*(?:[ \t]+[A-Za-z_:][\w.:-]*(?:[ \t]*=[ \t]*(?:[^\"'=<>`\s]+|'[^']*'|\"[^\"]*\"))?)*"
    r"[ \t]*/?>|</[A-Za-z][A-Za-z0-9-]*[ \t]*>)[ \t]*$")
# Display math (Jupyter front ends take it out before parsing Markdown): never cut inside it.
_MATH = re.compile(r"(?<!\\)\$\$|\\\[|\\\]|\\begin\{|\\end\{")
KNOWN = 12  # an unfinished line this long already shows what kind of block it starts
_STARTERS = frozenset(">#`~<=-_*+0123456789")  # the first characters of every block start


@dataclass(frozen=True)
class Boundaries:
    """Offsets where a streamed Markdown text can be cut without changing how the part before renders.

    ``hard``: the start of the last top-level block that follows complete blocks (0: none); the
    two parts rendered apart render like the whole.
    ``soft``: a later cut inside a long top-level fenced block or list (0: none); the piece
    starting there must be shown with ``soft_prefix`` before it (the fence's opening line) and
    then renders like the same stretch of the whole, split in two.
    """

    hard: int = 0
    soft: int = 0
    soft_prefix: str = ""


@dataclass
class FencedBlock:
    """A fenced code block: its info string and its code as a front end shows it."""

    info: str
    lines: list[str]
    start: int  # offset of the opening line
    opener: str  # the opening line as written (reopens the block in a new piece)
    closing: str  # a line that closes it where it stands (container prefix and marker)
    top_level: bool
    complete: bool = False  # closed by a closing fence or by the end of its container
    end: int = -1  # offset of its closing fence line (-1: none)

    @property
    def language(self) -> str:
        return self.info.split()[0] if self.info.strip() else ""

    @property
    def code(self) -> str:
        return "\n".join(self.lines)


@dataclass
class _Fence:
    block: FencedBlock
    char: str
    length: int
    indent: int

    def closes(self, line: str, pos: int) -> bool:
        ind = _indent(line, pos)
        run = line[pos + ind:].rstrip(" \t")
        return ind <= 3 and len(run) >= self.length and run == self.char * len(run)


@dataclass
class _Container:
    quote: bool  # a block quote; else a list item
    width: int = 0  # list item: columns of its content indent
    blank_start: bool = False  # list item that began with a blank line
    filled: bool = False  # list item with content already
    child_list: str | None = None  # the bullet of the list that is its last child, if any


@dataclass
class _List:
    """The top-level list open now: enough of it for soft cuts that keep how it renders.

    CommonMark makes a list loose (items in paragraphs) when a blank line separates two of its
    items, or two direct children of one item; both parts of a soft cut must stay as the whole is.
    """

    bullet: str  # "-", "+", "*", or the ordered delimiter "." / ")"
    numbers: list[int] = field(default_factory=list)
    gaps: list[bool] = field(default_factory=list)  # a blank line before item i (i >= 1)
    loose_items: set[int] = field(default_factory=set)  # items with a blank line between children
    candidates: list[tuple[int, int]] = field(default_factory=list)  # (offset, item index) cut points
    pending_blank: bool = False

    def loose(self, first: int, last: int) -> bool:
        """Whether items ``first`` to ``last - 1`` alone would make a loose list."""
        return any(self.gaps[first:last - 1]) or any(first <= i < last for i in self.loose_items)


@dataclass
class BlockScan:
    """What ``scan`` found: cut points, fenced blocks, and what is open at the end of the text."""

    boundaries: Boundaries
    fences: list[FencedBlock]
    open_fence: FencedBlock | None  # a fenced block the text ends inside
    last_block: int  # offset of the line after the last blank line, heading or closed fence
    paragraph: int  # offset of the top-level paragraph the text ends in, outside display math (-1: none)


def _indent(line: str, pos: int) -> int:
    n = len(line)
    i = pos
    while i < n and line[i] == " ":
        i += 1
    return i - pos


def _from_column(raw: str, column: int) -> str:
    """``raw`` from ``column`` on (tabs count to the next multiple of 4, as CommonMark says)."""
    if "\t" not in raw:
        return raw[column:]
    col = 0
    for i, char in enumerate(raw):
        if col >= column:
            return raw[i:]
        width = 4 - col % 4 if char == "\t" else 1
        if col + width > column:  # a tab only partly consumed: the rest of it counts as spaces
            return " " * (col + width - column) + raw[i + 1:]
        col += width
    return ""


def _lines(text: str) -> list[tuple[int, str, bool]]:
    """(offset, line without newline, complete?) for every line; the last may be incomplete."""
    out: list[tuple[int, str, bool]] = []
    offset = 0
    parts = text.split("\n")
    last = len(parts) - 1
    for i, line in enumerate(parts):
        if i == last:
            if line:
                out.append((offset, line, False))
            break
        out.append((offset, line, True))
        offset += len(line) + 1
    return out


@dataclass
class _Opened:
    """The first block a line opened: its kind, the container depth it opened at, its column."""

    kind: str
    depth: int
    column: int
    same_list: bool = False  # a new item of the top-level list already open


def _leaf_start(rest: str, interrupting: bool) -> tuple[str, re.Pattern[str] | None, int] | None:
    """The leaf block ``rest`` starts, if any: (kind, for an HTML block that runs to an end
    marker that marker, and where to look for it in ``rest``)."""
    char = rest[0]
    if char == "#" and _ATX.match(rest):
        return "heading", None, 0
    if char in "`~":
        m = _FENCE.match(rest)
        if m and not (char == "`" and "`" in m.group(2)):
            return "fence", None, 0
    if char == "<":
        for start, end in _HTML_ENDS:
            m = start.match(rest)
            if m:
                return "html", end, m.end()
        if _HTML_6.match(rest) or (not interrupting and _HTML_7.match(rest)):
            return "html", None, 0  # ends at a blank line
    if interrupting and char in "=-" and _SETEXT.match(rest):
        return "setext", None, 0
    if char in "*-_" and _THEMATIC.match(rest):
        return "rule", None, 0
    return None


def _item_start(line: str, pos: int, at: int, rest: str,
                interrupting: bool) -> tuple[_Container, str, int, int] | None:
    """A list item starting at ``at``: (its container, bullet or delimiter, number, content position)."""
    m = _BULLET.match(rest)
    number = 0
    if m:
        bullet = m.group(1)
    else:
        m = _ORDERED.match(rest)
        if m is None:
            return None
        bullet, number = m.group(2), int(m.group(1))
    end = at + m.end()
    spaces = _indent(line, end)
    empty = not line[end:].strip()
    if interrupting and (empty or (bullet in ".)" and number != 1)):
        return None  # what may not interrupt a paragraph
    padding = 1 if empty or spaces >= 5 else spaces
    container = _Container(quote=False, width=end - pos + padding, blank_start=empty)
    return container, bullet, number, end + min(padding, spaces)


class _Scanner:
    def __init__(self) -> None:
        self.stack: list[_Container] = []
        self.leaf: str | None = None  # "para" (tables too), "fence", "code" (indented), "html"
        self.fence: _Fence | None = None
        self.html_end: re.Pattern[str] | None = None  # None: an HTML block that ends at a blank line
        self.fences: list[FencedBlock] = []
        self.top_list: _List | None = None  # the top-level list open now
        self.cut_list: _List | None = None  # the last top-level list, open or not (soft cuts)
        self.hard = 0
        self.fence_soft: tuple[int, str] | None = None
        self.definitions = False
        self.math = 0  # display math blocks open (Jupyter takes math out before parsing Markdown)
        self.after = "start"  # the previous line, for cuts: "blank", "break" (heading, fence, rule), "other"
        self.last_block = 0
        self.paragraph_tail = False
        self.paragraph_start = 0
        self.tail_line = ""

    def line(self, offset: int, raw: str, complete: bool) -> None:
        line = raw.expandtabs(4) if "\t" in raw else raw
        pos, matched = self._match(line)
        blank = not line[pos:].strip()  # blank after the markers of the containers it continues
        all_matched = matched == len(self.stack)
        after, math = self.after, self.math
        self.paragraph_tail = False
        if all_matched and self.leaf in ("fence", "code", "html") and self._take(offset, raw, line, pos, blank,
                                                                                   complete):
            self._list_line(blank, matched, taken=True)
            return
        opened, matched, pos, leaf_opened = self._open_blocks(
            offset, raw, line, pos, matched, all_matched and self.leaf == "para", complete)
        if opened is None:
            if matched < len(self.stack) and self.leaf == "para" and not blank:  # lazy continuation
                self._list_line(blank, matched)
                self._paragraph(line)
                self.after = "other"
                return
            self._close_to(matched)
            if blank:
                self._list_line(blank, matched)
                self._blank(offset, raw)
                return
        if not leaf_opened and line[pos:].strip() and (opened is not None or self.leaf != "para"):
            at = pos + _indent(line, pos)
            opened = opened or _Opened("para", matched, at)
            self._open_leaf("para", matched)
            self.paragraph_start = offset
            self.definitions = self.definitions or bool(_DEFINITION.match(line, at))
        self._list_line(blank, matched, opened=opened)
        if opened is not None and opened.depth == 0 and opened.column == 0 and offset and not math:
            self._cut(offset, raw, opened, after, complete)
        if self.leaf == "para":
            self._paragraph(line)
        top_break = opened is not None and opened.depth == 0 and opened.kind in ("heading", "rule")
        self.after = "break" if top_break and complete and not self.stack else "other"
        if opened is not None and opened.kind == "heading" and complete:
            self.last_block = offset + len(raw) + 1

    # -- the steps of a line -------------------------------------------------------------------
    def _match(self, line: str) -> tuple[int, int]:
        """Consume the markers of the open containers the line continues: (position, how many)."""
        pos = matched = 0
        for container in self.stack:
            if container.quote:
                ind = _indent(line, pos)
                if ind > 3 or not line.startswith(">", pos + ind):
                    break
                pos += ind + 1 + line.startswith(" ", pos + ind + 1)
            elif not line[pos:].strip():
                if container.blank_start and not container.filled:
                    break  # a list item can begin with at most one blank line
            elif _indent(line, pos) >= container.width:
                pos += container.width
            else:
                break
            matched += 1
        return pos, matched

    def _take(self, offset: int, raw: str, line: str, pos: int, blank: bool, complete: bool) -> bool:
        """Give the line to the open code or HTML block if it goes on there (True)."""
        if self.leaf == "fence":
            fence = self.fence
            assert fence is not None
            if fence.closes(line, pos):
                fence.block.end = offset
                self._close_leaf()
                self.after = "other" if self.stack else "break"
                self.last_block = offset + len(raw) + 1
                return True
            block = fence.block
            if block.top_level and block.lines and (complete or len(raw) >= KNOWN):
                self.fence_soft = (offset, block.opener + "\n")  # at least one code line before it
            block.lines.append("" if blank else _from_column(raw, pos + min(_indent(line, pos), fence.indent)))
            self.after = "other"
            return True
        if self.leaf == "html":
            if self.html_end is None and blank:
                return False  # ends at this blank line
            if self.html_end is not None and self.html_end.search(line, pos):
                self.leaf, self.html_end = None, None
            self.after = "other"
            return True
        if blank or _indent(line, pos) >= 4:  # indented code goes on
            self.after = "blank" if blank else "other"
            return True
        self.leaf = None
        return False

    def _open_blocks(self, offset: int, raw: str, line: str, pos: int, matched: int, interrupting: bool,
                     complete: bool) -> tuple[_Opened | None, int, int, bool]:
        """Open the containers and the leaf that start on this line: the first one opened (None:
        nothing starts here), the container depth and position the line reaches, and whether a
        leaf other than a paragraph started."""
        first: _Opened | None = None
        leaf_opened = False
        while True:
            ind = _indent(line, pos)
            at = pos + ind
            rest = line[at:]
            if not rest.strip():
                break
            if ind < 4 and rest[0] not in _STARTERS:
                break  # plain text: starts no block (the common case, kept cheap)
            if ind >= 4:
                if self.leaf != "para":
                    self._open_leaf("code", matched)
                    first = first or _Opened("code", matched, at)
                    leaf_opened = True
                break
            if rest[0] == ">":
                self._push(_Container(quote=True), matched)
                first = first or _Opened("quote", matched, at)
                matched += 1
                pos = at + 1 + line.startswith(" ", at + 1)
                interrupting = False
                continue
            leaf = _leaf_start(rest, interrupting)
            if leaf is not None:
                kind, end, marker = leaf
                first = first or _Opened(kind, matched, at)
                leaf_opened = True
                if kind == "setext":
                    self.leaf = None  # the paragraph became a heading
                elif kind == "fence":
                    self._open_fence(offset, raw, line, at, ind, matched)
                elif kind == "html":
                    self._open_leaf("html", matched)
                    self.html_end = end
                    if end is not None and end.search(line, at + marker):
                        self._close_leaf()  # ends on its first line
                else:
                    self._open_leaf(None, matched)
                break
            item = _item_start(line, pos, at, rest, interrupting)
            if item is None:
                break
            container, bullet, number, pos = item
            if matched == 0:
                self._close_to(0)
                same = self._top_item(offset, bullet, number, at == 0 and (complete or len(raw) >= KNOWN))
            else:
                same = self.stack[matched - 1].child_list == bullet
            self._push(container, matched, bullet)
            first = first or _Opened("item", matched, at, same)
            matched += 1
            interrupting = False
        return first, matched, pos, leaf_opened

    def _cut(self, offset: int, raw: str, opened: _Opened, after: str, complete: bool) -> None:
        """A hard cut before this line, which starts a new top-level block at column 0."""
        if opened.kind == "setext" or opened.same_list:
            return
        if opened.kind == "para" and after not in ("blank", "break"):
            return  # after a setext heading a GFM table row may look the same: unsure
        if complete or (after == "blank" and len(raw) >= KNOWN):
            self.hard = offset

    def _top_item(self, offset: int, bullet: str, number: int, cuttable: bool) -> bool:
        """A new item of a top-level list: of the list open now (True), or of a new one."""
        current = self.top_list
        if current is None or current.bullet != bullet:
            self.top_list = self.cut_list = _List(bullet, [number])
            return False
        current.gaps.append(current.pending_blank)
        current.pending_blank = False
        if cuttable:
            current.candidates.append((offset, len(current.numbers)))
        current.numbers.append(number)
        return True

    def _list_line(self, blank: bool, matched: int, *, taken: bool = False, opened: _Opened | None = None) -> None:
        """Where blank lines fall in the top-level list: between items, or between an item's children."""
        current = self.top_list
        if current is None:
            return
        if opened is not None and opened.depth == 0:
            if not opened.same_list and opened.kind != "item":
                self.top_list = None  # another top-level block ended the list
            return
        in_item = matched >= 1 and bool(self.stack) and not self.stack[0].quote
        if blank:
            if in_item and not (taken and self.leaf in ("fence", "html")):
                current.pending_blank = True
            return
        direct = opened is not None and opened.depth == 1 and not opened.same_list  # a new child of the item
        if current.pending_blank and in_item and not taken and direct:
            current.loose_items.add(len(current.numbers) - 1)
        current.pending_blank = False

    def _blank(self, offset: int, raw: str) -> None:
        if self.leaf == "para" or (self.leaf == "html" and self.html_end is None):
            self.leaf = None
        self.after = "blank"
        self.last_block = offset + len(raw) + 1

    def _paragraph(self, line: str) -> None:
        """Paragraph text: note display math opening or closing, and whether it is top-level."""
        self.paragraph_tail = not self.stack  # and not a table row: see result()
        self.tail_line = line
        if "$$" in line or "\\" in line:
            for m in _MATH.finditer(line):
                token = m.group()
                if token == "$$":
                    self.math = 0 if self.math else 1
                elif token in ("\\[", "\\begin{"):
                    self.math += 1
                else:
                    self.math = max(0, self.math - 1)

    # -- opening and closing -------------------------------------------------------------------
    def _push(self, container: _Container, depth: int, bullet: str | None = None) -> None:
        self._close_to(depth)
        self._close_leaf()  # a new container ends the paragraph it interrupts
        self._fill(depth, bullet)
        self.stack.append(container)

    def _open_leaf(self, kind: str | None, depth: int) -> None:
        self._close_to(depth)
        self._close_leaf()
        self._fill(depth)
        self.leaf = kind

    def _open_fence(self, offset: int, raw: str, line: str, at: int, ind: int, depth: int) -> None:
        self._open_leaf("fence", depth)
        m = _FENCE.match(line, at)
        assert m is not None
        marker = m.group(1)
        prefix = "".join("> " if c.quote else " " * c.width for c in self.stack)
        block = FencedBlock(m.group(2).strip(), [], offset, raw, prefix + " " * ind + marker, top_level=depth == 0)
        self.fences.append(block)
        self.fence = _Fence(block, marker[0], len(marker), ind)
        if depth == 0:
            self.fence_soft = None

    def _fill(self, depth: int, bullet: str | None = None) -> None:
        """A block was added to the container at ``depth`` (an item of a ``bullet`` list, or not)."""
        if depth:
            parent = self.stack[depth - 1]
            parent.filled = True
            parent.child_list = bullet

    def _close_leaf(self) -> None:
        if self.leaf == "fence" and self.fence is not None:
            self.fence.block.complete = True
            self.fence = None
        self.leaf = None
        self.html_end = None

    def _close_to(self, depth: int) -> None:
        if depth < len(self.stack):
            self._close_leaf()
            del self.stack[depth:]

    def result(self) -> BlockScan:
        open_fence = self.fence.block if self.leaf == "fence" and self.fence is not None else None
        hard, soft, prefix = self.hard, 0, ""
        if self.fence_soft is not None and self.fence_soft[0] > hard:
            soft, prefix = self.fence_soft
        if self.cut_list is not None:
            cut = _list_cut(self.cut_list, max(hard, soft))
            if cut:
                soft, prefix = cut, ""
        if self.definitions:  # a link reference definition applies to the whole text: no piece may lose it
            hard = soft = 0
            prefix = ""
        table_row = self.tail_line.lstrip(" ").startswith("|")
        paragraph = self.paragraph_start if self.paragraph_tail and not self.math and not table_row else -1
        return BlockScan(Boundaries(hard, soft, prefix), self.fences, open_fence, self.last_block, paragraph)


def _list_cut(lst: _List, after: int) -> int:
    """The last item after ``after`` where a soft cut keeps both parts as tight or loose as the whole."""
    n = len(lst.numbers)
    whole = lst.loose(0, n)
    for offset, k in reversed(lst.candidates):
        if offset <= after:
            break
        if lst.bullet in ".)" and lst.numbers[k] != lst.numbers[0] + k:
            continue  # the new piece would number its items from its own first number
        if lst.loose(0, k) == whole == lst.loose(k, n):
            return offset
    return 0


@functools.lru_cache(maxsize=8)
def scan(text: str) -> BlockScan:
    """Parse ``text`` (which starts at a block boundary) line by line; see ``BlockScan``.

    Cached: a view asks about the same live piece twice per repaint (where to cut, what to show).
    Callers must not change what it returns.
    """
    scanner = _Scanner()
    lines = _lines(text)
    for offset, line, complete in lines:
        scanner.line(offset, line, complete)
    return scanner.result()


def find_boundaries(text: str) -> Boundaries:
    """The last hard and soft cut points of ``text`` (see ``Boundaries``).

    A hard cut is the start of a column-0 line that begins a new top-level block after a blank
    line, a heading, a closed fence or a thematic break (or interrupts a paragraph with a list,
    quote, fence, heading or HTML block), and does not continue the list before it. A soft cut
    is a line inside a long top-level fenced block, or a new item of the last top-level list
    where both parts stay as tight or loose as the whole. The line after a cut must be complete
    (or long enough) so its kind is known. A link reference definition anywhere means no cut.
    """
    return scan(text).boundaries


def fenced_blocks(text: str) -> list[FencedBlock]:
    """Every fenced code block of ``text`` in order, at any depth (in lists and quotes too)."""
    return scan(text).fences
