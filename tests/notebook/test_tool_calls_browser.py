"""Tool calls in a real browser, in JupyterLab and in Notebook 7: the call blocks and the Approve /
Deny buttons in a ``%%chat`` cell and in the chat panel; one call approved, one denied, a stop
while the buttons wait (a kernel interrupt in the cell, the Stop button in the panel); a tool
result holding script stays text; the notebook saved to disk keeps the blocks.

The test process runs the loopback server and scripts each round; the kernel (started by the
front end) asks it through the real openai SDK. A control cell proves a handler in a trusted
output *would* run. Screenshots go to test-output/browser/ (tools-*). Skipped like the other
browser tests when the browser is missing (CI=true: a failure).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import nbformat
import pytest
from support.browser.jupyter_harness import JupyterLab, NotebookPage, browser_skip_mark, write_notebook

from jupyter_llmchat.core.tool_loop import DECLINED
from jupyter_llmchat.server import LoopbackServer

pytestmark = browser_skip_mark()

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
PAYLOAD = '<img src=x onerror="window.__pwned=1"> [click](javascript:window.__pwned=2) $5 and $6 \\begin{x}'
SETUP = """%load_ext jupyter_llmchat
%config ChatMagics.store = ':memory:'
%config ChatMagics.base_url = {base_url!r}
%config ChatMagics.api_key = 'sk-test'
from jupyter_llmchat import Chatbot
from jupyter_llmchat.core.tools import Tool
from jupyter_llmchat.notebook.panel import ChatPanel
notes = []

def echo(text: str) -> str:
    \"\"\"Say text back.\"\"\"
    return text

def write_note(text: str) -> str:
    \"\"\"Keep a note.\"\"\"
    notes.append(text)
    return f"kept: {{text}}"
