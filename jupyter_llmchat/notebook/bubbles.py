"""How a conversation looks in the chat panel: bubbles, the streaming bubble, the status line.

Model text is untrusted: it only ever reaches HTML through ``html.markdown_to_html``. While an
answer streams, ``StreamingBubble`` re-renders only its live tail (finished blocks are frozen and
sent once), so a long answer costs IOPub bytes in proportion to its length.
"""

from __future__ import annotations

import ipywidgets as widgets  # type: ignore[import-untyped]

from ..core.reply import Reply
from .display import footer_parts
from .html import escape, markdown_to_html
from .markdown_blocks import close_open, find_boundaries

# Characters of live Markdown a streaming bubble resends per repaint before its finished blocks
# are frozen (sent once). Small enough to bound each repaint, large enough to freeze rarely.
FREEZE_AT = 2000
NOTICES = {
    "interrupted": "stopped: partial answer kept",
    "failed": "the stream broke: partial answer kept",
    "truncated": "answer truncated: it reached max tokens",
    "filtered": "answer stopped by the provider's content filter",
}

CSS = """<style>
.llmchat-panel { max-width: 900px; }
.llmchat-bubble { border-radius: 10px; padding: 6px 12px; margin: 4px 0; line-height: 1.45;
  overflow-x: auto; }
.llmchat-user { background: #e3effd; margin-left: 15%; }
.llmchat-user .llmchat-text { white-space: pre-wrap; }
.llmchat-assistant { background: #f4f4f4; margin-right: 10%; }
.llmchat-role { font-size: 11px; color: #666; }
.llmchat-bubble pre { background: #272822; color: #f8f8f2; padding: 8px; border-radius: 6px;
  overflow-x: auto; }
.llmchat-bubble table { border-collapse: collapse; margin: 6px 0; }
.llmchat-bubble th, .llmchat-bubble td { border: 1px solid #bbb; padding: 2px 8px; }
.llmchat-interrupted, .llmchat-failed { border: 1px dashed #d9822b; }
.llmchat-notice { font-size: 12px; font-style: italic; color: #b35c00; margin-top: 4px; }
.llmchat-streaming > .llmchat-body:last-child .widget-html-content > :last-child::after {
  content: "▍"; color: #888; }
.llmchat-bubble > .widget-html { margin: 0; }
.llmchat-bubble > .widget-html > .widget-html-content { line-height: 1.45; }
.llmchat-status { font-size: 12px; color: #555; }
.llmchat-error { color: #b00020; }
</style>"""


def bubble_html(role: str, text: str, *, status: str = "complete", label: str | None = None) -> str:
    """One finished chat bubble. User text is shown as typed; model text is untrusted Markdown,
    rendered sanitized; a partial answer carries its notice."""
    if role == "user":
        body = f'<div class="llmchat-text">{escape(text)}</div>'
    else:
        body = markdown_to_html(text)
    notice = NOTICES.get(status)
    return (f'<div class="llmchat-bubble llmchat-{role} llmchat-{status}">'
            f'<div class="llmchat-role">{escape(label or role)}</div>'
            f'<div class="llmchat-body">{body}</div>'
            + (f'<div class="llmchat-notice">{escape(notice)}</div>' if notice else "") + "</div>")


def status_text(reply: Reply) -> str:
    """The status line for the last answer: the cell footer's facts (model, tokens, time, cost)
    plus any notice, so the panel and ``%%chat`` report an answer the same way."""
    parts = footer_parts(reply)
    notice = NOTICES.get(reply.status) if reply.status != "failed" else f"request failed: {reply.error}"
    return " · ".join(parts) + (f" · {notice}" if notice else "")


class StreamingBubble:
    """The bubble of an answer while it streams: a label, frozen pieces, and a live tail.

    Only the live tail is re-rendered and resent on a repaint. Once it holds ``freeze_at``
    characters, its finished top-level blocks (a hard cut from ``markdown_tail``, where
    rendering the parts apart renders the same) move into a frozen piece that is sent once, so
    a long answer costs IOPub bytes in proportion to its length, not its square.
    """

    def __init__(self, label: str, *, freeze_at: int = FREEZE_AT) -> None:
        self.freeze_at = freeze_at
        self.label = widgets.HTML(f'<div class="llmchat-role">{escape(label)}</div>')
        self.live = _body_widget("")
        self.widget = widgets.VBox([self.label, self.live])
        for css in ("llmchat-bubble", "llmchat-assistant", "llmchat-streaming"):
            self.widget.add_class(css)
        self.frozen: list[str] = []  # the Markdown of each frozen piece, in order
        self.live_start = 0  # where the live tail starts in the answer
        self.sent = 0  # characters of HTML sent so far (live repaints plus frozen pieces)
        self.largest = 0  # the largest live repaint, in characters of HTML

    def set_label(self, label: str) -> None:
        self.label.value = f'<div class="llmchat-role">{escape(label)}</div>'

    def paint(self, text: str) -> None:
        """Show ``text`` (the answer so far), incomplete Markdown closed for display."""
        tail = text[self.live_start:]
        if len(tail) >= self.freeze_at:
            cut = find_boundaries(tail).hard
            if cut > 0:
                piece = _body_widget(markdown_to_html(tail[:cut]))
                self.widget.children = (*self.widget.children[:-1], piece, self.live)
                self.frozen.append(tail[:cut])
                self.sent += len(piece.value)
                self.live_start += cut
                tail = tail[cut:]
        self._show(markdown_to_html(close_open(tail)))

    def finish(self, text: str, status: str) -> None:
        """Show the exact answer's tail and the final status (and notice, if partial)."""
        self._show(markdown_to_html(text[self.live_start:]))
        self.widget.remove_class("llmchat-streaming")
        self.widget.add_class(f"llmchat-{status}")
        notice = NOTICES.get(status)
        if notice:
            self.widget.children = (*self.widget.children,
                                    widgets.HTML(f'<div class="llmchat-notice">{escape(notice)}</div>'))

    def _show(self, html: str) -> None:
        if self.live.value != html:
            self.live.value = html
            self.sent += len(html)
            self.largest = max(self.largest, len(html))


def _body_widget(html: str) -> widgets.HTML:
    body = widgets.HTML(html)
    body.add_class("llmchat-body")
    return body
