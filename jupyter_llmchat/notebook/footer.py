"""The one footer of an answer: its facts (model, tokens, time, cost) and its notice, for every view.

The cell (live Markdown), ``-f code``/``--json`` and the chat panel's status line all build what
they say about an answer here, with the wording of ``core.reply.status_notice`` and the cost
format of ``core.models.format_cost``, so an answer is reported the same way wherever it shows.
"""

from __future__ import annotations

from ..core.models import format_cost
from ..core.reply import Reply
from ..store.transcript import markdown_literal

__all__ = ["escape_markdown", "footer_facts", "footer_markdown", "status_line"]

def escape_markdown(text: str) -> str:
    """``text`` (a model name, an error) as Markdown that shows exactly those characters, on one
    line: markup escaped, and dollars and backslashes written so MathJax never reads math."""
    return markdown_literal(text)


def footer_facts(reply: Reply) -> list[str]:
    """The footer's facts in order: model, tokens, time, cost (or "from cache")."""
    facts = [reply.model]
    if reply.usage is not None:
        usage = reply.usage
        facts.append(f"{usage.prompt_tokens:,} in · {usage.completion_tokens:,} out tokens")
    if reply.from_cache:
        facts.append("from cache")
    else:
        if reply.total_time:
            facts.append(f"{reply.total_time:.1f} s")
        if reply.demo:  # the offline demo server wrote it: no model, no price
            facts.append("demo, no cost")
        elif reply.cost is not None:
            facts.append(format_cost(reply.cost))
    return facts


def footer_markdown(reply: Reply, *, facts: bool = True) -> tuple[str, str] | None:
    """(markdown, plain) footer under ``reply``: its facts and, if the answer is not clean, its notice.

    The notice (interrupted, truncated, filtered, failed with partial text) is shown even when
    ``facts`` is False, because it marks the answer above as partial. None: nothing to show.
    """
    if reply.status == "failed" and not reply.text:
        return None  # no answer to mark or describe; the error itself reaches the caller
    markdown: list[str] = []
    plain: list[str] = []
    notice = reply.notice
    if notice:
        markdown.append(f"**⚠ {escape_markdown(notice)}**")
        plain.append(f"[{notice}]")
    if facts:
        parts = footer_facts(reply)
        # the model name comes from the endpoint; the other facts are ours (one lone "$" at most,
        # which neither JupyterLab's math extraction nor MathJax can pair: it shows as a dollar)
        shown = [escape_markdown(parts[0]), *parts[1:]]
        markdown.append("<sub>" + " · ".join(shown) + "</sub>")
        plain.append("[" + " · ".join(parts) + "]")
    if not markdown:
        return None
    return "\n\n".join(markdown), "\n".join(plain)


def status_line(reply: Reply) -> str:
    """One line for a status bar (the chat panel's): the facts, then the notice if there is one."""
    notice = reply.notice
    return " · ".join([*footer_facts(reply), *([notice] if notice else [])])
