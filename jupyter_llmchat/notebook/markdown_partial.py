"""What an unfinished Markdown answer shows while it streams, and where a long paragraph may split.

``close_open`` is only ever applied to what is shown *while* an answer streams (in the cell and in
the chat panel); the final answer is always displayed exactly as received. Block structure comes
from ``markdown_blocks`` (the one parser); this module adds the inline part: code spans and
``**`` left open, half-typed block markers, tables whose delimiter row has not arrived.
Pure string functions, no IPython.
"""

from __future__ import annotations

import re

from .markdown_blocks import scan

__all__ = ["close_open", "close_open_counted", "sentence_cut"]

# A half-typed last line that is only a block marker so far ("-", "1.", "##", "``", "|", "---"):
# shown now, it would flash a setext heading, an empty list item, a stray backtick or a rule.
_HALF_MARKER = re.compile(r"^ {0,3}(?:[-=_*+#>`~|]+|\d{1,9}[.)]?)[ \t]*$")
# a sentence end followed by the start of the next sentence
_SENTENCE_END = re.compile(r"[.!?;:][\"')\]]?[ \t]+(?=[A-Z0-9(\"'*`\[_])")


def close_open(text: str) -> str:
    """What to show for ``text``, an answer still streaming, so its incomplete end renders sanely.

    Holds back a last line that is only a half-typed block marker, closes an open code fence,
    completes a table whose delimiter row has not arrived, and closes (or holds back, when
    nothing follows it yet) an unbalanced code span or ``**`` in the last paragraph.
    """
    return close_open_counted(text)[0]


def close_open_counted(text: str) -> tuple[str, int]:
    """``close_open(text)`` and how many characters at the end of ``text`` it holds back."""
    if not text:
        return text, 0
    found = scan(text)
    offset = text.rfind("\n", 0, len(text) - 1) + 1 if text.endswith("\n") else text.rfind("\n") + 1
    complete = text.endswith("\n")
    last = text[offset:].rstrip("\n")
    fence = found.open_fence
    if not complete and found.fences and found.fences[-1].end == offset:  # a closing fence still being typed
        return text[:offset] + found.fences[-1].closing, len(last)
    if fence is not None and fence.start == offset and not complete and not fence.info:
        fence = None  # "```" still being typed: a half marker until its line ends or says more
    if fence is not None:
        core = last.lstrip(" >") if ">" in fence.closing else last.strip()
        if fence.start != offset and not complete and core and set(core) == {fence.closing[-1]}:
            return text[:offset] + fence.closing, len(last)  # a half-typed closing fence
        return text + ("" if complete else "\n") + fence.closing, 0
    hidden = 0
    if not complete and _HALF_MARKER.match(last):
        text, hidden = text[:offset], len(last)
    start = found.last_block
    if start >= len(text):
        return text, hidden
    rows = text[start:].split("\n")
    table = _complete_table(rows[:-1] if rows[-1] == "" else rows)
    if table is not None:
        return text[:start] + "\n".join(table), hidden
    shown, held = _close_inline(text[start:])
    return text[:start] + shown, hidden + held


def sentence_cut(text: str) -> int:
    """A last-resort cut in a long top-level paragraph: after the last sentence end of its last
    line where no code span, emphasis, link text or inline math is open (0: none).

    Both halves then render as paragraphs, so the paragraph shows split in two while it streams
    (the final display is whole). Never inside lists, quotes, tables, code or display math.
    """
    paragraph = scan(text).paragraph
    if paragraph < 0:
        return 0
    start = text.rfind("\n") + 1
    for m in reversed(list(_SENTENCE_END.finditer(text, start))):
        if _inline_closed(text[paragraph:m.end()]):
            return m.end()
    return 0


# -- inline markup left open at the end of the last paragraph -----------------------------------
_BACKTICKS = re.compile(r"`+")  # a code span opens and closes with a run of the same length
_TICKS_OR_STARS = re.compile(r"`+|\*\*")  # a ``**``, or a backtick run (a code span it opens is skipped)
_CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1(?!`)")  # a closed code span: what it holds is not markup
_WORD_UNDERSCORE = re.compile(r"(?<=[A-Za-z0-9])_(?=[A-Za-z0-9])")  # snake_case: never emphasis


def _inline_closed(head: str) -> bool:
    """Whether nothing inline is left open at the end of ``head``: it may end a paragraph."""
    if _open_code_span(head)[0] >= 0 or _open_strong(head) >= 0:
        return False
    rest = _CODE_SPAN.sub("", head).replace("\\\\", "").replace("\\$", "").replace("\\[", "").replace("\\]", "")
    rest = rest.replace("**", "")
    return (rest.count("$") % 2 == 0 and rest.count("[") == rest.count("]") and rest.count("*") % 2 == 0
            and len(_WORD_UNDERSCORE.sub("", rest).split("_")) % 2 == 1)


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
        # the closer must be a run of exactly ``length``: after a backtick it would lengthen that run
        # (``a`` + `` → a run of three that closes nothing, and what follows shows as Markdown)
        gap = " " if core.endswith("`") else ""
        block = core + gap + "`" * length + block[len(core) :]
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


# -- a table whose delimiter row has not arrived (GFM) ---------------------------------------------
_TABLE_START = re.compile(r"^ {0,3}\|")  # a header row we complete: only one that starts with a pipe
_HALF_DELIMITER = re.compile(r"^ {0,3}[|:\- \t]*$")  # a delimiter row still being typed (or whole)
# a whole delimiter row: a table only when it has as many cells as the header row
_DELIMITER = re.compile(r"^ {0,3}\|?[ \t]*:?-+:?[ \t]*(?:\|[ \t]*:?-+:?[ \t]*)*\|?[ \t]*$")
_CELL_BORDER = re.compile(r"(?<!\\)\|")  # a pipe between cells (an escaped one is text)


def _table_cells(line: str) -> int:
    row = line.strip()
    if row.startswith("|"):
        row = row[1:]
    if row.endswith("|") and not row.endswith("\\|"):
        row = row[:-1]
    return max(1, len(_CELL_BORDER.split(row)))


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
