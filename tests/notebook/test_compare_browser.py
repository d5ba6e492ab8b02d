"""Answers side by side, and the token-probability view, in a real browser: JupyterLab and Notebook 7.

The test process runs the loopback server and scripts the answers; the kernel the front end started
asks it through the real openai SDK. ``%%chat -m gpt-4o -m gpt-4o-mini -m gpt-4.1`` must stream the
three answers at once into three columns of one output (seen while they stream: several columns
hold text, none has its footer yet), each column ending with its footer; one answer carries an
injection payload, which must show as text and run nothing. ``%%chat --logprobs`` must show the
tokens shaded, each with its tooltip, the payload's tokens as text. Screenshots go to
test-output/browser/ (compare-streaming-*, compare-*, logprobs-*). Skipped like the other browser
tests when the browser is missing (CI=true: a failure).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from support.browser.jupyter_harness import JupyterLab, NotebookPage, browser_skip_mark, chat_setup_cell, write_notebook

from jupyter_llmchat.server import LoopbackServer

pytestmark = browser_skip_mark()

ANSWERS = [
    ("## Retries\n\nRetry on **429** and **5xx**, with exponential backoff:\n\n- start at 1 s\n- double each time\n"
     "- stop after 5 tries\n\n```python\ndelay = min(2 ** attempt, 30)\n```\n\nHonour `retry-after` when it comes."),
    ("Short version: back off and retry.\n\n| status | retry? |\n|---|---|\n| 429 | yes, after retry-after |\n"
     "| 500 | yes |\n| 400 | no |\n\nAnything else is a bug in the request."),
    ('Careful: <img src=x onerror="window.__pwned=1"> <script>window.__pwned=2</script> '
     "[click me](javascript:window.__pwned=3)\n\nRetries are safe for idempotent requests; a chat completion is "
     "one, so retry it **as is**."),
]
LOGPROBS_ANSWER = 'Yes, <b onmouseover="window.__pwned=4">sure</b>: retry the request 🎉'
COLUMN_JS = """() => [...document.querySelectorAll('.jp-CodeCell')[1].querySelectorAll('.llmchat-column')].map(c => ({
    label: c.querySelector('.llmchat-column-model').textContent,
    answer: c.querySelector('.llmchat-column-answer').innerText.trim(),
    footer: (c.querySelector('.llmchat-footer') || {}).textContent || null,
    left: c.getBoundingClientRect().left, top: c.getBoundingClientRect().top,
}))"""
DANGERS_JS = """() => {
    const found = [];
    for (const el of document.querySelectorAll('.jp-OutputArea-output *')) {
        const tag = el.tagName.toLowerCase();
        if (['script', 'iframe', 'object', 'embed', 'img', 'form'].includes(tag)) found.push('<' + tag + '>');
        for (const attr of el.attributes) { if (/^on/i.test(attr.name)) found.push(tag + ' ' + attr.name); }
        if (tag === 'a' && el.hasAttribute('href') && !/^(https?:|mailto:|#)/i.test(el.getAttribute('href')))
            found.push('a ' + el.getAttribute('href'));
    }
    return found;
}"""


@pytest.mark.parametrize("app", ["lab", "notebook"])
def test_three_models_side_by_side_and_the_token_view(app: str, server: LoopbackServer, browser_context: Any,
                                                      tmp_path: Path) -> None:
    write_notebook(tmp_path / "compare.ipynb",
                   chat_setup_cell(server.base_url),
                   "%%chat -m gpt-4o -m gpt-4o-mini -m gpt-4.1\nHow should I retry failed API calls?",
                   "%%chat --logprobs --no-history --seed 7\nShould I retry?")
    for answer in ANSWERS:
        server.queue(reply=answer, rate=25.0)  # a few seconds each, all at once
    server.queue(reply=LOGPROBS_ANSWER)
    with JupyterLab(tmp_path, app=app) as lab:
        page = browser_context.new_page()
        try:
            notebook = NotebookPage(page, lab).open("compare.ipynb")
            # started, not awaited (the command's promise ends with the last cell): the answers are seen streaming
            page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")
            # while they stream: at least two columns hold text at once, and no footer has come yet
            page.wait_for_function(f"() => {{ const c = ({COLUMN_JS})(); return c.length === 3 && "
                                   "c.filter(x => x.answer && !/waiting|answering/.test(x.answer)).length >= 2 && "
                                   "c.every(x => x.footer === null); }")
            streaming = page.evaluate(COLUMN_JS)
            notebook.screenshot(f"compare-streaming-{app}")
            page.wait_for_function(f"() => ({COLUMN_JS})().every(c => c.footer !== null)", timeout=120_000)
            notebook.wait_kernel_idle()
            page.wait_for_function("() => document.querySelectorAll('.jp-CodeCell')[2]"
                                   ".querySelectorAll('.llmchat-tokens span').length > 5")
            columns = page.evaluate(COLUMN_JS)
            dangers = page.evaluate(DANGERS_JS)
            pwned = page.evaluate("() => typeof window.__pwned")
            grid = page.locator(".jp-CodeCell").nth(1).locator(".llmchat-compare")
            grid.scroll_into_view_if_needed()
            notebook.screenshot(f"compare-{app}", ".jp-CodeCell:nth-child(2) .jp-OutputArea" if app == "lab" else None)
            tokens = page.locator(".jp-CodeCell").nth(2).locator(".llmchat-tokens span")
            spans = tokens.evaluate_all("els => els.map(e => [e.textContent, e.getAttribute('title'), "
                                        "getComputedStyle(e).backgroundColor])")
            view = page.locator(".jp-CodeCell").nth(2).locator(".llmchat-logprobs")
            view.scroll_into_view_if_needed()
            tokens.nth(3).hover()
            notebook.screenshot(f"logprobs-{app}", ".jp-CodeCell:nth-child(3) .jp-OutputArea" if app == "lab" else None)
        finally:
            page.close()
    assert [c["label"] for c in streaming] == ["gpt-4o", "gpt-4o-mini", "gpt-4.1"]
    assert [c["label"] for c in columns] == ["gpt-4o", "gpt-4o-mini", "gpt-4.1"]
    assert len({round(c["top"]) for c in columns}) == 1 and columns[0]["left"] < columns[1]["left"] < columns[2]["left"]
    shown = sorted(c["answer"].split("\n")[0] for c in columns)  # which model got which script is the server's pick
    assert shown == sorted(["Retries", "Short version: back off and retry.",
                            'Careful: <img src=x onerror="window.__pwned=1"> <script>window.__pwned=2</script> '
                            "click me"])  # the javascript: link's text, no link
    for column in columns:
        assert column["footer"].startswith(f"{column['label']} · ") and " · first token " in column["footer"]
    assert dangers == [] and pwned == "undefined"
    assert "".join(text for text, _, _ in spans) == LOGPROBS_ANSWER
    assert all(title and "%" in title for _, title, _ in spans)  # each token's probability (and alternatives)
    assert len({background for _, _, background in spans}) > 1  # shaded by probability
