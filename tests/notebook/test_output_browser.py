"""Markdown outputs in a real browser, in JupyterLab and in Notebook 7: model text never runs script,
and money and math render right.

The test process runs the loopback server and scripts each answer; the kernel (started by the
front end) asks it through the real openai SDK. Trusted outputs (cells run in the session) are
rendered without the front end's sanitizer, so a control ``IPython.display.HTML`` cell proves a
handler in an output *would* run; the ``%%chat`` answers, ``%chat history`` and the whole payload
corpus (tests/support/xss_corpus.py, each payload display-safe as one output) must set no flag and
leave no live element, handler or link outside http(s)/mailto in the page. Screenshots go to
test-output/browser/. Skipped like the panel's browser test when the browser is missing (CI=true:
a failure).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from support.browser.jupyter_harness import JupyterLab, NotebookPage, browser_skip_mark, write_notebook
from support.xss_corpus import PAYLOADS

from jupyter_llmchat.server import LoopbackServer

pytestmark = browser_skip_mark()

ANSWER = ("Careful: <img src=x onerror=\"window.__pwned=1\"> and `<b>code</b>`\n\n"
          "<script>window.__pwned=2</script>\n\n[click me](javascript:window.__pwned=3) "
          "[ok](https://example.org) Use ``<img src=x onerror=\"window.__pwned=4\">`\n\n"
          "| `a | <img src=x onerror=\"window.__pwned=5\"> | b` |\n|---|---|---|\n| 1 | 2 | 3 |\n\n"
          "$\\href{javascript:window.__pwned=6}{math link}$")
MONEY = "The basic plan costs $5 per month, the pro plan $20, and the team plan $45 (US$540 a year)."
MATH = ("Math still typesets: $x^2 + y^2 = z^2$, and\n\n$$\\int_0^1 x\\,dx = \\frac{1}{2}$$\n\n"
        "with a model's own delimiters \\(a+b\\) and\n\n\\[e^{i\\pi} + 1 = 0\\]")
CONTROL = ("from IPython.display import HTML\n"
           "HTML('<div class=\"llmchat-control\"><img src=x onerror=\"window.__control=1\"></div>')")
# three payloads to an output, as one answer holding them (front ends show at most 50 outputs a cell)
CORPUS_CELL = ("import json\nfrom IPython.display import display\n"
               "from jupyter_llmchat.notebook.safe_markdown import safe_markdown\n"
               "payloads = json.loads({!r})\n"
               "for i in range(0, len(payloads), 3):\n"
               "    text = '\\n\\n'.join(payloads[i:i + 3])\n"
               "    display({{'text/markdown': safe_markdown(text), 'text/plain': text}}, raw=True)")
# Everything in the notebook's outputs that could run script or leave for another scheme (the
# front end's own "#heading" anchor links excepted).
DANGERS_JS = """() => {
    const found = [];
    const ok = (url, img) => /^(https?:|mailto:)/i.test(url) || (img && /^data:image\\/(png|jpe?g|gif|webp|bmp|avif)[;,]/i.test(url));
    for (const el of document.querySelectorAll('.jp-OutputArea-output *')) {
        if (el.closest('.llmchat-control')) continue;  // the control cell's own handler
        const tag = el.tagName.toLowerCase();
        if (['script', 'iframe', 'object', 'embed', 'style', 'frame', 'form', 'base', 'link', 'meta'].includes(tag)
            && !el.closest('mjx-container')) found.push('<' + tag + '>');
        for (const attr of el.attributes) {
            if (/^on/i.test(attr.name)) found.push('<' + tag + ' ' + attr.name + '> in ' + el.closest('.jp-OutputArea-output').innerText.slice(0, 80));
        }
        const anchor = el.classList.contains('jp-InternalAnchorLink') && el.getAttribute('href').startsWith('#');
        if (tag === 'a' && el.hasAttribute('href') && !ok(el.getAttribute('href'), false) && !anchor
            && !el.closest('mjx-container')) found.push('<a href=' + el.getAttribute('href') + '>');
        if (tag === 'img' && !ok(el.getAttribute('src') || '', true)) found.push('<img src=' + el.getAttribute('src') + '>');
    }
    return found;
}"""


@pytest.fixture(scope="module", params=["lab", "notebook"])
def front_end(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
              server: LoopbackServer) -> Iterator[JupyterLab]:
    root = tmp_path_factory.mktemp(f"{request.param}-root")
    env = {"OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": None, "JUPYTER_LLMCHAT_STORE": None}
    with JupyterLab(root, env=env, app=request.param) as jupyter:
        yield jupyter


@pytest.fixture
def page(front_end: JupyterLab, browser_context: Any) -> Iterator[NotebookPage]:
    tab = browser_context.new_page()
    yield NotebookPage(tab, front_end)
    tab.close()


def wait_typeset(notebook: NotebookPage) -> None:
    """MathJax typesets after the HTML is in the page: wait until no math is pending."""
    notebook.page.wait_for_timeout(1500)
    notebook.page.wait_for_function("() => !document.querySelector('.jp-OutputArea-output .MathJax_Processing')")


def test_answers_history_and_the_corpus_run_no_script(front_end: JupyterLab, page: NotebookPage,
                                                      server: LoopbackServer) -> None:
    from playwright.sync_api import expect

    write_notebook(front_end.root_dir / "xss.ipynb",
                   "%load_ext jupyter_llmchat", CONTROL,
                   "%%chat\nSay something dangerous", "%chat history",
                   CORPUS_CELL.format(json.dumps(PAYLOADS)))
    server.queue(reply=ANSWER)
    page.open("xss.ipynb")
    page.run_all()
    tab = page.page
    wait_typeset(page)
    tab.wait_for_function("() => window.__control === 1")  # a trusted HTML output does run handlers
    answer = tab.locator(".jp-Cell").nth(2).locator(".jp-OutputArea-output").first
    expect(answer).to_contain_text('Careful: <img src=x onerror="window.__pwned=1"> and')
    expect(answer).to_contain_text("<script>window.__pwned=2</script>")
    expect(answer.locator("code").first).to_have_text("<b>code</b>")
    assert answer.locator("a", has_text="ok").get_attribute("href") == "https://example.org"
    assert (answer.locator("table th").count(), answer.locator("table td").count()) == (3, 3)  # cells stay cells
    corpus = tab.locator(".jp-Cell").nth(4).locator(".jp-OutputArea-output")
    assert corpus.count() == (len(PAYLOADS) + 2) // 3
    for link in tab.locator(".jp-OutputArea-output a").all():  # what a reader could click
        if link.is_visible() and (link.get_attribute("href") or "").startswith("http") is False:
            link.click(modifiers=["Control"])
    assert tab.evaluate(DANGERS_JS) == []
    assert tab.evaluate("() => [typeof window.__pwned, window.__control]") == ["undefined", 1]
    page.screenshot(f"xss-{front_end.app}", ".jp-Cell:nth-child(3)" if front_end.app == "lab" else None)


def test_money_shows_as_dollars_and_math_typesets(front_end: JupyterLab, page: NotebookPage,
                                                  server: LoopbackServer) -> None:
    write_notebook(front_end.root_dir / "money.ipynb",
                   "%load_ext jupyter_llmchat\n%config ChatMagics.store = ':memory:'",
                   "%%chat\nWhat do the plans cost?", "%%chat\nShow me some math", "%chat usage")
    server.queue(reply=MONEY)
    server.queue(reply=MATH)
    page.open("money.ipynb")
    page.run_all()
    wait_typeset(page)
    cells = page.page.locator(".jp-Cell")
    money = cells.nth(1).locator(".jp-OutputArea-output").first
    assert money.inner_text().strip() == MONEY
    assert money.locator("mjx-container").count() == 0
    math = cells.nth(2).locator(".jp-OutputArea-output").first
    assert math.locator("mjx-container").count() == 4  # inline, display, \( \) and \[ \]
    assert "$" not in math.inner_text()
    usage = cells.nth(3).locator(".jp-OutputArea-output table")
    assert usage.locator("mjx-container").count() == 0
    costs = usage.locator("td").all_inner_texts()
    assert any(text.startswith("$") for text in costs)
    page.command("notebook:hide-all-cell-code") if front_end.app == "lab" else None
    page.screenshot(f"money-math-{front_end.app}")
