"""How a conversation looks in the chat panel: bubbles and the streaming bubble.

Model text is untrusted: it only ever reaches HTML through ``html.markdown_to_html``. While an
answer streams, ``StreamingBubble`` re-renders only its live tail (finished blocks are frozen and
sent once), so a long answer costs IOPub bytes in proportion to its length.
"""

from __future__ import annotations

from typing import Any

import ipywidgets as widgets  # type: ignore[import-untyped]

from ..core.reply import status_notice
from .freezing import Cut, FreezePolicy
from .html import escape, markdown_to_html, sanitize_token_view
from .logprobs_view import logprobs_html
from .markdown_partial import close_open, close_open_counted


# The panel's prices for the freeze policy every view shares (freezing.FreezePolicy). A freeze
# here opens a widget (HTML, Layout and Style: 3 comm messages, ~3.6 KB measured) and resends the
# bubble's children (1 more); closing it when the answer is redrawn costs ~1.5 KB more: ~6 KB in
# all. Repaints alone are ~10/s (11 in some 1-s windows): the budget leaves room for a freeze or two
# a second (the old panel had no budget at all).
def panel_policy() -> FreezePolicy:
    """The freeze policy of one streaming bubble, at the panel's prices."""
    return FreezePolicy(freeze_cost=6000, soft_min=1024, max_rate=20, freeze_messages=4)

CSS = """<style>
.llmchat-panel { max-width: 900px; box-sizing: border-box; }
.llmchat-panel * { box-sizing: border-box; }
.llmchat-panel .widget-textarea, .llmchat-panel .widget-textarea textarea { max-width: 100%; }
.llmchat-scroll { border: 1px solid #e0e0e0; border-radius: 6px; padding: 2px 8px; margin: 4px 0; }
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
.llmchat-split > .widget-html-content > :last-child { margin-bottom: 0; padding-bottom: 0;
  border-bottom-left-radius: 0; border-bottom-right-radius: 0; }
.llmchat-cont > .widget-html-content > :first-child { margin-top: 0; padding-top: 0;
  border-top-left-radius: 0; border-top-right-radius: 0; }
.llmchat-bubble > .widget-html > .widget-html-content { line-height: 1.45; }
.llmchat-status { font-size: 12px; color: #555; }
.llmchat-status .widget-html-content { line-height: 1.4; white-space: normal; }
.llmchat-messages:empty::before { content: "Ask below: the conversation shows here."; color: #999;
  font-size: 12px; }
.llmchat-error { color: #b00020; }
.llmchat-logprobs { margin: 4px 0; }
.llmchat-logprobs-summary { cursor: pointer; font-size: 12px; color: #666; }
.llmchat-tokens { white-space: pre-wrap; word-break: break-word; line-height: 1.7; padding: 4px 0;
  font-family: var(--jp-code-font-family, monospace); font-size: 12px; }
</style>"""


def bubble_html(role: str, text: str, *, status: str = "complete", label: str | None = None,
                logprobs: list[dict[str, Any]] | None = None, calls: str = "") -> str:
    """One finished chat bubble. User text is shown as typed; model text is untrusted Markdown,
    rendered sanitized; a partial answer carries its notice (the wording every view uses). An
    answer's ``logprobs`` add its token view under the text (folded: the text is above it);
    ``calls`` (``tool_calls.turn_html``: the tool calls it made, display-safe) go above the text."""
    if role == "user":
        body = f'<div class="llmchat-text">{escape(text)}</div>'
    else:
        body = calls + markdown_to_html(text)
        if logprobs:
            body += sanitize_token_view(logprobs_html(logprobs, open=False))
    notice = status_notice(status, has_text=bool(text))
    return (f'<div class="llmchat-bubble llmchat-{role} llmchat-{status}">'
            f'<div class="llmchat-role">{escape(label or role)}</div>'
            f'<div class="llmchat-body">{body}</div>'
            + (f'<div class="llmchat-notice">{escape(notice)}</div>' if notice else "") + "</div>")


