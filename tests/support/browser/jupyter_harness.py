"""Start JupyterLab on loopback and drive it with headless chromium (playwright, sync API).

Why a harness: the chat panel is an ipywidgets front end, so only a real browser with the
widget manager loaded proves it renders, streams and stays safe. Everything here is real:
a ``jupyter lab`` subprocess with a random port, a token and a temp root; the Debian
chromium binary launched by playwright's bundled driver (its browser download is not used).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import nbformat
import pytest

REPO_ROOT = Path(__file__).resolve().parents[3]
OUTPUT_DIR = REPO_ROOT / "test-output" / "browser"
CHROMIUM = os.environ.get("LLMCHAT_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def missing_requirements() -> str | None:
    """Why the browser test cannot run here (None when it can): names what to install."""
    if not Path(CHROMIUM).exists():
        return f"chromium not found at {CHROMIUM}: run .ci/install-browser.sh"
    for module, package in (("playwright", "playwright"), ("jupyterlab", "jupyterlab"), ("notebook", "notebook")):
        try:
            __import__(module)
        except ImportError:
            return f"python package {package!r} not installed: run .ci/install-browser.sh"
    return None


def browser_skip_mark() -> pytest.MarkDecorator:
    """The mark every browser test module sets (``pytestmark``): skipped with the reason when the
    browser is missing, except under CI=true, where the fixtures fail instead (see fail_without_browser)."""
    missing = missing_requirements()
    return pytest.mark.skipif(missing is not None and not _in_ci(), reason=str(missing))


def fail_without_browser() -> None:
    """Fail the test when the browser cannot run: reached only under CI=true (elsewhere the skip mark
    skipped it first), where a missing browser must not pass as a skip."""
    missing = missing_requirements()
    if missing is not None:
        pytest.fail(f"CI=true but the browser test cannot run: {missing}")


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def write_notebook(path: Path, *sources: str) -> Path:
    """Write a notebook of code cells ``sources`` (python3 kernel) for the front end to open; ``path``."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(src) for src in sources]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


def chat_setup_cell(base_url: str) -> str:
    """A first cell that loads the magics against the loopback server at ``base_url``, with a store in memory."""
    return ("%load_ext jupyter_llmchat\n%config ChatMagics.store = ':memory:'\n"
            f"%config ChatMagics.base_url = {base_url!r}\n%config ChatMagics.api_key = 'sk-test'")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class JupyterLab:
    """A ``jupyter lab`` (or, with ``app="notebook"``, Notebook 7) subprocess on 127.0.0.1 with its
    own token, root dir and config dirs.

    Config, data and workspace dirs are fresh temp dirs so the user's settings, stale
    layouts and the news/update prompts never leak into a run. Both front ends are the same
    JupyterLab application code (rendermime, marked, MathJax) in a different shell.
    """

    def __init__(self, root_dir: Path, *, env: dict[str, str | None] | None = None, app: str = "lab") -> None:
        if app not in ("lab", "notebook"):
            raise ValueError(f"app must be 'lab' or 'notebook', got {app!r}")
        self.app = app
        self.root_dir = Path(root_dir)
        self.token = secrets.token_hex(16)
        self.port = _free_port()
        self._home = Path(tempfile.mkdtemp(prefix="llmchat-lab-"))
        self._extra_env = env or {}
        self._proc: subprocess.Popen[bytes] | None = None
        self.log_path = self._home / "jupyter-lab.log"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        """Browser URL for ``path`` (e.g. ``lab/tree/x.ipynb``), token included, fresh workspace."""
        return f"{self.base_url}/{path.lstrip('/')}?token={self.token}&reset"

    def notebook_path(self, name: str) -> str:
        """The URL path that opens notebook ``name`` in this front end."""
        return f"lab/tree/{name}" if self.app == "lab" else f"notebooks/{name}"

    def _write_config(self) -> dict[str, str]:
        config = self._home / "config"
        (config / "labconfig").mkdir(parents=True)
        # Announcements would pop a "get news?" toast over the notebook; nothing else is disabled.
        (config / "labconfig" / "page_config.json").write_text(
            json.dumps({"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True}})
        )
        (self._home / "runtime").mkdir()
        return {
            "JUPYTER_CONFIG_DIR": str(config),
            "JUPYTER_RUNTIME_DIR": str(self._home / "runtime"),
            "JUPYTERLAB_SETTINGS_DIR": str(self._home / "settings"),
            "JUPYTERLAB_WORKSPACES_DIR": str(self._home / "workspaces"),
        }

    def start(self, timeout: float = 90.0) -> JupyterLab:
        env = dict(os.environ)
        env.update(self._write_config())
        # The kernel inherits this env: it must import jupyter_llmchat from this checkout.
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
        for name, value in self._extra_env.items():  # None removes a variable (e.g. a real API key)
            if value is None:
                env.pop(name, None)
            else:
                env[name] = value
        app_class = "LabApp" if self.app == "lab" else "JupyterNotebookApp"
        cmd = [
            sys.executable, "-m", "jupyter", self.app,
            "--no-browser",
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={self.port}",
            "--ServerApp.port_retries=0",
            f"--ServerApp.root_dir={self.root_dir}",
            f"--IdentityProvider.token={self.token}",
            "--ServerApp.disable_check_xsrf=False",
            f"--{app_class}.expose_app_in_browser=True",  # window.jupyterapp: run commands without menus
        ]
        if self.app == "lab":
            cmd += [
                "--LabApp.news_url=",
                "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
                "--LabApp.extension_manager=readonly",  # no PyPI queries from the extension manager
            ]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            cmd.append("--allow-root")  # CI containers run as root; the server refuses otherwise
        with open(self.log_path, "wb") as log:
            self._proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=self.root_dir)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"jupyter lab exited with {self._proc.returncode}: see {self.log_path}")
            try:
                with urllib.request.urlopen(f"{self.base_url}/api/status?token={self.token}", timeout=2) as r:
                    if r.status == 200:
                        return self
            except (urllib.error.URLError, OSError):
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"jupyter lab did not answer within {timeout:.0f}s: see {self.log_path}")

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()  # SIGTERM: jupyter server shuts its kernels down cleanly
            try:
                self._proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout=5)
        self._proc = None
        shutil.rmtree(self._home, ignore_errors=True)

    def __enter__(self) -> JupyterLab:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def launch_chromium(playwright: Any, user_data_dir: Path) -> Any:
    """A persistent context on a fresh profile dir (chromium refuses --user-data-dir via launch())."""
    return playwright.chromium.launch_persistent_context(
        str(user_data_dir),
        executable_path=CHROMIUM,
        headless=True,
        args=CHROMIUM_ARGS,
        viewport={"width": 1280, "height": 1400},
    )


