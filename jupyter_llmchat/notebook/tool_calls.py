"""How a tool call looks in the notebook: a small collapsible block, the same in a cell and the panel.

Each call the model asked for is a ``<details>`` block: its summary says the tool's name, the
arguments on one line, what came of it and how long it ran; open, it shows the arguments (pretty
JSON when they are JSON) and the result or the error. The HTML is ours: every string in it (the
tool's name, the model's arguments, the tool's result, an error) is escaped, and the block then
goes through an allow-list of its own few tags and attributes (nh3), so ``<img onerror>`` or a
``javascript:`` URL in a result shows as text. Styles are inline (a cell's output has no CSS of
ours) and come from a fixed table, which the allow-list checks.

- ``calls_html``: the blocks of a group of calls (``text/html`` of a cell's output, a panel
  widget's value);
- ``calls_bundle``: a cell output's bundle (``text/html`` and a ``text/plain`` summary);
- ``calls_markdown``: the blocks as one raw-HTML line inside a Markdown output (the cell's final
  swap makes the answer one Markdown output); every character Markdown, JupyterLab's math
  extraction or MathJax might read (``$``, ``\\``, ``@``, a line break) is a character reference,
  so the block's text stays text there too;
- ``calls_plain``: one line per call, for ``text/plain``.

Long arguments and results are cut for display (the cut says how much is left out); the exact
text stays in ``Reply.calls``, the history and the store.
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import nh3

from ..core.errors import one_line
from ..core.reply import ToolCall
from .markdown_blocks import scan
from .safe_markdown import safe_markdown

if TYPE_CHECKING:
    from ..core.messages import Message

__all__ = ["SHOWN_CHARS", "CallsView", "answer_with_calls", "calls_bundle", "calls_from_messages", "calls_html",
           "calls_markdown", "calls_plain", "outcome_text", "tool_turns", "turn_html"]

SHOWN_CHARS = 4000  # of the arguments and of the result, in a block (the rest is said to be cut)
PREVIEW_CHARS = 80  # of the arguments, in the summary line
_ICON = "\U0001f527"  # wrench

# Every style a block uses (the allow-list keeps only these values).
_BORDER = {"ok": "#3a9a5b", "error": "#c0392b", "invalid": "#c0392b", "declined": "#d9822b",
           "stopped": "#d9822b", "skipped": "#999999", "pending": "#5b8fc7", "waiting": "#d9822b"}
_STYLES = {
    **{f"details-{kind}": (f"margin: 4px 0; padding: 2px 8px; border-left: 3px solid {color}; "
                           "font-size: 0.92em; line-height: 1.4;") for kind, color in _BORDER.items()},
    "summary": "cursor: pointer;",
    "muted": "color: #777777;",
    "label": "color: #777777; font-size: 0.9em; margin-top: 4px;",
    "pre": ("margin: 2px 0; padding: 4px 6px; max-height: 20em; overflow: auto; white-space: pre-wrap; "
            "word-break: break-word; font-size: 0.95em;"),
}
_ALLOWED_STYLES = frozenset(_STYLES.values())
_TAGS = {"details", "summary", "div", "span", "pre", "code", "b"}
_ATTRIBUTES = {tag: {"style", "class"} for tag in _TAGS} | {"details": {"style", "class", "open"}}
_CLASSES = frozenset({"llmchat-calls", "llmchat-call", "llmchat-call-name", "llmchat-call-state",
                      *(f"llmchat-call-{kind}" for kind in _BORDER)})

# What each outcome says in the summary (time and approval are added to it).
_OUTCOME = {"pending": "running…", "ok": "done", "error": "raised an error", "invalid": "invalid call",
            "declined": "declined", "stopped": "stopped", "skipped": "not run"}


def outcome_text(call: ToolCall, *, waiting: bool = False) -> str:
    """What came of ``call``, in a few words: the outcome, who approved, how long it ran."""
    if waiting:
        return "waiting for your approval"
    words = _OUTCOME.get(call.outcome, call.outcome)
    if call.outcome == "pending" and call.approved is not None:  # decided, not yet run (or never)
        words = "approved, running…" if call.approved else "declined"
    elif call.outcome == "ok" and call.approved:
        words = "approved, done"
    elif call.outcome == "declined" and call.error and call.error != "the user declined":
        words = "not run: nobody could approve it"
    if call.seconds is not None:
        words += f" in {_seconds(call.seconds)}"
    return words


def calls_html(calls: Sequence[ToolCall], *, waiting: ToolCall | None = None) -> str:
    """The blocks of ``calls`` (folded; the one ``waiting`` for approval is open, so its arguments
    show beside the buttons): escaped, then kept to the blocks' own tags and styles."""
    blocks = "".join(_block(call, waiting=call is waiting) for call in calls)
    return _allowed(f'<div class="llmchat-calls">{blocks}</div>')


