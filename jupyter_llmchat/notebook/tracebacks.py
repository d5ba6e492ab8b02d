"""The last exception of an IPython session as plain text, for ``%%chat --error``.

IPython keeps it in ``sys.last_type`` / ``sys.last_value`` / ``sys.last_traceback`` after showing
it. Frames of IPython's own machinery are dropped and cell files are named ``Cell In[n]``, as
IPython shows them, so the model reads the same traceback the user saw, without colour codes.
"""

from __future__ import annotations

import os
import re
import sys
import traceback
from typing import Any

MAX_CELL_CHARS = 6000  # the failing cell's source is included up to this size
_CELL_FILE = re.compile(r'File "(In\[\d+\])", line')


def last_error_block(shell: Any) -> str | None:
    """Markdown with the failing cell's code and the traceback in fenced blocks, or None."""
    value = getattr(sys, "last_value", None)
    if value is None:
        return None
    text, cell = format_last_error(shell, value)
    parts = []
    if cell is not None:
        number, source = cell
        if len(source) > MAX_CELL_CHARS:
            source = source[:MAX_CELL_CHARS] + "\n# ... (cut)"
        parts.append(f"The code that failed (In[{number}]):\n\n```python\n{source.rstrip()}\n```")
    parts.append(f"The error:\n\n```pytb\n{text.rstrip()}\n```")
    return "\n\n".join(parts)


def format_last_error(shell: Any, value: BaseException) -> tuple[str, tuple[int, str] | None]:
    """(traceback text, (cell number, cell source) of the innermost cell frame or None)."""
    exc = traceback.TracebackException(type(value), value, value.__traceback__ or sys.last_traceback,
                                       capture_locals=False)
    last_cell: tuple[int, str] | None = None
    for part in _chain(exc):
        frames = list(part.stack)
        while frames and _is_ipython_frame(frames[0].filename):
            frames.pop(0)
        renamed = []
        for frame in frames:
            label = _cell_label(shell, frame.filename)
            if label is not None:
                number = int(label[3:-1])
                if part is exc:  # the cell shown is the innermost one of the error raised last
                    last_cell = (number, _cell_source(shell, number, frame.filename))
                frame = traceback.FrameSummary(label, frame.lineno, frame.name, line=frame.line)
            renamed.append(frame)
        part.stack = traceback.StackSummary.from_list(renamed)
    text = "".join(exc.format())
    text = _CELL_FILE.sub(lambda m: f"Cell {m.group(1)}, line", text)
    return text, last_cell


def _chain(exc: traceback.TracebackException) -> list[traceback.TracebackException]:
    seen: list[traceback.TracebackException] = []
    todo = [exc]
    while todo:
        current = todo.pop()
        if any(current is s for s in seen):
            continue
        seen.append(current)
        todo += [x for x in (current.__cause__, current.__context__) if x is not None]
    return seen


def _is_ipython_frame(filename: str) -> bool:
    import IPython

    return os.path.abspath(filename).startswith(os.path.dirname(os.path.abspath(IPython.__file__)))


def _cell_label(shell: Any, filename: str) -> str | None:
    compiler = getattr(shell, "compile", None)
    formatter = getattr(compiler, "format_code_name", None)
    named = formatter(filename) if formatter else None
    return named[1] if named else None  # ("Cell", "In[3]")


def _cell_source(shell: Any, number: int, filename: str) -> str:
    history = shell.user_ns.get("In") or []
    if 0 <= number < len(history) and history[number]:
        return history[number]
    import linecache

    return "".join(linecache.getlines(filename))

