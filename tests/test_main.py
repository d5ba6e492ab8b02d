"""``python -m jupyter_llmchat demo``: a notebook run in a real kernel, offline unless --online,
its conversations in the demo's own store (never the user's default one), one line per failure."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest

from jupyter_llmchat.__main__ import ENDPOINT_VARIABLES, demo_environment, main, run_demo
from jupyter_llmchat.store.database import STORE_ENV, default_path, demo_path

UNREACHABLE = "http://127.0.0.1:9/v1"  # nothing listens there: a request to it would fail


def notebook(path: Path, *cells: str) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(source) for source in cells]
    nbformat.write(nb, path)
    return path


@pytest.fixture
def endpoint_set(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The user's shell has a (here: unreachable) endpoint configured, and a data directory of its own."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("OPENAI_API_KEY", "sk-users-own-key-1234")
    monkeypatch.setenv("OPENAI_BASE_URL", UNREACHABLE)
    monkeypatch.delenv(STORE_ENV, raising=False)


def test_the_demo_kernel_has_its_own_store_and_offline_no_endpoint(endpoint_set) -> None:
    offline = demo_environment(online=False)
    assert not set(ENDPOINT_VARIABLES) & set(offline)
    assert offline[STORE_ENV] == str(demo_path()) != str(default_path())
    online = demo_environment(online=True)
    assert (online["OPENAI_API_KEY"], online["OPENAI_BASE_URL"], online[STORE_ENV]) == (
        "sk-users-own-key-1234", UNREACHABLE, str(demo_path()))
    assert os.environ["OPENAI_BASE_URL"] == UNREACHABLE and STORE_ENV not in os.environ  # ours untouched


def test_demo_runs_offline_into_its_own_store(endpoint_set, tmp_path: Path, capsys) -> None:
    source = notebook(tmp_path / "demo.ipynb", "%load_ext jupyter_llmchat",
                      "%%chat\nHello demo", "%chat usage",
                      "from jupyter_llmchat.notebook.magics import current\nprint(current().opened_store().path)")
    output = tmp_path / "out" / "executed.ipynb"
    output.parent.mkdir()
    assert run_demo(source, output) == 0
    printed = capsys.readouterr().out
    assert ">>> %%chat\nHello demo\nOffline demo: no API key or base URL is set" in printed
    assert "You asked: “Hello demo”" in printed  # the demo server answered, not the unreachable endpoint
    assert "\n<sub>gpt-4o-mini · " in printed and " · demo, no cost</sub>\n" in printed  # the footer
    assert "| default | gpt-4o-mini | 1 | 0 |" in printed and "| demo, no cost |" in printed
    assert f"\n{demo_path()}\n" in printed
    assert printed.endswith(f"executed notebook saved to {output}; its conversations are in the demo's own store, "
                            f"{demo_path()}\n")
    executed = nbformat.read(output, as_version=4)
    assert [cell.execution_count for cell in executed.cells] == [1, 2, 3, 4]
    assert demo_path().exists() and not default_path().exists()  # the user's store was never touched


def test_a_failing_cell_and_a_missing_notebook_are_one_line(tmp_path: Path, capsys) -> None:
    source = notebook(tmp_path / "bad.ipynb", "1 / 0", "print('never')")
    assert run_demo(source, tmp_path / "bad-out.ipynb") == 1
    captured = capsys.readouterr()
    assert captured.err == "error: a cell failed: ZeroDivisionError: division by zero\n"
    assert (tmp_path / "bad-out.ipynb").exists()  # what ran is saved, the error in it
    assert run_demo(tmp_path / "nowhere.ipynb", tmp_path / "x.ipynb") == 2
    assert capsys.readouterr().err == (f"error: notebook {tmp_path / 'nowhere.ipynb'} not found; pass its path as "
                                       "an argument\n")


def test_command_line(tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["demo", str(tmp_path / "a.ipynb"), "extra"])
    assert exited.value.code == 2 and "unrecognized arguments: extra" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exited:
        main([])
    assert exited.value.code == 2
    assert main(["demo", str(tmp_path / "missing.ipynb"), "--output", str(tmp_path / "o.ipynb")]) == 2
