"""``%%chat -f code`` in a real browser, JupyterLab and Notebook 7: the first run puts the code into
a new cell below; running the cell again replaces that code instead of adding a cell; a cell the
user edited is left as it is. Nothing of the script that does it stays in the notebook.

The test process runs the loopback server and scripts each answer; the kernel (started by the
front end) asks it through the real openai SDK. Screenshots go to test-output/browser/. Skipped
like the panel's browser test when the browser is missing (CI=true: a failure).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from support.browser.jupyter_harness import JupyterLab, NotebookPage, browser_skip_mark, chat_setup_cell, write_notebook

from jupyter_llmchat.server import LoopbackServer

pytestmark = browser_skip_mark()

SOURCES = "() => window.jupyterapp.shell.currentWidget.content.widgets.map(c => c.model.sharedModel.getSource())"
OUTPUT_TYPES = """() => window.jupyterapp.shell.currentWidget.content.widgets[1].model.outputs.toJSON()
    .map(o => Object.keys(o.data || {}).sort().join('+'))"""
RUN_CHAT_CELL = """() => {
    const panel = window.jupyterapp.shell.currentWidget;
    panel.content.activeCellIndex = 1;
    return window.jupyterapp.commands.execute('notebook:run-cell');
}"""


def answer(code: str) -> str:
    return f"Here you are:\n\n```python\n{code}\n```\n\nRun it below."


@pytest.mark.parametrize("app", ["lab", "notebook"])
def test_running_a_code_cell_again_replaces_the_code_it_put_below(app: str, server: LoopbackServer,
                                                                  browser_context: Any, tmp_path: Path) -> None:
    write_notebook(tmp_path / "code.ipynb",
                   chat_setup_cell(server.base_url),
                   "%%chat -f code --no-history\nWrite the greeting code")
    with JupyterLab(tmp_path, app=app) as lab:
        page = browser_context.new_page()
        try:
            notebook = NotebookPage(page, lab).open("code.ipynb")
            server.queue(reply=answer("print('one')"))
            notebook.command("notebook:run-all-cells")  # the cell it adds stays unrun: not run_all()
            page.wait_for_function(f"() => ({SOURCES})().length === 3")
            notebook.wait_kernel_idle()
            assert page.evaluate(SOURCES)[2] == "print('one')"  # the first run adds a cell

            def run_again(code: str) -> None:
                server.queue(reply=answer(code))
                count = page.evaluate("() => window.jupyterapp.shell.currentWidget.content.widgets[1]"
                                      ".model.executionCount")
                page.evaluate(RUN_CHAT_CELL)
                page.wait_for_function("(n) => window.jupyterapp.shell.currentWidget.content.widgets[1]"
                                       ".model.executionCount > n", arg=count)
                notebook.wait_kernel_idle()
                page.wait_for_timeout(500)

            run_again("print('two')")
            assert page.evaluate(SOURCES)[1:] == ["%%chat -f code --no-history\nWrite the greeting code",
                                                  "print('two')"]  # replaced, not added
            notebook.screenshot(f"code-cell-replaced-{app}")
            page.evaluate("() => window.jupyterapp.shell.currentWidget.content.widgets[2]"
                          ".model.sharedModel.setSource(\"print('mine')\")")  # the user edits it
            run_again("print('three')")
            assert page.evaluate(SOURCES)[2:] == ["print('mine')"]  # an edited cell is left alone
            assert page.evaluate(OUTPUT_TYPES) == ["text/markdown+text/plain", "text/markdown+text/plain"]
        finally:
            page.close()
