"""A streamed %%chat answer in a real browser, in JupyterLab and in Notebook 7: no frame shows a
block twice, the output never shrinks by more than a line, and the cell ends with the answer and
its footer only.

The test process runs the loopback server and streams a 1,500-token answer (every heading unique)
to a kernel the front end started; a ``requestAnimationFrame`` loop in the page samples the
cell's output area on every frame the browser paints: the headings it shows, its height, how
many outputs it holds. Notebook 7 puts a long output into a scrolled box of ~300 px as it grows
(a single growing output too): that one change of height is the front end's, not a flash. At
the end the pieces become one output, which Notebook 7 shows unboxed (as it shows any long
output added at once): a growth. Screenshots go to test-output/browser/. Skipped like the panel's browser
test when the browser is missing (CI=true: a failure).
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest
from support.browser.jupyter_harness import JupyterLab, NotebookPage, browser_skip_mark, chat_setup_cell, write_notebook

from jupyter_llmchat.core.tokens import TokenCounter
from jupyter_llmchat.server import LoopbackServer

pytestmark = browser_skip_mark()


def answer_text(sections: int) -> str:
    """A chat answer the way models write one: headings (each unique), paragraphs, lists, code, tables."""
    parts = ["# A long answer\n\nThis answer streams in many pieces, so the cell freezes finished blocks "
             "into outputs of their own while it grows.\n"]
    for i in range(sections):
        parts.append(
            f"## Step {i + 1:02d}: what happens here\n\n"
            f"In step {i + 1} the model explains **one idea** with `inline code` and a few plain sentences. "
            f"It goes on long enough to wrap on a narrow screen, the way real answers do, and it ends.\n\n"
            f"- a first point about step {i + 1}\n- a second point, a little longer than the first one\n\n"
            f"```python\ndef step_{i + 1:02d}(values):\n    return [v * {i + 1} for v in values]\n```\n\n"
            f"| name | value |\n|---|---|\n| step | {i + 1} |\n| squared | {(i + 1) ** 2} |\n")
    parts.append("## In short\n\nThat is the whole answer.\n")
    return "\n".join(parts)


ANSWER = answer_text(17)
TOKENS = TokenCounter("gpt-4o-mini").count_text(ANSWER)
HEADINGS = [line.lstrip("# ") for line in ANSWER.split("\n") if line.startswith("#")]

SAMPLER_JS = """() => {
    window.__frames = [];
    const cell = () => document.querySelectorAll('.jp-CodeCell')[1];
    const sample = () => {
        const area = cell() && cell().querySelector('.jp-OutputArea');
        if (area) {
            const children = area.querySelectorAll(':scope > .jp-OutputArea-child');
            window.__frames.push({
                t: performance.now(),
                height: area.getBoundingClientRect().height,
                // Notebook 7 shows any output taller than ~300 px in a scrolled box of its own
                scrolled: cell().classList.contains('jp-mod-outputsScrolled'),
                outputs: children.length,
                headings: [...area.querySelectorAll('h1, h2, h3, h4, h5, h6')].map(h => h.textContent.replace(/¶$/, '').trim()),
            });
        }
        if (!window.__stopSampling) requestAnimationFrame(sample);
    };
    requestAnimationFrame(sample);
}"""
LINE_JS = """() => {
    const p = document.querySelectorAll('.jp-CodeCell')[1].querySelector('.jp-RenderedMarkdown p');
    return parseFloat(getComputedStyle(p).lineHeight);
}"""


@pytest.mark.parametrize("app", ["lab", "notebook"])
def test_a_streamed_answer_never_shows_a_block_twice_nor_shrinks(app: str, server: LoopbackServer,
                                                                browser_context: Any, tmp_path: Path) -> None:
    assert TOKENS >= 1500
    write_notebook(tmp_path / "stream.ipynb",
                   chat_setup_cell(server.base_url),
                   "%%chat --no-history\nExplain it step by step.")
    server.queue(reply=ANSWER, rate=150.0)  # about 10 s of streaming
    with JupyterLab(tmp_path, app=app) as lab:
        page = browser_context.new_page()
        try:
            notebook = NotebookPage(page, lab).open("stream.ipynb")
            page.evaluate(SAMPLER_JS)
            notebook.command("notebook:run-all-cells")
            page.wait_for_function("() => document.querySelectorAll('.jp-CodeCell')[1]"
                                   ".querySelectorAll('h2').length >= 6")
            notebook.screenshot(f"cell-streaming-{app}")
            page.wait_for_function("() => document.querySelectorAll('.jp-CodeCell')[1]"
                                   ".querySelector('.jp-OutputArea').textContent.includes('gpt-4o-mini ·')",
                                   timeout=120_000)
            notebook.wait_kernel_idle()
            page.wait_for_timeout(500)  # a few more frames after the end
            page.evaluate("() => { window.__stopSampling = true; }")
            frames = page.evaluate("() => window.__frames")
            line = page.evaluate(LINE_JS)
            page.locator(".jp-CodeCell").nth(1).locator(".jp-OutputArea-output").last.locator("sub").scroll_into_view_if_needed()
            notebook.screenshot(f"cell-final-{app}")  # the end of the answer and its footer
        finally:
            page.close()
    streaming = [f for f in frames if f["headings"]]
    assert len(streaming) > 100  # the browser painted many frames while the answer streamed
    twice = [f["headings"] for f in streaming if len(set(f["headings"])) != len(f["headings"])]
    assert twice == [], f"a heading shown twice in {len(twice)} frames, e.g. {twice[:1]}"
    pairs = list(itertools.pairwise(streaming))
    boxed = [not b["scrolled"] and a["scrolled"] for b, a in pairs]
    assert sum(boxed) <= 1  # Notebook 7 boxes the growing output once (as it boxes any long output)
    for (before, after), into_box in zip(pairs, boxed):
        if not into_box:
            assert after["height"] >= before["height"] - line, (before, after, line)
    assert streaming[-1]["headings"] == HEADINGS  # every heading, in order, once
    assert streaming[-1]["outputs"] == 1  # the answer with its footer, nothing else
    assert max(f["outputs"] for f in streaming) > 2  # while it streamed, finished blocks were frozen
    summary = {"app": app, "tokens": TOKENS, "frames": len(streaming), "line_px": line,
               "largest_drop_px": max(0.0, *(b["height"] - a["height"] for (b, a), x in zip(pairs, boxed) if not x)),
               "scrolled_box": streaming[-1]["scrolled"],
               "most_outputs": max(f["outputs"] for f in streaming)}
    print("frames:", json.dumps(summary))