def calls_bundle(calls: Sequence[ToolCall], *, waiting: ToolCall | None = None) -> dict[str, str]:
    """A cell output showing ``calls``: the blocks as HTML, and a line per call as plain text."""
    return {"text/html": calls_html(calls, waiting=waiting), "text/plain": calls_plain(calls, waiting=waiting)}


def calls_markdown(calls: Sequence[ToolCall]) -> str:
    """The blocks as one raw-HTML line for a Markdown output (see the module docstring): put it
    between blank lines, at the start of a line, outside any list or fence."""
    block = calls_html(calls)
    for char, reference in (("\r", "&#13;"), ("\n", "&#10;"), ("$", "&#36;"), ("\\", "&#92;"), ("@", "&#64;"),
                            ("`", "&#96;")):
        block = block.replace(char, reference)
    return block


def answer_with_calls(answer: str, groups: Sequence[tuple[int, Sequence[ToolCall]]], footer: str | None = None) -> str:
    """One display-safe Markdown of an answer and its calls: each group of calls (``(at, calls)``:
    where in the answer they came) as its blocks (``calls_markdown``) between the stretches of
    text, each stretch through ``safe_markdown`` with an open code fence closed; ``footer`` (our
    Markdown) at the end."""
    parts: list[str] = []
    at = 0
    for start, calls in groups:
        if answer[at:start].strip():
            parts.append(safe_markdown(_closed(answer[at:start].lstrip("\n"))))
        parts.append(calls_markdown(calls))
        at = start
    tail = _closed(answer[at:].lstrip("\n")) if answer[at:].strip() else ""
    if footer is not None:
        tail = f"{tail}\n\n{footer}" if tail else footer
    if tail:
        parts.append(safe_markdown(tail))
    return "\n\n".join(parts)


def calls_plain(calls: Sequence[ToolCall], *, waiting: ToolCall | None = None) -> str:
    """One line per call: the name and arguments, then the outcome and a preview of the result."""
    lines = []
    for call in calls:
        outcome = outcome_text(call, waiting=call is waiting)
        result = call.error if call.outcome != "ok" and call.error else call.result
        shown = f" → {one_line(result, 120)}" if result and call is not waiting and call.outcome != "pending" else ""
        lines.append(f"{_ICON} {call.name}({_preview(call, 120)}) · {outcome}{shown}")
    return "\n".join(lines)


def calls_from_messages(messages: Iterable[Message], known: dict[str, ToolCall] | None = None) -> list[ToolCall]:
    """The calls a turn's messages hold (assistant messages asking for calls, then tool messages
    with their results), in order; a call in ``known`` (by id: what a Reply said of it, with its
    outcome and time) is taken as it is, any other is rebuilt from the messages."""
    calls: dict[str, ToolCall] = {}
    for message in messages:
        for request in message.tool_calls:
            calls[request.id] = (known or {}).get(request.id) or ToolCall(request.id, request.name, request.arguments)
        if message.role == "tool" and message.tool_call_id in calls:
            call = calls[message.tool_call_id]
            if known is None or message.tool_call_id not in known:
                call.result = message.text
                call.outcome = _outcome_of(message.text)
    return list(calls.values())


def tool_turns(history: Iterable[Message]) -> list[tuple[Message, list[Message]]]:
    """The history as a view draws it: each message but system ones, with the tool-call messages
    before it (assistant messages asking for calls, tool results), which are drawn as its calls,
    never as bubbles of their own. Calls no answer followed (stopped, or max_tool_rounds) are drawn
    with their last message."""
    drawn: list[tuple[Message, list[Message]]] = []
    calls: list[Message] = []
    for message in history:
        if message.role == "system":
            continue
        if message.role == "tool" or message.tool_calls:
            calls.append(message)
            continue
        if calls and message.role != "assistant":
            drawn.append((calls[-1], calls))
            calls = []
        drawn.append((message, calls))
        calls = []
    if calls:
        drawn.append((calls[-1], calls))
    return drawn


def turn_html(messages: Sequence[Message], known: dict[str, ToolCall] | None = None) -> str:
    """What an answer did before its text, as the panel's bubble shows it: each round's text (the
    panel's sanitized Markdown) and the blocks of its calls, in order."""
    from .html import markdown_to_html

    parts = []
    for message in messages:
        if message.role != "assistant" or not message.tool_calls:
            continue
        if message.text.strip():
            parts.append(markdown_to_html(message.text))
        ids = {request.id for request in message.tool_calls}
        results = [other for other in messages if other.role == "tool" and other.tool_call_id in ids]
        parts.append(calls_html(calls_from_messages([message, *results], known)))
    return "".join(parts)