class NotebookPage:
    """A JupyterLab tab showing one notebook, with the few actions the tests need."""

    def __init__(self, page: Any, lab: JupyterLab) -> None:
        self.page = page
        self.lab = lab

    def open(self, name: str, timeout_ms: int = 90_000) -> NotebookPage:
        self.page.goto(self.lab.url(self.lab.notebook_path(name)))
        self.page.wait_for_function("() => window.jupyterapp !== undefined", timeout=timeout_ms)
        self.page.locator(".jp-NotebookPanel .jp-Notebook").first.wait_for(timeout=timeout_ms)
        self.wait_kernel_idle(timeout_ms)
        return self

    def wait_kernel_idle(self, timeout_ms: int = 90_000) -> None:
        """Wait until the notebook's kernel is connected and idle (status read from the app model)."""
        self.page.wait_for_function(
            """() => {
                const w = window.jupyterapp.shell.currentWidget;
                const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;
                return !!k && k.connectionStatus === 'connected' && k.status === 'idle';
            }""",
            timeout=timeout_ms,
        )

    def command(self, name: str, args: dict[str, Any] | None = None) -> None:
        self.page.evaluate("([n, a]) => window.jupyterapp.commands.execute(n, a)", [name, args or {}])

    def run_all(self, timeout_ms: int = 120_000) -> None:
        """Run every cell and wait until each has an execution count and the kernel is idle again."""
        self.command("notebook:run-all-cells")
        self.page.wait_for_function(
            """() => {
                const w = window.jupyterapp.shell.currentWidget;
                const cells = w.content.widgets.filter(c => c.model.type === 'code');
                return cells.length > 0 && cells.every(c => c.model.executionCount !== null);
            }""",
            timeout=timeout_ms,
        )
        self.wait_kernel_idle(timeout_ms)

    def screenshot(self, name: str, selector: str | None = None) -> Path:
        """Save test-output/browser/<name>.png: the page, or the whole element ``selector``."""
        OUTPUT_DIR.mkdir(parents=True, exist_ok=True)
        path = OUTPUT_DIR / f"{name}.png"
        if selector is None:
            self.page.screenshot(path=str(path), full_page=True)
        else:
            self.page.locator(selector).first.screenshot(path=str(path))
        print(f"screenshot: {path}")
        return path
