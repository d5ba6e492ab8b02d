"""The one footer of an answer: its facts (model, tokens, time, cost; then what lets one see into it:
token probabilities, seed and system fingerprint, turns left out to fit) and its notice, for every view.

The cell (live Markdown), ``-f code``/``--json`` and the chat panel's status line all build what
they say about an answer here, with the wording of ``core.reply.status_notice`` and the cost
format of ``core.models.format_cost``, so an answer is reported the same way wherever it shows.
"""

from __future__ import annotations

from ..core.estimate import trimmed_notice
from ..core.models import format_cost
from ..core.reply import Reply
from ..store.transcript import markdown_literal
from .logprobs_view import stats_text

__all__ = ["escape_markdown", "footer_facts", "footer_markdown", "status_line"]

def escape_markdown(text: str) -> str:
    """``text`` (a model name, an error) as Markdown that shows exactly those characters, on one
    line: markup escaped, and dollars and backslashes written so MathJax never reads math."""
    return markdown_literal(text)


def footer_facts(reply: Reply, *, first_token: bool = False) -> list[str]:
    """The footer's facts in order: model, tokens, time (with ``first_token``: the time to the first
    token too), cost (or "from cache"); then, when there are any, the tokens' mean and lowest
    probability, the seed sent, the system fingerprint, and the turns left out to fit."""
    return [text for text, _ in _facts(reply, first_token)]


def _facts(reply: Reply, first_token: bool) -> list[tuple[str, bool]]:
    """(fact, shown as it is in Markdown): only our cost is; every other fact is escaped (the model
    name and the fingerprint come from the endpoint)."""
    facts = [(reply.model, False)]
    if reply.usage is not None:
        usage = reply.usage
        facts.append((f"{usage.prompt_tokens:,} in · {usage.completion_tokens:,} out tokens", False))
    if reply.from_cache:
        facts.append(("from cache", False))
    else:
        if reply.total_time:
            facts.append((f"{reply.total_time:.1f} s", False))
        if first_token and reply.time_to_first_token is not None:
            facts.append((f"first token {reply.time_to_first_token:.2f} s", False))
        if reply.demo:  # the offline demo server wrote it: no model, no price
            facts.append(("demo, no cost", False))
        elif reply.cost is not None:
            facts.append((format_cost(reply.cost), True))
    probabilities = stats_text(reply.logprobs)
    if probabilities is not None:
        facts.append((probabilities, False))
    if reply.seed is not None:
        facts.append((f"seed {reply.seed}", False))
    fingerprint = reply.system_fingerprint
    if fingerprint and not reply.demo:  # the offline demo server is no model: its fingerprint says nothing
        facts.append((fingerprint if fingerprint.startswith("fp_") else f"fingerprint {fingerprint}", False))
    if reply.trimmed_turns:
        facts.append((trimmed_notice(reply.trimmed_turns, (reply.request or {}).get("fit", "the window")), False))
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
        parts = _facts(reply, False)
        # every fact is escaped but our cost: one lone "$", which neither JupyterLab's math
        # extraction nor MathJax can pair (it shows as a dollar)
        shown = [text if literal else escape_markdown(text) for text, literal in parts]
        markdown.append("<sub>" + " · ".join(shown) + "</sub>")
        plain.append("[" + " · ".join(text for text, _ in parts) + "]")
    if not markdown:
        return None
    return "\n\n".join(markdown), "\n".join(plain)


def status_line(reply: Reply) -> str:
    """One line for a status bar (the chat panel's): the facts, then the notice if there is one."""
    notice = reply.notice
    return " · ".join([*footer_facts(reply), *([notice] if notice else [])])
