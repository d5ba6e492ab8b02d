"""Fixtures of the browser tests (test_*_browser.py); the rest of tests/notebook uses none of them.

``server``: a loopback server for the module, never reset between its tests: the kernels the front
end starts reach it by its URL, and module-scoped fixtures (a running JupyterLab, an opened panel)
hold on to it. test_batch_tables.py has a ``server`` of its own (the suite's ``loopback``).
``browser_context``: one headless chromium for the module, on a fresh profile dir.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from support.browser.jupyter_harness import fail_without_browser, launch_chromium

from jupyter_llmchat.server import LoopbackServer


@pytest.fixture(scope="module")
def server() -> Iterator[LoopbackServer]:
    with LoopbackServer() as srv:
        yield srv


@pytest.fixture(scope="module")
def browser_context(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from playwright.sync_api import expect, sync_playwright

    fail_without_browser()
    expect.set_options(timeout=30_000)
    with sync_playwright() as pw:
        context = launch_chromium(pw, tmp_path_factory.mktemp("chromium-profile"))
        context.set_default_timeout(60_000)
        yield context
        context.close()