class CallsView:
    """A group of calls in the chat panel's streaming bubble: their blocks in one HTML widget,
    redrawn when a call starts, waits, or ends."""

    def __init__(self) -> None:
        import ipywidgets as widgets  # type: ignore[import-untyped]

        self.calls: list[ToolCall] = []
        self.widget = widgets.HTML()
        self.widget.add_class("llmchat-calls-view")

    def show(self, *, waiting: ToolCall | None = None) -> None:
        value = calls_html(self.calls, waiting=waiting)
        if self.widget.value != value:
            self.widget.value = value


# -- the blocks ------------------------------------------------------------------------------------
def _block(call: ToolCall, *, waiting: bool) -> str:
    kind = "waiting" if waiting else (call.outcome if call.outcome in _BORDER else "pending")
    state = outcome_text(call, waiting=waiting)
    summary = (f'<summary style="{_STYLES["summary"]}">{_ICON} <b><code class="llmchat-call-name">'
               f"{_text(call.name)}</code></b> <code>{_text(_preview(call, PREVIEW_CHARS))}</code> "
               f'<span class="llmchat-call-state" style="{_STYLES["muted"]}">· {_text(state)}</span></summary>')
    parts = [summary, _section("arguments", _arguments_text(call))]
    if not waiting and call.outcome != "pending":
        if call.outcome == "ok":
            parts.append(_section("result", call.result or ""))
        else:
            parts.append(_section(_OUTCOME.get(call.outcome, call.outcome), call.error or call.result or ""))
    opened = " open" if waiting else ""
    return (f'<details class="llmchat-call llmchat-call-{kind}" style="{_STYLES["details-" + kind]}"{opened}>'
            + "".join(parts) + "</details>")


def _closed(markdown: str) -> str:
    """``markdown`` with its open code fence closed, so what follows it shows outside the fence."""
    fence = scan(markdown).open_fence
    return markdown if fence is None else markdown + ("" if markdown.endswith("\n") else "\n") + fence.closing


def _section(label: str, text: str) -> str:
    return (f'<div style="{_STYLES["label"]}">{_text(label)}</div>'
            f'<pre style="{_STYLES["pre"]}"><code>{_text(_shown(text))}</code></pre>')


def _arguments_text(call: ToolCall) -> str:
    """The arguments as sent, pretty when they are a JSON object (else exactly as the model wrote them)."""
    parsed = call.parsed_arguments
    if parsed is None:
        return call.arguments
    return json.dumps(parsed, ensure_ascii=False, indent=2) if parsed else "{}"


def _preview(call: ToolCall, limit: int) -> str:
    parsed = call.parsed_arguments
    text = json.dumps(parsed, ensure_ascii=False) if parsed is not None else call.arguments
    return one_line(text, limit)


def _shown(text: str) -> str:
    if len(text) <= SHOWN_CHARS:
        return text
    return f"{text[:SHOWN_CHARS]}\n… ({len(text) - SHOWN_CHARS:,} more characters not shown)"


def _seconds(seconds: float) -> str:
    if seconds < 0.001:
        return "under 1 ms"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    return f"{seconds:.2f} s" if seconds < 10 else f"{seconds:.1f} s"


def _outcome_of(result: str) -> Any:
    """An outcome read back from a tool message (the tool loop's own wording), for calls drawn from
    a history that has no Reply beside it (a session restored from the store)."""
    if result.startswith("Error: "):
        return "error"
    if result.startswith(("The user declined", "Not run: it needs the user's approval")):
        return "declined"
    if result.startswith("Stopped: "):
        return "stopped"
    if result.startswith("Not run: "):
        return "skipped"
    return "ok"


def _text(text: str) -> str:
    return html.escape(text, quote=True)


def _filter(tag: str, attribute: str, value: str) -> str | None:
    if attribute == "style":
        return value if value in _ALLOWED_STYLES else None
    if attribute == "class":
        return value if value and all(name in _CLASSES for name in value.split()) else None
    return value


def _allowed(fragment: str) -> str:
    """The blocks with only their own tags, classes and styles: a second layer behind the escaping."""
    return nh3.clean(fragment, tags=_TAGS, attributes=_ATTRIBUTES, attribute_filter=_filter, url_schemes=set(),
                     strip_comments=True, link_rel=None)
