"""The architecture is checked, not hoped for: import contracts (layers, forbidden imports, no
cycles) from pyproject.toml via import-linter, plus ruff and mypy over the package.

Each check also runs once against a copy of the package with a violation put in on purpose,
to show that it fails when it should.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "jupyter_llmchat"


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    """Run import-linter on the package under ``root`` with ``root``'s pyproject.toml."""
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run([sys.executable, "-c", "import sys; from importlinter.cli import lint_imports_command; "
                           "sys.exit(lint_imports_command(['--config', 'pyproject.toml', '--no-cache']))"],
                          cwd=root, env=env, capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture
def package_copy(tmp_path: Path) -> Path:
    """A copy of the package and its pyproject.toml, to break on purpose."""
    shutil.copytree(PACKAGE, tmp_path / "jupyter_llmchat", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def test_import_contracts_are_kept() -> None:
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(("module", "line", "broken"), [
    # a lazy import inside a function counts like any other
    ("core/tokens.py", "def _peek() -> None:\n    import IPython  # noqa\n",
     "The core imports no IPython, widgets or SQLite BROKEN"),
    ("core/conversation.py", "def _peek() -> None:\n    from ..store import ledger  # noqa\n",
     "Layers: notebook over store over core"),
    ("notebook/expansion.py", "def _peek() -> None:\n    import openai  # noqa\n",
     "The notebook layer imports no openai and no HTTP client BROKEN"),
    ("core/reply.py", "def _peek() -> None:\n    import httpx  # noqa\n", "Only the client talks HTTP BROKEN"),
    ("core/models.py", "def _peek() -> None:\n    from . import conversation  # noqa\n",
     "No import cycles, at any depth BROKEN"),
])
def test_each_contract_fails_on_a_violation(package_copy: Path, module: str, line: str, broken: str) -> None:
    path = package_copy / "jupyter_llmchat" / module
    path.write_text(path.read_text() + "\n\n" + line)
    result = lint_imports(package_copy)
    assert result.returncode != 0
    assert broken in result.stdout, result.stdout


def test_ruff_is_clean() -> None:
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "jupyter_llmchat", "tests",
                             "benchmarks"], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_fails_on_an_unused_noqa(package_copy: Path) -> None:
    path = package_copy / "jupyter_llmchat" / "core" / "errors.py"
    path.write_text(path.read_text() + "\nUNUSED = 1  # noqa: E501\n")
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "jupyter_llmchat"],
                            cwd=package_copy, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode != 0 and "RUF100" in result.stdout


def test_mypy_is_clean(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "mypy", "--cache-dir", str(tmp_path / "cache"), "jupyter_llmchat"],
                            cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
