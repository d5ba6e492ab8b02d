"""Make an incomplete Markdown answer display well, and find where it can be cut into frozen pieces.

Pure string functions, no IPython: the notebook renderer and the chat panel both use them.
``close_open`` is only ever applied to what is shown *while* an answer streams; the final
answer is always displayed exactly as received.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["Boundaries", "close_open", "close_open_counted", "find_boundaries", "sentence_cut"]

_FENCE_OPEN = re.compile(r"^( {0,3})(`{3,}|~{3,})(.*)$")
_BULLET = re.compile(r"^([-+*])[ \t]")
_ORDERED = re.compile(r"^\d{1,9}([.)])[ \t]")
_ATX = re.compile(r"^ {0,3}#{1,6}(?:[ \t]|$)")
# A half-typed last line that is only a block marker so far ("-", "1.", "##", "``", "|", "---"):
# shown now, it would flash a setext heading, an empty list item, a stray backtick or a rule.
_HALF_MARKER = re.compile(r"^ {0,3}(?:[-=_*+#>`~|]+|\d{1,9}[.)]?)[ \t]*$")
_TABLE_START = re.compile(r"^ {0,3}\|")
_HALF_DELIMITER = re.compile(r"^ {0,3}[|:\- \t]*$")
_DELIMITER = re.compile(r"^ {0,3}\|?[ \t]*:?-+:?[ \t]*(?:\|[ \t]*:?-+:?[ \t]*)*\|?[ \t]*$")
_BACKTICKS = re.compile(r"`+")
_TICKS_OR_STARS = re.compile(r"`+|\*\*")
# a sentence end followed by the start of the next sentence
_SENTENCE_END = re.compile(r"[.!?;:][\"')\]]?[ \t]+(?=[A-Z0-9(\"'*`\[_])")


@dataclass(frozen=True)
class _Fence:
    indent: str
    marker: str  # the opening run, e.g. "```" or "~~~~"
    opener: str  # the whole opening line, to reopen the block in a new piece

    def closes(self, line: str) -> bool:
        stripped = line.rstrip(" \t")
        body = stripped.lstrip(" ")
        return (
            len(stripped) - len(body) <= 3
            and len(body) >= len(self.marker)
            and body == self.marker[0] * len(body)
        )


def _lines(text: str) -> list[tuple[int, str, bool]]:
    """(offset, line without newline, complete?) for every line; the last may be incomplete."""
    out: list[tuple[int, str, bool]] = []
    pos = 0
    n = len(text)
    while pos < n:
        nl = text.find("\n", pos)
        if nl < 0:
            out.append((pos, text[pos:], False))
            break
        out.append((pos, text[pos:nl], True))
        pos = nl + 1
    return out


def _list_kind(line: str) -> str | None:
    """The marker type of a top-level list item line ("-", "1." ...), None if not one."""
    m = _BULLET.match(line)
    if m:
        return m.group(1)
    m = _ORDERED.match(line)
    return "1" + m.group(1) if m else None


@dataclass(frozen=True)
class Boundaries:
    """Offsets where a streamed Markdown text can be cut without changing how the part before renders.

    ``hard``: the start of the last top-level block that follows complete blocks (0: none).
    ``soft``: a later cut inside a long fenced block or list (0: none); the piece starting there
    must be shown with ``soft_prefix`` before it (the fence's opening line) to render the same.
    """

    hard: int = 0
    soft: int = 0
    soft_prefix: str = ""


def find_boundaries(text: str) -> Boundaries:
    """Scan ``text`` (which starts at a block boundary) for the last hard and soft cut points.

    A hard cut is a column-0 line that starts a new top-level block after a blank line, an ATX
    heading or a closed fence, and does not continue the list before it. A soft cut is a line
    start inside an open fenced block, or a new item of the same top-level list. The line after
    a cut must be complete (or long enough) so its kind is known.
    """
    hard = soft = 0
    soft_prefix = ""
    fence: _Fence | None = None
    after_break = False  # previous line ended a block (blank line, heading, closing fence)
    list_kind: str | None = None  # marker type of the current top-level list, if any
    code_from = 0  # offset of the first line inside the open fence
    for offset, line, complete in _lines(text):
        known = complete or len(line) >= 12
        if fence is not None:
            if complete and fence.closes(line):
                fence = None
                after_break = True
            elif known and offset > code_from:  # keep at least one code line before a cut
                soft, soft_prefix = offset, fence.opener + "\n"
            continue
        if not line.strip():
            after_break = offset > 0
            continue
        starts_block = not line[0].isspace()
        kind = _list_kind(line) if starts_block else None
        if starts_block and known and offset > 0:
            if kind is not None and kind == list_kind:
                soft, soft_prefix = offset, ""
            elif after_break:
                hard = offset
        if starts_block:
            list_kind = kind if kind is not None else (None if after_break else list_kind)
        opened = _FENCE_OPEN.match(line)
        if opened and not (opened.group(2)[0] == "`" and "`" in opened.group(3)):
            fence = _Fence(opened.group(1), opened.group(2), line)
            code_from = offset + len(line) + 1
            after_break = False
            continue
        after_break = bool(_ATX.match(line)) and complete
    if soft <= hard:
        soft, soft_prefix = 0, ""
    return Boundaries(hard, soft, soft_prefix)


def _open_fence(text: str) -> _Fence | None:
    """The fenced block still open at the end of ``text``, if any."""
    fence: _Fence | None = None
    for _, line, complete in _lines(text):
        if fence is not None:
            if complete and fence.closes(line):
                fence = None
            continue
        opened = _FENCE_OPEN.match(line)
        if opened and complete and not (opened.group(2)[0] == "`" and "`" in opened.group(3)):
            fence = _Fence(opened.group(1), opened.group(2), line)
    return fence


def sentence_cut(text: str) -> int:
    """A last-resort cut in a long paragraph line with no block boundary: after its last sentence
    end where no code span or ``**`` is open (0: none).

    Both halves then render as paragraphs, so the paragraph shows split in two while it streams
    (the final display is whole). Only for plain paragraph lines outside fenced code.
    """
    start = text.rfind("\n") + 1
    line = text[start:]
    if (not line or line[0].isspace() or line[0] in "|>" or _list_kind(line) or _ATX.match(line)
            or _open_fence(text[:start]) is not None):
        return 0
    for m in reversed(list(_SENTENCE_END.finditer(line))):
        head = line[: m.end()]
        if _open_code_span(head)[0] < 0 and _open_strong(head) < 0:
            return start + m.end()
    return 0


def _open_code_span(block: str) -> tuple[int, int]:
    """(position, length) of an unclosed backtick run in ``block``, or (-1, 0)."""
    open_at, open_len = -1, 0
    for m in _BACKTICKS.finditer(block):
        length = len(m.group())
        if open_at < 0:
            open_at, open_len = m.start(), length
        elif length == open_len:
            open_at, open_len = -1, 0
    return open_at, open_len


def _open_strong(block: str) -> int:
    """Position of an unclosed ``**`` outside code spans in ``block``, or -1."""
    opened = -1
    pos = 0
    for m in _TICKS_OR_STARS.finditer(block):
        if m.start() < pos:
            continue  # inside a code span skipped below
        run = m.group()
        if run[0] == "`":
            close = block.find(run, m.end())
            # a closed run is a code span to skip; an unclosed one is literal text
            pos = close + len(run) if close >= 0 else m.end()
            continue
        opened = -1 if opened >= 0 else m.start()
        pos = m.end()
    return opened


def _close_inline(block: str) -> tuple[str, int]:
    """Close an unbalanced code span and ``**`` at the end of the last block.

    An opener with nothing after it yet is held back instead; returns (shown, chars held back).
    """
    at, length = _open_code_span(block)
    if at >= 0:
        if not block[at + length :].strip():
            return _hold_from(block, at)
        core = block.rstrip(" \t")
        block = core + "`" * length + block[len(core) :]
    at = _open_strong(block)
    if at >= 0:
        if not block[at + 2 :].strip():
            return _hold_from(block, at)
        core = block.rstrip(" \t")
        block = core + "**" + block[len(core) :]
    return block, 0


def _hold_from(block: str, at: int) -> tuple[str, int]:
    shown = block[:at].rstrip(" \t") if block[:at].strip() else block[:at]
    return shown, len(block) - len(shown)


def _table_cells(line: str) -> int:
    row = line.strip()
    if row.startswith("|"):
        row = row[1:]
    if row.endswith("|") and not row.endswith("\\|"):
        row = row[:-1]
    return max(1, len(re.split(r"(?<!\\)\|", row)))


def _complete_table(lines: list[str]) -> list[str] | None:
    """A half table (header only, or a half delimiter row) with a full delimiter row, else None."""
    if not lines or not _TABLE_START.match(lines[0]):
        return None
    delimiter = "|" + " --- |" * _table_cells(lines[0])
    if len(lines) == 1:
        return [lines[0], delimiter]
    if (len(lines) == 2 and _HALF_DELIMITER.match(lines[1])
            and not (_DELIMITER.match(lines[1]) and _table_cells(lines[1]) == _table_cells(lines[0]))):
        return [lines[0], delimiter]
    return None


def close_open(text: str) -> str:
    """What to show for ``text``, an answer still streaming, so its incomplete end renders sanely.

    Holds back a last line that is only a half-typed block marker, closes an open code fence,
    completes a table whose delimiter row has not arrived, and closes (or holds back, when
    nothing follows it yet) an unbalanced code span or ``**`` in the last paragraph.
    """
    return close_open_counted(text)[0]


def close_open_counted(text: str) -> tuple[str, int]:
    """``close_open(text)`` and how many characters at the end of ``text`` it holds back."""
    lines = _lines(text)
    if not lines:
        return text, 0
    fence: _Fence | None = None
    block_start = 0  # index in ``lines`` of the first line of the last block outside fences
    for i, (_, line, complete) in enumerate(lines):
        if fence is not None:
            if complete and fence.closes(line):
                fence = None
                block_start = i + 1
            continue
        opened = _FENCE_OPEN.match(line)
        if opened and not (opened.group(2)[0] == "`" and "`" in opened.group(3)):
            if complete or opened.group(3).strip():
                fence = _Fence(opened.group(1), opened.group(2), line)
            continue
        if not line.strip() or (complete and _ATX.match(line)):
            block_start = i + 1
    offset, last, complete = lines[-1]
    if fence is not None:
        closing = fence.indent + fence.marker
        if not complete and last.strip() and set(last.strip()) == {fence.marker[0]}:
            return text[:offset] + closing, len(last)  # a half-typed closing fence
        return text + ("" if text.endswith("\n") else "\n") + closing, 0
    hidden = 0
    if not complete and _HALF_MARKER.match(last):
        text, lines, hidden = text[:offset], lines[:-1], len(last)
    if block_start >= len(lines):
        return text, hidden
    start = lines[block_start][0]
    table = _complete_table([line for _, line, _ in lines[block_start:]])
    if table is not None:
        return text[:start] + "\n".join(table), hidden
    shown, held = _close_inline(text[start:])
    return text[:start] + shown, hidden + held
