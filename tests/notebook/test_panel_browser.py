"""The chat panel in a real browser: JupyterLab on loopback, headless Debian chromium, playwright.

The test process runs the loopback OpenAI-compatible server and scripts each answer; the
notebook's kernel (started by JupyterLab) talks to it over real HTTP through the openai SDK.
Skipped with a reason when chromium/playwright/jupyterlab are missing, unless CI=true, where a
missing browser is a failure (.ci/install-browser.sh installs everything).
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest
from support.browser.jupyter_harness import (
    REPO_ROOT,
    JupyterLab,
    NotebookPage,
    browser_skip_mark,
    fail_without_browser,
    write_notebook,
)

from jupyter_llmchat.server import LoopbackServer

NOTEBOOK = REPO_ROOT / "notebooks" / "panel.ipynb"
TABLE_AND_CODE = ("Here is a comparison:\n\n| Language | Typing |\n|---|---|\n| Python | dynamic |\n"
                  "| Rust | static |\n\nAnd the code:\n\n```python\ndef greet(name):\n"
                  "    return f\"hello {name}\"\n```\n\nThat is all.")
PAYLOAD = ('Careful: <img src=x onerror="window.__pwned=1"> and\n\n<script>window.__pwned=2</script>\n\n'
           "[click me](javascript:window.__pwned=3)")
# Control: a plain ipywidgets HTML widget runs such a handler, so the panel's escaping is what
# protects the page (proves the check below could fail).
CONTROL_CELL = "import ipywidgets\nipywidgets.HTML('<img src=x onerror=\"window.__control=1\">')"

pytestmark = browser_skip_mark()


@pytest.fixture(scope="module")
def lab_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("lab-root")


@pytest.fixture(scope="module")
def lab(lab_root: Path, server: LoopbackServer) -> Iterator[JupyterLab]:
    fail_without_browser()
    # The panel notebook reads LLMCHAT_PANEL_BASE_URL, the magics OPENAI_BASE_URL; no real key leaks in.
    env = {"LLMCHAT_PANEL_BASE_URL": server.base_url, "OPENAI_BASE_URL": server.base_url,
           "OPENAI_API_KEY": None}
    with JupyterLab(lab_root, env=env) as jupyter:
        yield jupyter


@pytest.fixture
def notebook_page(lab: JupyterLab, browser_context: Any) -> Iterator[NotebookPage]:
    page = browser_context.new_page()
    yield NotebookPage(page, lab)
    page.close()


@pytest.fixture(scope="module")
def panel_page(lab: JupyterLab, lab_root: Path, browser_context: Any) -> Iterator[NotebookPage]:
    """notebooks/panel.ipynb (plus the control cell) opened and run once for the panel tests."""
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(CONTROL_CELL))
    nbformat.write(nb, lab_root / "panel.ipynb")
    page = browser_context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    notebook = NotebookPage(page, lab).open("panel.ipynb")
    notebook.command("application:toggle-left-area")  # more room for the panel in screenshots
    notebook.run_all()
    page.locator(".llmchat-panel textarea").first.wait_for()
    yield notebook
    print("page errors:", errors or "none")
    page.close()


def ask(page: Any, question: str, *, shift_enter: bool = False) -> Any:
    """Type ``question`` into the panel and send it; return the locator of the new answer bubble."""
    answers = page.locator(".llmchat-panel .llmchat-assistant")
    before = answers.count()
    textarea = page.locator(".llmchat-input textarea")
    textarea.fill(question)
    if shift_enter:
        textarea.press("Shift+Enter")
    else:
        page.locator("button.llmchat-send").click()
    from playwright.sync_api import expect

    expect(answers).to_have_count(before + 1)
    return answers.nth(before)


def wait_done(answer: Any) -> None:
    """Wait until the answer bubble has stopped streaming (complete, stopped or failed)."""
    from playwright.sync_api import expect

    expect(answer).not_to_have_class(re.compile(r"\bllmchat-streaming\b"))


def test_harness_renders_an_ipywidget(lab: JupyterLab, lab_root: Path, notebook_page: NotebookPage) -> None:
    """The harness itself: lab starts, the notebook opens, cells run, the widget manager renders."""
    write_notebook(lab_root / "harness.ipynb", "import ipywidgets\nipywidgets.Button(description='harness-ok')")
    notebook_page.open("harness.ipynb")
    notebook_page.run_all()
    button = notebook_page.page.locator(".jp-OutputArea-output button.widget-button", has_text="harness-ok")
    button.wait_for(timeout=30_000)
    assert button.inner_text() == "harness-ok"
    assert notebook_page.screenshot("harness").exists()


def test_panel_streams_a_rendered_markdown_answer(panel_page: NotebookPage, server: LoopbackServer) -> None:
    from playwright.sync_api import expect

    page = panel_page.page
    server.queue(reply=TABLE_AND_CODE, rate=15.0)  # slow enough to watch it stream
    answer = ask(page, "Compare Python and Rust typing, with code")
    expect(answer).to_have_class(re.compile(r"\bllmchat-streaming\b"))  # it is streaming in ...
    expect(answer).not_to_have_class(re.compile(r"\bllmchat-streaming\b"))  # ... and then done

    table = answer.locator("table")
    expect(table).to_be_visible()
    assert table.locator("th").all_inner_texts() == ["Language", "Typing"]
    assert table.locator("td").all_inner_texts() == ["Python", "dynamic", "Rust", "static"]
    code = answer.locator("pre code.language-python")
    expect(code).to_be_visible()
    assert code.inner_text() == 'def greet(name):\n    return f"hello {name}"\n'
    expect(page.locator(".llmchat-user").last).to_have_text(re.compile("Compare Python and Rust typing"))
    expect(page.locator(".llmchat-status")).to_contain_text(re.compile(r"gpt-4o-mini · \d+ in · \d+ out tokens · "))
    assert server.requests[-1].body["messages"][-1] == {"role": "user",
                                                       "content": "Compare Python and Rust typing, with code"}
    assert server.requests[-1].body["messages"][0]["role"] == "system"
    panel_page.screenshot("panel-answer")


def test_shift_enter_sends_and_stop_keeps_the_partial_answer(panel_page: NotebookPage,
                                                            server: LoopbackServer) -> None:
    from playwright.sync_api import expect

    page = panel_page.page
    server.queue(tokens=3000, rate=15.0)  # minutes of text: only Stop ends it
    answer = ask(page, "Write a very long essay", shift_enter=True)
    expect(answer.locator(".llmchat-body p").first).to_be_visible()  # partial text has arrived
    expect(answer).to_have_class(re.compile(r"\bllmchat-streaming\b"))
    panel_page.screenshot("panel-streaming")

    # The kernel stays responsive while the answer streams in its worker thread.
    status = page.evaluate("""async () => {
        const kernel = window.jupyterapp.shell.currentWidget.sessionContext.session.kernel;
        const reply = await kernel.requestExecute({code: 'import threading; threading.active_count()'}).done;
        return reply.content.status;
    }""")
    assert status == "ok"
    expect(answer).to_have_class(re.compile(r"\bllmchat-streaming\b"))  # still streaming meanwhile

    # Shift+Enter while an answer streams sends nothing, types no newline and runs no cell.
    counts = "() => window.jupyterapp.shell.currentWidget.content.widgets.map(c => c.model.executionCount)"
    executed = page.evaluate(counts)
    users = page.locator(".llmchat-panel .llmchat-user")
    asked = users.count()
    textarea = page.locator(".llmchat-input textarea")
    textarea.fill("not now")
    textarea.press("Shift+Enter")
    assert textarea.input_value() == "not now"  # without the hook it would be "not now\n"
    assert (users.count(), page.evaluate(counts)) == (asked, executed)
    textarea.fill("")

    page.locator("button.llmchat-stop").click()
    stopped = page.locator(".llmchat-panel .llmchat-assistant").last
    expect(stopped).to_have_class(re.compile(r"\bllmchat-interrupted\b"))
    expect(stopped.locator(".llmchat-notice")).to_have_text("answer interrupted: partial text kept")
    assert len(stopped.locator(".llmchat-body").first.inner_text()) > 0
    expect(page.locator(".llmchat-status")).to_contain_text("answer interrupted: partial text kept")
    expect(page.locator("button.llmchat-send")).to_be_enabled()
    expect(page.locator("button.llmchat-stop")).to_be_disabled()
    assert server.requests[-1].body["messages"][-1] == {"role": "user", "content": "Write a very long essay"}
    panel_page.screenshot("panel-stopped")


def test_injected_html_and_script_do_not_run(panel_page: NotebookPage, server: LoopbackServer) -> None:
    from playwright.sync_api import expect

    page = panel_page.page
    page.wait_for_function("() => window.__control === 1")  # a raw-HTML widget would run it
    page.locator(".llmchat-panel select").first.select_option("gpt-4.1-mini")
    server.queue(reply=PAYLOAD)
    answer = ask(page, "Say something dangerous")
    wait_done(answer)
    expect(answer).to_have_class(re.compile(r"\bllmchat-complete\b"))
    body = answer.locator(".llmchat-body")
    expect(body).to_contain_text('Careful: <img src=x onerror="window.__pwned=1"> and')
    expect(body).to_contain_text("<script>window.__pwned=2</script>")
    assert answer.locator("img, script, iframe").count() == 0
    link = body.locator("a", has_text="click me")
    assert link.get_attribute("href") is None
    link.click()
    assert page.evaluate("() => [typeof window.__pwned, window.__control]") == ["undefined", 1]
    assert server.requests[-1].body["model"] == "gpt-4.1-mini"
    panel_page.screenshot("panel-injection")


def test_attachment_thumbnail_is_shown_and_sent(panel_page: NotebookPage, server: LoopbackServer,
                                                tmp_path: Path) -> None:
    from PIL import Image
    from playwright.sync_api import expect

    page = panel_page.page
    image = tmp_path / "green.png"
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), "green").save(buffer, format="PNG")
    image.write_bytes(buffer.getvalue())
    with page.expect_file_chooser() as chooser:  # FileUpload's <input type=file> is not in the DOM
        page.locator(".llmchat-panel .widget-upload").click()
    chooser.value.set_files(str(image))
    expect(page.locator(".llmchat-panel .widget-upload")).to_have_text(re.compile(r"\(1\)"))
    expect(page.locator(".llmchat-panel .widget-image")).to_have_count(1)  # the thumbnail before sending
    users = page.locator(".llmchat-panel .llmchat-user")
    before = users.count()
    server.queue(reply="A green square.")
    answer = ask(page, "What colour is this?")
    wait_done(answer)
    expect(answer).to_have_class(re.compile(r"\bllmchat-complete\b"))
    expect(users).to_have_count(before + 1)
    expect(page.locator(".llmchat-panel .llmchat-messages img")).to_have_count(1)
    content = server.requests[-1].body["messages"][-1]["content"]
    assert content[0] == {"type": "text", "text": "What colour is this?"}
    assert content[1]["image_url"]["url"].startswith("data:image/png;base64,")
    panel_page.screenshot("panel-conversation", ".llmchat-panel")  # the whole panel, all turns


def test_new_chat_clears_the_panel(panel_page: NotebookPage, server: LoopbackServer) -> None:
    from playwright.sync_api import expect

    page = panel_page.page
    page.locator("button.llmchat-new").click()
    expect(page.locator(".llmchat-panel .llmchat-bubble")).to_have_count(0)
    expect(page.locator(".llmchat-status")).to_have_text("new chat")
    server.queue(reply="Fresh start.")
    answer = ask(page, "Hello again")
    wait_done(answer)
    expect(answer).to_have_text(re.compile("Fresh start."))
    assert [m["role"] for m in server.requests[-1].body["messages"]] == ["system", "user"]
    panel_page.screenshot("panel-new-chat")


def test_chat_panel_magic_shares_the_session_with_chat_cells(lab_root: Path, notebook_page: NotebookPage,
                                                             server: LoopbackServer) -> None:
    """``%chat panel work`` and ``%%chat -s work`` continue one conversation, both ways."""
    from playwright.sync_api import expect

    write_notebook(lab_root / "magic-panel.ipynb", "%load_ext jupyter_llmchat\n%chat panel work",
                   "%%chat -s work\nWhat is the capital of France?")
    server.queue(reply="Paris, asked from a cell.")
    notebook_page.open("magic-panel.ipynb")
    notebook_page.run_all()
    page = notebook_page.page
    bubbles = page.locator(".llmchat-panel .llmchat-bubble")
    expect(bubbles).to_have_count(2)  # the %%chat cell's turn shows up in the panel
    expect(bubbles.nth(0)).to_contain_text("What is the capital of France?")
    expect(bubbles.nth(1)).to_contain_text("Paris, asked from a cell.")
    expect(page.locator(".llmchat-panel")).to_contain_text("session work")

    server.queue(reply="Still Paris, from the panel.")
    answer = ask(page, "Are you sure?")
    wait_done(answer)
    expect(answer).to_contain_text("Still Paris, from the panel.")
    assert server.requests[-1].body["messages"] == [
        {"role": "user", "content": "What is the capital of France?"},
        {"role": "assistant", "content": "Paris, asked from a cell."},
        {"role": "user", "content": "Are you sure?"}]
    notebook_page.screenshot("magic-panel")


def test_an_output_widget_captures_a_streamed_answer(lab_root: Path, notebook_page: NotebookPage,
                                                     server: LoopbackServer) -> None:
    """``with out:`` around an answer streamed into a cell: JupyterLab keeps it in the ipywidgets
    Output (which drops display updates, IPython's own too), rendered, with its footer."""
    from playwright.sync_api import expect

    write_notebook(lab_root / "output-widget.ipynb",
                   "import os, ipywidgets\nfrom IPython.display import display\nfrom jupyter_llmchat import Chatbot\n"
                   "from jupyter_llmchat.notebook.display import make_sink\n"
                   "out = ipywidgets.Output()\nout.add_class('llmchat-test-output')\ndisplay(out)",
                   "bot = Chatbot('gpt-4o-mini', base_url=os.environ['OPENAI_BASE_URL'])\n"
                   "with out, make_sink() as sink:\n"
                   "    reply = bot.ask('Stream into a widget', sink=sink)\n"
                   "print(reply.status)")
    server.queue(reply=TABLE_AND_CODE, rate=40.0)
    notebook_page.open("output-widget.ipynb")
    notebook_page.run_all()
    page = notebook_page.page
    widget = page.locator(".llmchat-test-output")
    expect(widget.locator("table")).to_be_visible()
    assert widget.locator("th").all_inner_texts() == ["Language", "Typing"]
    assert widget.locator("pre code").inner_text() == 'def greet(name):\n    return f"hello {name}"'
    expect(widget).to_contain_text(re.compile(r"gpt-4o-mini · \d+ in · \d+ out tokens"))  # the footer
    expect(widget).not_to_contain_text("answering")
    cells = page.locator(".jp-Cell")
    expect(cells.nth(1).locator(".jp-OutputArea-output")).to_have_text("complete")  # nothing else there
    notebook_page.screenshot("output-widget")


LAYOUT_SAMPLER_JS = """() => {
    window.__layout = [];
    const rect = sel => { const r = document.querySelector(sel).getBoundingClientRect(); return [r.x, r.y, r.width, r.height]; };
    const sample = () => {
        const scroller = document.querySelector('.llmchat-panel .llmchat-scroll');
        window.__layout.push({input: rect('.llmchat-panel .llmchat-input textarea'), send: rect('.llmchat-panel button.llmchat-send'),
                              stop: rect('.llmchat-panel button.llmchat-stop'), scroller: rect('.llmchat-panel .llmchat-scroll'),
                              panel: rect('.llmchat-panel'), scrolls: scroller.scrollHeight > scroller.clientHeight + 1});
        if (!window.__stopLayout) requestAnimationFrame(sample);
    };
    requestAnimationFrame(sample);
}"""
# Everything in the panel that sticks out of it on the right (the message area clips its own content).
OVERFLOW_JS = """() => {
    const panel = document.querySelector('.llmchat-panel');
    const right = panel.getBoundingClientRect().right;
    return [...panel.querySelectorAll('*')].filter(el => !el.closest('.llmchat-scroll'))
        .filter(el => el.getBoundingClientRect().right > right + 0.5)
        .map(el => el.tagName.toLowerCase() + '.' + [...el.classList].join('.'));
}"""
# The newest answer text is in view: the streaming bubble's bottom is inside the message area.
NEWEST_IN_VIEW_JS = """() => {
    const scroller = document.querySelector('.llmchat-panel .llmchat-scroll').getBoundingClientRect();
    const bubbles = document.querySelectorAll('.llmchat-panel .llmchat-assistant');
    const last = bubbles[bubbles.length - 1].getBoundingClientRect();
    return last.bottom <= scroller.bottom + 1 && last.bottom >= scroller.top;
}"""


def test_the_input_and_buttons_stay_put_while_an_answer_streams(panel_page: NotebookPage,
                                                                server: LoopbackServer) -> None:
    """The messages scroll in an area of their own: while a long answer streams, the input, Send
    and Stop do not move, the newest text stays in view, nothing sticks out of the panel, and New
    chat leaves the panel as tall as it was."""
    from playwright.sync_api import expect

    page = panel_page.page
    server.queue(tokens=1500, rate=60.0)  # longer than the area: it has to scroll
    page.evaluate(LAYOUT_SAMPLER_JS)
    answer = ask(page, "A long answer, please")
    expect(answer.locator(".llmchat-body li").first).to_be_visible()
    page.wait_for_function("() => window.__layout.some(s => s.scrolls)")
    page.wait_for_timeout(1500)  # keep streaming a little while it scrolls
    assert page.evaluate(NEWEST_IN_VIEW_JS)
    panel_page.screenshot("panel-layout-streaming", ".llmchat-panel")
    page.evaluate("() => { window.__layout.push('stop'); }")
    page.locator("button.llmchat-stop").click()
    wait_done(answer)
    page.evaluate("() => { window.__stopLayout = true; }")
    samples = page.evaluate("() => window.__layout")
    streaming = samples[:samples.index("stop")]
    assert len(streaming) > 30 and any(s["scrolls"] for s in streaming)
    for part in ("input", "send", "stop", "scroller", "panel"):
        assert {tuple(s[part]) for s in streaming} == {tuple(streaming[0][part])}, part  # not a pixel moved
    assert page.evaluate(OVERFLOW_JS) == []
    height = page.locator(".llmchat-panel").bounding_box()["height"]
    page.locator("button.llmchat-new").click()
    expect(page.locator(".llmchat-panel .llmchat-bubble")).to_have_count(0)
    assert page.locator(".llmchat-panel").bounding_box()["height"] == height  # New chat does not collapse it
    panel_page.screenshot("panel-layout-new-chat", ".llmchat-panel")


def test_nothing_sticks_out_of_a_narrow_panel(panel_page: NotebookPage) -> None:
    page = panel_page.page
    size = page.viewport_size
    try:
        page.set_viewport_size({"width": 640, "height": size["height"]})
        page.wait_for_timeout(500)
        assert page.evaluate(OVERFLOW_JS) == []
        panel_page.screenshot("panel-layout-narrow", ".llmchat-panel")
    finally:
        page.set_viewport_size(size)


def test_a_rejected_key_shows_in_the_status_line(lab_root: Path, notebook_page: NotebookPage) -> None:
    """GET /v1/models answering 401 (a bad key): the status line says so as the panel opens."""
    from playwright.sync_api import expect

    with LoopbackServer(api_key="sk-the-right-key") as guarded:
        write_notebook(lab_root / "bad-key.ipynb",
                       "from jupyter_llmchat import Chatbot\nfrom jupyter_llmchat.notebook.panel import ChatPanel\n"
                       f"bot = Chatbot('gpt-4o-mini', base_url={guarded.base_url!r}, api_key='sk-wrong-key', "
                       "max_retries=0)\nChatPanel(bot)")
        notebook_page.open("bad-key.ipynb")
        notebook_page.run_all()
        status = notebook_page.page.locator(".llmchat-panel .llmchat-status")
        expect(status).to_contain_text("could not list the models: authentication failed (401)")
        expect(status.locator(".llmchat-error")).to_have_count(1)
        assert "sk-wrong" not in status.inner_text()
        notebook_page.screenshot("panel-bad-key", ".llmchat-panel")
