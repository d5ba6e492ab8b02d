"""Run a list of cell sources as a notebook in a real ipykernel (nbclient) and read its outputs.

Shared by the magics tests. Cells whose index is in ``raises`` may fail; any other failing
cell fails the run. ``payloads[i]`` holds cell i's execute_reply payloads
(``set_next_input``, ``?`` help pages), which nbclient does not keep in the notebook.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Run:
    nb: Any
    payloads: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    replies: dict[int, dict[str, Any]] = field(default_factory=dict)

    def outputs(self, index: int) -> list[dict[str, Any]]:
        return self.nb.cells[index].outputs

    def stdout(self, index: int) -> str:
        return "".join(o.text for o in self.outputs(index) if o.output_type == "stream" and o.name == "stdout")

    def stderr(self, index: int) -> str:
        return "".join(o.text for o in self.outputs(index) if o.output_type == "stream" and o.name == "stderr")

    def displays(self, index: int, mime: str = "text/markdown") -> list[str]:
        return [o.data[mime] for o in self.outputs(index)
                if o.output_type in ("display_data", "execute_result") and mime in o.data]

    def error(self, index: int) -> dict[str, Any] | None:
        for output in self.outputs(index):
            if output.output_type == "error":
                return output
        return None

    def error_line(self, index: int) -> str:
        """The one line a failing cell showed: an error output's traceback or a UsageError on stderr."""
        error = self.error(index)
        if error is not None:
            return "\n".join(error.traceback)
        return self.stderr(index).strip()

    def status(self, index: int) -> str:
        return self.replies[index]["status"]

    def all_text(self) -> str:
        """Every output of every cell, as text (to check what was never shown, e.g. the key)."""
        import json

        return json.dumps([cell.get("outputs", []) for cell in self.nb.cells])


def run_cells(cells: list[str], *, raises: set[int] = frozenset(), env: dict[str, str] | None = None,
              cwd: str | os.PathLike[str] | None = None, drop_env: tuple[str, ...] = (), timeout: int = 120) -> Run:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(source) for source in cells]
    for index in raises:
        nb.cells[index].metadata["tags"] = ["raises-exception"]
    kernel_env = {k: v for k, v in os.environ.items() if k not in drop_env}
    kernel_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), kernel_env.get("PYTHONPATH")]))
    # Each kernel gets its own user data directory, so the default store starts empty and
    # tests never touch the real one.
    kernel_env["XDG_DATA_HOME"] = tempfile.mkdtemp(prefix="llmchat-data-")
    kernel_env.update(env or {})
    run = Run(nb)

    def executed(cell: Any, cell_index: int, execute_reply: dict[str, Any]) -> None:
        run.payloads[cell_index] = execute_reply["content"].get("payload", [])
        run.replies[cell_index] = execute_reply["content"]

    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", on_cell_executed=executed,
                            resources={"metadata": {"path": str(cwd or ROOT)}})
    client.execute(env=kernel_env)
    return run
