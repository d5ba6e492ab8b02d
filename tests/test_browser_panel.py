"""The chat panel in a real browser: JupyterLab on loopback, headless Debian chromium, playwright.

Skipped with a reason when chromium/playwright/jupyterlab are missing, unless CI=true, where a
missing browser is a failure (CI must run this; .ci/install-browser.sh installs it).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest

from browser.jupyter_harness import JupyterLab, NotebookPage, launch_chromium, missing_requirements

MISSING = missing_requirements()
IN_CI = os.environ.get("CI", "").lower() == "true"

pytestmark = pytest.mark.skipif(MISSING is not None and not IN_CI, reason=str(MISSING))


def write_notebook(path: Path, *sources: str) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(src) for src in sources]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


@pytest.fixture(scope="module")
def lab_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("lab-root")


@pytest.fixture(scope="module")
def lab(lab_root: Path) -> Iterator[JupyterLab]:
    if MISSING is not None:
        pytest.fail(f"CI=true but the browser test cannot run: {MISSING}")
    with JupyterLab(lab_root) as server:
        yield server


@pytest.fixture(scope="module")
def browser_context(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        context = launch_chromium(pw, tmp_path_factory.mktemp("chromium-profile"))
        yield context
        context.close()


@pytest.fixture
def notebook_page(lab: JupyterLab, browser_context: object) -> Iterator[NotebookPage]:
    page = browser_context.new_page()  # type: ignore[attr-defined]
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield NotebookPage(page, lab)
    page.close()


def test_harness_renders_an_ipywidget(lab: JupyterLab, lab_root: Path, notebook_page: NotebookPage) -> None:
    """The harness itself: lab starts, the notebook opens, cells run, the widget manager renders."""
    write_notebook(lab_root / "harness.ipynb", "import ipywidgets\nipywidgets.Button(description='harness-ok')")
    notebook_page.open("harness.ipynb")
    notebook_page.run_all()
    button = notebook_page.page.locator(".jp-OutputArea-output button.widget-button", has_text="harness-ok")
    button.wait_for(timeout=30_000)
    assert button.inner_text() == "harness-ok"
    assert notebook_page.screenshot("harness").exists()