class StreamingBubble:
    """The bubble of an answer while it streams: a label, frozen pieces, and a live tail.

    Only the live tail is re-rendered and resent on a repaint. When the freeze policy every view
    shares says so, the live widget keeps the answer up to a cut it has not shown yet (so it only
    grows) and a new live widget continues after it: a long answer costs IOPub bytes in
    proportion to its length, not its square, and no text ever moves from one widget to another
    (which would show it twice, or not at all, between the two messages). A piece cut inside a
    block (a long fence or list, a long paragraph) is drawn without the margins at the seam, so
    the block still looks whole.
    """

    def __init__(self, label: str, *, policy: FreezePolicy | None = None) -> None:
        self.policy = policy if policy is not None else panel_policy()
        self.label = widgets.HTML(f'<div class="llmchat-role">{escape(label)}</div>')
        self.live = _body_widget("")
        self.widget = widgets.VBox([self.label, self.live])
        for css in ("llmchat-bubble", "llmchat-assistant", "llmchat-streaming"):
            self.widget.add_class(css)
        self.frozen: list[str] = []  # the Markdown each frozen piece shows, in order
        self.live_start = 0  # where the live tail starts in the answer
        self.live_prefix = ""  # reopens the fence the live tail starts inside
        self.shown_end = 0  # the end (offset in the answer) of what the live widget shows
        self.sent = 0  # characters of HTML sent so far (live repaints plus frozen pieces)
        self.largest = 0  # the largest live repaint, in characters of HTML

    def set_label(self, label: str) -> None:
        self.label.value = f'<div class="llmchat-role">{escape(label)}</div>'

    def paint(self, text: str) -> bool:
        """Show ``text`` (the answer so far), incomplete Markdown closed for display; False while
        nothing of it can be shown yet (a half-typed marker is all there is)."""
        cut = self.policy.cut(text, self.live_start, self.live_prefix, after=self.shown_end)
        if cut is not None:
            self._freeze(text, cut)
        markdown, hidden = close_open_counted(self.live_prefix + text[self.live_start:])
        hold = self.policy.hold(text, self.live_start, self.live_prefix)
        if hold is not None and self.shown_end <= hold < len(text) - hidden:  # may start a cut: not yet
            markdown, held = close_open_counted(self.live_prefix + text[self.live_start:hold])
            hidden = len(text) - hold + held
        self.shown_end = len(text) - hidden
        html = markdown_to_html(markdown)
        self._show(html)
        self.policy.repainted(len(html))
        return bool(markdown) or bool(self.frozen)

    def finish(self, text: str, status: str) -> None:
        """Show the exact answer's tail and the final status (and notice, if partial)."""
        self._show(markdown_to_html(self.live_prefix + text[self.live_start:]))
        self.widget.remove_class("llmchat-streaming")
        self.widget.add_class(f"llmchat-{status}")
        notice = status_notice(status, has_text=bool(text))
        if notice:
            self.widget.children = (*self.widget.children,
                                    widgets.HTML(f'<div class="llmchat-notice">{escape(notice)}</div>'))

    def add_block(self, text: str, block: widgets.Widget, *, after: widgets.Widget | None = None) -> None:
        """Show ``block`` (tool calls, or Approve / Deny) right after ``after``, else after the
        answer so far (``text``): that text stays above it as it is, what follows streams below."""
        if after is None and text[self.live_start:].strip():
            self._freeze(text, Cut(len(text)))  # the live widget keeps the text so far, exactly
        children = list(self.widget.children)
        at = children.index(after) + 1 if after is not None else children.index(self.live)
        self.widget.children = (*children[:at], block, *children[at:])

    def remove_block(self, block: widgets.Widget) -> None:
        self.widget.children = tuple(child for child in self.widget.children if child is not block)

    def _freeze(self, text: str, cut: Cut) -> None:
        """The live widget keeps the answer up to ``cut`` (it only gains text it never showed);
        a new live widget, added after it, continues from there."""
        markdown = self.live_prefix + text[self.live_start:cut.at]
        if cut.open_end:
            markdown = close_open(markdown)  # ends inside a fence: close it
        piece = self.live
        self.live_start, self.live_prefix, self.shown_end = cut.at, cut.prefix, cut.at
        self.live = _body_widget("")
        if cut.split:
            piece.add_class("llmchat-split")
            self.live.add_class("llmchat-cont")
        self._show_in(piece, markdown_to_html(markdown))
        self.frozen.append(markdown)
        self.widget.children = (*self.widget.children, self.live)
        for _ in range(self.policy.freeze_messages):
            self.policy.sent()
        self.policy.frozen()

    def _show(self, html: str) -> None:
        if self.live.value != html:
            self._show_in(self.live, html)
            self.largest = max(self.largest, len(html))

    def _show_in(self, body: widgets.HTML, html: str) -> None:
        body.value = html
        self.sent += len(html)
        self.policy.sent()


def _body_widget(html: str) -> widgets.HTML:
    body = widgets.HTML(html)
    body.add_class("llmchat-body")
    return body
