"""CodeCells: -f code adds the cell below on the first run of a %%chat cell and replaces its code
on a re-run (the browser half is tests/notebook/test_code_cell_browser.py)."""

from __future__ import annotations

import json
from typing import Any

from jupyter_llmchat.core.reply import Reply
from jupyter_llmchat.notebook.code_cell import CodeCells, replace_script
from jupyter_llmchat.notebook.formatted import FormattedSink


class Kernel:
    def __init__(self) -> None:
        self.cell_id: str | None = "cell-1"

    def get_parent(self) -> dict[str, Any]:
        return {"metadata": {"cellId": self.cell_id} if self.cell_id else {}}


class Shell:
    def __init__(self) -> None:
        self.kernel = Kernel()
        self.next_inputs: list[tuple[str, bool]] = []

    def set_next_input(self, text: str, replace: bool = False) -> None:
        self.next_inputs.append((text, replace))


def test_the_first_run_adds_a_cell_and_a_rerun_replaces_its_code() -> None:
    shell, cells = Shell(), CodeCells()
    assert cells.put(shell, "print(1)") is None and shell.next_inputs == [("print(1)", False)]
    assert cells.put(shell, "print(1)") is None  # the same code is there already: nothing to do
    assert cells.put(shell, "print(2)") == replace_script("print(1)", "print(2)")
    assert cells.put(shell, "print(3)") == replace_script("print(2)", "print(3)")
    assert shell.next_inputs == [("print(1)", False)]  # never another cell
    shell.kernel.cell_id = "cell-2"  # another %%chat cell: its own first run
    assert cells.put(shell, "x = 1") is None and shell.next_inputs[-1] == ("x = 1", False)


def test_without_cell_ids_every_run_adds_a_cell_as_before() -> None:
    shell, cells = Shell(), CodeCells()
    shell.kernel.cell_id = None  # a front end that sends no cell id
    assert cells.put(shell, "a") is None and cells.put(shell, "b") is None
    assert shell.next_inputs == [("a", False), ("b", False)]


def test_the_script_holds_the_code_as_text() -> None:
    """Model text in the script is a JavaScript string literal (JSON is valid JavaScript), whatever
    it holds: it cannot end the string, the script, or a line."""
    code = "</script><script>alert(1)</script> \" ' ` ${x} \\ \u2028 ünï"
    script = replace_script("old", code)
    assert "</script>" not in script and "\u2028" not in script
    literal = script.split("code = ", 1)[1].split(";\n", 1)[0]
    assert json.loads(literal) == code


class Area:
    def __init__(self) -> None:
        self.messages: list[tuple[str, dict[str, str], bool]] = []

    def show(self, display_id: str, data: dict[str, str], *, update: bool) -> None:
        self.messages.append((display_id, dict(data), update))

    def clear(self, *, wait: bool) -> None:
        raise AssertionError("a formatted answer never clears")


def test_a_rerun_runs_the_script_in_the_footers_output_which_then_is_the_footer(monkeypatch: Any) -> None:
    import IPython

    shell, cells = Shell(), CodeCells()
    cells.put(shell, "print('one')")  # the first run put it there
    monkeypatch.setattr(IPython, "get_ipython", lambda: shell)
    area = Area()
    sink = FormattedSink("code", publisher=area, code_cells=cells, trailing=False)
    sink.start("m")
    sink.write("```python\nprint('two')\n```")
    sink.finish(Reply(text="```python\nprint('two')\n```", model="m"))
    footer_id = area.messages[-1][0]
    assert [(d, u) for i, d, u in area.messages if i == footer_id] == [
        ({"application/javascript": replace_script("print('one')", "print('two')")}, False),
        ({"text/markdown": "<sub>m</sub>", "text/plain": "[m]"}, True)]
    assert shell.next_inputs == [("print('one')", False)]
