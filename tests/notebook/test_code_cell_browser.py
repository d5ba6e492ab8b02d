"""``%%chat -f code`` in a real browser, JupyterLab and Notebook 7: the first run puts the code into
a new cell below; running the cell again replaces that code instead of adding a cell; a cell the
user edited is left as it is. Nothing of the script that does it stays in the notebook.

The test process runs the loopback server and scripts each answer; the kernel (started by the
front end) asks it through the real openai SDK. Screenshots go to test-output/browser/. Skipped
like the panel's browser test when the browser is missing (CI=true: a failure).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest
from support.browser.jupyter_harness import JupyterLab, NotebookPage, launch_chromium, missing_requirements

from jupyter_llmchat.server import LoopbackServer

MISSING = missing_requirements()
IN_CI = os.environ.get("CI", "").lower() == "true"
pytestmark = pytest.mark.skipif(MISSING is not None and not IN_CI, reason=str(MISSING))

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


@pytest.fixture(scope="module")
def server() -> Iterator[LoopbackServer]:
    with LoopbackServer() as srv:
        yield srv


@pytest.fixture(scope="module")
def browser_context(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    if MISSING is not None:
        pytest.fail(f"CI=true but the browser test cannot run: {MISSING}")
    with sync_playwright() as pw:
        context = launch_chromium(pw, tmp_path_factory.mktemp("chromium-profile"))
        context.set_default_timeout(60_000)
        yield context
        context.close()


@pytest.mark.parametrize("app", ["lab", "notebook"])
def test_running_a_code_cell_again_replaces_the_code_it_put_below(app: str, server: LoopbackServer,
                                                                  browser_context: Any, tmp_path: Path) -> None:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(
                    "%load_ext jupyter_llmchat\n%config ChatMagics.store = ':memory:'\n"
                    f"%config ChatMagics.base_url = {server.base_url!r}\n%config ChatMagics.api_key = 'sk-test'"),
                nbformat.v4.new_code_cell("%%chat -f code --no-history\nWrite the greeting code")]
    nbformat.write(nb, tmp_path / "code.ipynb")
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