"""
CONTROL = ("from IPython.display import HTML\n"
           "HTML('<div class=\"llmchat-control\"><img src=x onerror=\"window.__control=1\"></div>')")
PANEL = ("bot = Chatbot('gpt-4o-mini', base_url={base_url!r}, api_key='sk-test',\n"
         "              tools=[echo, Tool(write_note, confirm=True)])\n"
         "panel = ChatPanel(bot, fetch_models=False)\npanel")
CELLS = [
    SETUP,
    CONTROL,
    "%%chat --tools echo --notebook -s tools\nEcho it, then compute the answer.",
    "%%chat -s tools\nNow remove my files.",
    "%%chat -s tools\nTry once more.",
    PANEL,
]
# Everything in the outputs that could run script or leave for another scheme (the control's own excepted).
DANGERS_JS = """() => {
    const found = [];
    for (const el of document.querySelectorAll('.jp-OutputArea-output *')) {
        if (el.closest('.llmchat-control')) continue;
        const tag = el.tagName.toLowerCase();
        if (['script', 'iframe', 'object', 'embed', 'form', 'base', 'meta'].includes(tag)) found.push('<' + tag + '>');
        for (const attr of el.attributes) {
            if (/^on/i.test(attr.name)) found.push('<' + tag + ' ' + attr.name + '>');
        }
        if (tag === 'img') found.push('<img src=' + el.getAttribute('src') + '>');
        if (tag === 'a' && /^\\s*javascript:/i.test(el.getAttribute('href') || '')) found.push('<a javascript:>');
    }
    return found;
}"""


def run_cell(notebook: NotebookPage, index: int) -> None:
    """Run cell ``index`` alone, as Shift+Enter on it would; returns once it is sent, not when it
    ends (the command's promise settles only when the cell is done, and a cell may wait for a click)."""
    notebook.page.evaluate("""(index) => {
        const panel = window.jupyterapp.shell.currentWidget;
        panel.content.activeCellIndex = index;
        void window.jupyterapp.commands.execute('notebook:run-cell');
    }""", index)


def cell(notebook: NotebookPage, index: int) -> Any:
    return notebook.page.locator(".jp-CodeCell").nth(index)


def wait_done(notebook: NotebookPage, index: int) -> None:
    """Wait until cell ``index`` has run (its execution count is set) and the kernel is idle."""
    notebook.page.wait_for_function("""(index) => {
        const panel = window.jupyterapp.shell.currentWidget;
        const model = panel.content.widgets[index].model;
        return model.executionCount !== null && !panel.content.widgets[index].hasClass('jp-mod-running')
            && panel.sessionContext.session.kernel.status === 'idle';
    }""", arg=index, timeout=90_000)


def states(block_locator: Any) -> list[str]:
    """What each call block's summary says of its call (after the last ' · ')."""
    return [text.rsplit(" · ", 1)[-1].strip() for text in block_locator.locator("summary").all_inner_texts()]


@pytest.mark.parametrize("app", ["lab", "notebook"])
def test_call_blocks_and_approval_in_a_cell_and_in_the_panel(app: str, server: LoopbackServer, browser_context: Any,
                                                              tmp_path: Path) -> None:
    from playwright.sync_api import expect

    write_notebook(tmp_path / "tools.ipynb", *[src.format(base_url=server.base_url) if "{base_url" in src else src
                                               for src in CELLS])
    page = browser_context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        with JupyterLab(tmp_path, app=app) as lab:
            notebook = NotebookPage(page, lab).open("tools.ipynb")
            if app == "lab":
                notebook.command("application:toggle-left-area")
            for index in (0, 1):
                run_cell(notebook, index)
                wait_done(notebook, index)
            page.wait_for_function("() => window.__control === 1")  # a trusted output's handler would run

            # -- a cell: two calls at once, the second (run_python) approved ----------------------------
            server.queue(tool_calls=[{"name": "echo", "arguments": {"text": PAYLOAD}},
                                     {"name": "run_python", "arguments": {"code": "total = 6 * 7\nprint(total)"}}])
            server.queue(reply="The echo came back and the code printed **42**.")
            run_cell(notebook, 2)
            approve = cell(notebook, 2).locator("button.llmchat-approve")
            expect(approve).to_be_visible()
            blocks = cell(notebook, 2).locator("details.llmchat-call")
            expect(blocks).to_have_count(2)
            waiting = states(blocks)
            assert waiting[0].startswith("done in ") and waiting[1] == "waiting for your approval", waiting
            expect(cell(notebook, 2).locator("details[open] pre").first).to_contain_text("total = 6 * 7")
            notebook.screenshot(f"tools-cell-approval-{app}")
            approve.click()
            wait_done(notebook, 2)
            expect(cell(notebook, 2).locator("button.llmchat-approve")).to_have_count(0)
            blocks = cell(notebook, 2).locator("details.llmchat-call")
            final = states(blocks)
            assert final[0].startswith("done in ") and final[1].startswith("approved, done in "), final
            blocks.first.locator("summary").click()  # open the echo: its result is the payload, as text
            echoed = blocks.first.locator("pre").nth(1)
            expect(echoed).to_have_text(PAYLOAD)
            expect(cell(notebook, 2).locator(".jp-OutputArea-output").nth(1)).to_contain_text(
                "The echo came back and the code printed 42.")
            notebook.screenshot(f"tools-cell-{app}")

            # -- the next cell: denied -------------------------------------------------------------------
            server.queue(tool_calls=[{"name": "run_python", "arguments": {"code": "import shutil; shutil.rmtree('.')"}}])
            server.queue(reply="Understood, nothing removed.")
            run_cell(notebook, 3)
            deny = cell(notebook, 3).locator("button.llmchat-deny")
            expect(deny).to_be_visible()
            deny.click()
            wait_done(notebook, 3)
            assert states(cell(notebook, 3).locator("details.llmchat-call")) == ["declined"]
            told = [m["content"] for m in server.requests[-1].body["messages"] if m["role"] == "tool"]
            assert told[-1] == DECLINED  # the model was told

            # -- stopped while the buttons wait: the kernel's interrupt --------------------------------------
            server.queue(tool_calls=[{"name": "run_python", "arguments": {"code": "print('never')"}}])
            asked = len(server.requests)
            run_cell(notebook, 4)
            expect(cell(notebook, 4).locator("button.llmchat-approve")).to_be_visible()
            notebook.command("notebook:interrupt-kernel")
            wait_done(notebook, 4)
            assert states(cell(notebook, 4).locator("details.llmchat-call")) == ["stopped"]
            expect(cell(notebook, 4).locator(".jp-OutputArea-output").last).to_contain_text(
                "answer interrupted before any text")
            assert len(server.requests) == asked + 1  # nothing was asked after the stop

            # -- the panel: approve one call, deny the other, then Stop while it waits ----------------------
            run_cell(notebook, 5)
            wait_done(notebook, 5)
            textarea = page.locator(".llmchat-panel .llmchat-input textarea")
            expect(textarea).to_be_visible()
            server.queue(tool_calls=[{"name": "write_note", "arguments": {"text": "buy milk"}},
                                     {"name": "write_note", "arguments": {"text": "<b>sell</b> the house"}},
                                     {"name": "echo", "arguments": {"text": PAYLOAD}}])
            server.queue(reply="Kept the first note only.")
            textarea.fill("Keep two notes")
            page.locator(".llmchat-panel button.llmchat-send").click()
            panel_approve = page.locator(".llmchat-panel button.llmchat-approve")
            expect(panel_approve).to_be_visible()
            panel_approve.click()
            expect(page.locator(".llmchat-panel .llmchat-streaming details[open]")).to_contain_text(
                "<b>sell</b> the house")
            notebook.page.locator(".llmchat-panel").scroll_into_view_if_needed()
            notebook.screenshot(f"tools-panel-approval-{app}", ".llmchat-panel")
            page.locator(".llmchat-panel button.llmchat-deny").click()
            answer = page.locator(".llmchat-panel .llmchat-assistant").last
            expect(answer).to_contain_text("Kept the first note only.")
            panel_blocks = answer.locator("details.llmchat-call")
            expect(panel_blocks).to_have_count(3)
            panel_states = states(panel_blocks)
            assert panel_states[0].startswith("approved, done in ") and panel_states[1] == "declined", panel_states
            panel_blocks.nth(2).locator("summary").click()
            expect(panel_blocks.nth(2).locator("pre").nth(1)).to_have_text(PAYLOAD)
            notebook.screenshot(f"tools-panel-{app}", ".llmchat-panel")

            server.queue(tool_calls=[{"name": "write_note", "arguments": {"text": "never kept"}}])
            textarea.fill("One more note")
            page.locator(".llmchat-panel button.llmchat-send").click()
            expect(panel_approve).to_be_visible()
            page.locator(".llmchat-panel button.llmchat-stop").click()
            stopped = page.locator(".llmchat-panel .llmchat-assistant").last
            expect(stopped.locator("details.llmchat-call summary")).to_contain_text("stopped")
            expect(stopped).to_contain_text("answer interrupted")
            notebook.screenshot(f"tools-panel-stopped-{app}", ".llmchat-panel")
            kept = page.evaluate("""async () => {
                const panel = window.jupyterapp.shell.currentWidget;
                const future = panel.sessionContext.session.kernel.requestExecute({code: 'print(notes)'});
                let text = '';
                future.onIOPub = (msg) => { if (msg.header.msg_type === 'stream') text += msg.content.text; };
                await future.done;
                return text;
            }""")
            assert kept == "['buy milk']\n"

            assert page.evaluate(DANGERS_JS) == []
            assert page.evaluate("() => [typeof window.__pwned, window.__control]") == ["undefined", 1]

            # -- saved: the notebook on disk keeps the blocks ------------------------------------------------
            notebook.command("docmanager:save")
            page.wait_for_function("() => !window.jupyterapp.shell.currentWidget.context.model.dirty")
    finally:
        page.close()
    print("page errors:", errors or "none")
    saved = nbformat.read(tmp_path / "tools.ipynb", as_version=4)
    blocks_saved = [[o for o in saved.cells[i].outputs if "text/html" in o.get("data", {})] for i in (2, 3, 4)]
    assert [len(found) for found in blocks_saved] == [1, 1, 1]
    plain = [found[0]["data"]["text/plain"] for found in blocks_saved]
    assert plain[0].splitlines()[1].startswith('\U0001f527 run_python({"code": "total = 6 * 7\\nprint(total)"}) · '
                                               "approved, done in ")
    assert plain[1].endswith("· declined → the user declined")
    assert "· stopped → stopped by the user while it waited for the user's approval" in plain[2]
    for found in blocks_saved:
        assert 'class="llmchat-call' in found[0]["data"]["text/html"]
    assert WIDGET_VIEW not in json.dumps([saved.cells[i].outputs for i in (2, 3, 4)])  # no buttons left behind
