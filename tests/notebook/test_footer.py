"""The one footer: exact facts, notices and cost wording for every view."""

from __future__ import annotations

import pytest

from jupyter_llmchat.core.reply import Reply, Usage
from jupyter_llmchat.notebook.footer import escape_markdown, footer_facts, footer_markdown, status_line


def test_footer_markdown_escapes_and_formats() -> None:
    reply = Reply(text="x", model="my_model*v2", usage=Usage(1234, 56), total_time=12.34, cost=1.5)
    assert footer_markdown(reply) == (
        "<sub>my\\_model\\*v2 · 1,234 in · 56 out tokens · 12.3 s · $1.50</sub>",
        "[my_model*v2 · 1,234 in · 56 out tokens · 12.3 s · $1.50]",
    )
    assert footer_markdown(reply, facts=False) is None


@pytest.mark.parametrize(
    ("reply", "facts"),
    [
        (Reply("x", "gpt-4o-mini", usage=Usage(1200, 345), cost=0.000387, total_time=2.345),
         ["gpt-4o-mini", "1,200 in · 345 out tokens", "2.3 s", "$0.00039"]),
        (Reply("x", "m", usage=Usage(10, 2), cost=0.0234, from_cache=True), ["m", "10 in · 2 out tokens", "from cache"]),
        (Reply("x", "m", cost=1234.5), ["m", "$1,234.50"]),  # core.models.format_cost, the one cost format
        (Reply("x", "m", cost=0.0), ["m", "$0"]),
        (Reply("x", "m", cost=0.0, total_time=0.25, demo=True), ["m", "0.2 s", "demo, no cost"]),  # offline demo
    ],
)
def test_footer_facts_exact(reply: Reply, facts: list[str]) -> None:
    assert footer_facts(reply) == facts


def test_partial_answers_carry_the_one_notice_wording() -> None:
    stopped = Reply("part", "m", status="interrupted")
    assert footer_markdown(stopped, facts=False) == (
        "**⚠ answer interrupted: partial text kept**", "[answer interrupted: partial text kept]")
    truncated = Reply("part", "m", status="truncated")
    assert footer_markdown(truncated, facts=False) == (
        "**⚠ answer truncated: it reached an output token limit (finish\\_reason=length)**",
        "[answer truncated: it reached an output token limit (finish_reason=length)]")
    assert footer_markdown(Reply("", "m", status="failed", error="boom")) is None  # the error is raised


def test_status_line_exact() -> None:
    reply = Reply(text="x", model="gpt-4o-mini", usage=Usage(1200, 345), cost=0.000387, total_time=2.345)
    assert status_line(reply) == "gpt-4o-mini · 1,200 in · 345 out tokens · 2.3 s · $0.00039"
    stopped = Reply(text="x", model="llama3", status="interrupted", total_time=0.5)
    assert status_line(stopped) == "llama3 · 0.5 s · answer interrupted: partial text kept"
    failed = Reply(text="", model="m", status="failed", error="401: bad key", usage=Usage(0, 0), cost=0.0)
    assert status_line(failed) == "m · 0 in · 0 out tokens · $0 · request failed: 401: bad key"


def test_escape_markdown_keeps_text_as_text() -> None:
    assert escape_markdown("a_b*c`d[e]<f>#g|h~i\\j") == "a\\_b\\*c\\`d\\[e\\]\\<f\\>\\#g\\|h\\~i\\\\\\\\j"
    # dollars and a backslash before a letter: the page holds \$ and \\, which MathJax shows as $ and \
    assert escape_markdown("costs $5, plan $20 \\(x") == "costs \\\\$5, plan \\\\$20 \\\\\\\\&#40;x"
    assert escape_markdown("two\nlines") == "two lines"


def test_the_facts_that_see_into_an_answer() -> None:
    logprobs = [{"token": "a", "logprob": -0.1053605156578263, "top_logprobs": []},
                {"token": "b", "logprob": -2.3025850929940455, "top_logprobs": []}]
    reply = Reply("ab", "gpt-4o", usage=Usage(900, 2), cost=0.0023, total_time=1.25, time_to_first_token=0.3456,
                  logprobs=logprobs, seed=42, system_fingerprint="fp_44709d6fcb", trimmed_turns=3,
                  request={"fit": "the 8,192-token window"})
    assert footer_facts(reply) == ["gpt-4o", "900 in · 2 out tokens", "1.2 s", "$0.0023",
                                   "probability: mean 50.0%, lowest 10.0%", "seed 42", "fp_44709d6fcb",
                                   "3 earlier turns left out to fit the 8,192-token window"]
    assert footer_facts(reply, first_token=True)[2:4] == ["1.2 s", "first token 0.35 s"]
    assert footer_markdown(reply) == (
        "<sub>gpt-4o · 900 in · 2 out tokens · 1.2 s · $0.0023 · probability: mean 50.0%, lowest 10.0% · seed 42 · "
        "fp\\_44709d6fcb · 3 earlier turns left out to fit the 8,192-token window</sub>",
        "[gpt-4o · 900 in · 2 out tokens · 1.2 s · $0.0023 · probability: mean 50.0%, lowest 10.0% · seed 42 · "
        "fp_44709d6fcb · 3 earlier turns left out to fit the 8,192-token window]")
    demo = Reply("x", "m", demo=True, cost=0.0, system_fingerprint="fp_loopback", seed=3)
    assert footer_facts(demo) == ["m", "demo, no cost", "seed 3"]  # the offline demo server's fingerprint: no model's
    # the fingerprint comes from the endpoint: escaped, and named when it is not OpenAI's fp_ form
    other = Reply("x", "m", system_fingerprint="<b>$x$</b>", trimmed_turns=1, request={"fit": "prompt_token_limit=500"})
    assert footer_facts(other) == ["m", "fingerprint <b>$x$</b>", "1 earlier turn left out to fit prompt_token_limit=500"]
    assert footer_markdown(other)[0] == ("<sub>m · fingerprint \\<b\\>\\\\$x\\\\$\\</b\\> · 1 earlier turn left out "
                                         "to fit prompt\\_token\\_limit=500</sub>")
