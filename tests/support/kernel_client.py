"""A real ipykernel driven the way a front end drives it, for what nbclient cannot do: click a
widget's button while its cell still runs, answer ``input()``, interrupt, queue the next cell.

``LiveKernel.execute`` sends an execute_request (``allow_stdin`` as JupyterLab sends it) and
returns at once; ``until`` reads IOPub until a condition holds; ``click`` sends a button's click
as the widget manager does (a ``comm_msg`` with ``{"method": "custom", "content": {"event":
"click"}}``); ``finish`` waits for the cell's idle status and returns its messages.

``CleanKernel`` is a kernel that sees none of this machine's LLMCHAT_/OPENAI_ settings, for the
tests that stop an answer with a real SIGINT; ``clean_env`` is its environment, for a terminal
IPython started the same way.
"""

from __future__ import annotations

import os
import queue
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


@dataclass
class Cell:
    """One execution: its id and every IOPub message of it so far."""

    msg_id: str
    messages: list[dict[str, Any]] = field(default_factory=list)
    done: bool = False

    def of_type(self, *kinds: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if m["msg_type"] in kinds]

    def stdout(self) -> str:
        return "".join(m["content"]["text"] for m in self.of_type("stream") if m["content"]["name"] == "stdout")

    def outputs(self) -> list[dict[str, Any]]:
        """The cell's outputs as a front end ends up with them (display ids updated in place,
        ``clear_output(wait=True)`` applied when the next output comes)."""
        outputs: list[dict[str, Any]] = []
        ids: dict[str, int] = {}
        clear_next = False
        for message in self.messages:
            kind, content = message["msg_type"], message["content"]
            if kind == "clear_output":
                if content.get("wait"):
                    clear_next = True
                else:
                    outputs, ids = [], {}
                continue
            if kind not in ("display_data", "update_display_data", "execute_result", "stream", "error"):
                continue
            display_id = (content.get("transient") or {}).get("display_id")
            if kind == "update_display_data":
                if display_id in ids:
                    outputs[ids[display_id]] = dict(content["data"])
                continue
            if clear_next:
                outputs, ids, clear_next = [], {}, False
            if kind == "stream":
                outputs.append({"stream": content["text"]})
            elif kind == "error":
                outputs.append({"error": "\n".join(content["traceback"])})
            else:
                if display_id:
                    ids[display_id] = len(outputs)
                outputs.append(dict(content["data"]))
        return outputs


class LiveKernel:
    def __init__(self, env: dict[str, str] | None = None) -> None:
        from jupyter_client.manager import start_new_kernel

        kernel_env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
                      "XDG_DATA_HOME": tempfile.mkdtemp(prefix="llmchat-data-")}
        kernel_env.update(env or {})
        self.manager, self.client = start_new_kernel(kernel_name="python3", env=kernel_env, cwd=str(ROOT))
        self.cells: dict[str, Cell] = {}
        self.comms: dict[str, dict[str, Any]] = {}  # open comms: id -> the state the kernel opened it with
        self.opened_by: dict[str, str] = {}  # comm id -> the msg_id of the cell that opened it

    def execute(self, code: str, *, allow_stdin: bool = True) -> Cell:
        msg_id = self.client.execute(code, allow_stdin=allow_stdin)
        cell = Cell(msg_id)
        self.cells[msg_id] = cell
        return cell

    def run(self, code: str, *, timeout: float = 120) -> Cell:
        return self.finish(self.execute(code), timeout=timeout)

    def until(self, check: Callable[[], Any], *, timeout: float = 60) -> Any:
        """Read IOPub (into each cell's messages) until ``check()`` is truthy; return it."""
        while True:
            found = check()
            if found:
                return found
            self._read(timeout)

    def finish(self, cell: Cell, *, timeout: float = 120) -> Cell:
        self.until(lambda: cell.done, timeout=timeout)
        return cell

    def button(self, description: str, cell: Cell) -> str:
        """Wait until ``cell`` shows an open button labelled ``description``; its comm id."""
        def find() -> str | None:
            found = [comm for comm, state in self.comms.items()
                     if state.get("_model_name") == "ButtonModel" and state.get("description") == description
                     and self.opened_by.get(comm) == cell.msg_id]
            return found[-1] if found else None

        return str(self.until(find))

    def click(self, comm_id: str) -> None:
        message = self.client.session.msg("comm_msg", {"comm_id": comm_id, "data": {
            "method": "custom", "content": {"event": "click"}}})
        self.client.shell_channel.send(message)

    def answer_input(self, text: str, *, timeout: float = 60) -> str:
        """Answer the next ``input()`` as a front end does; the prompt it showed."""
        request = self.client.get_stdin_msg(timeout=timeout)
        assert request["msg_type"] == "input_request", request["msg_type"]
        self.client.input(text)
        return str(request["content"]["prompt"])

    def interrupt(self) -> None:
        self.manager.interrupt_kernel()

    def close(self) -> None:
        self.client.stop_channels()
        self.manager.shutdown_kernel(now=True)

    def _read(self, timeout: float) -> None:
        try:
            message = self.client.get_iopub_msg(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no IOPub message within {timeout} s") from None
        if message["msg_type"] == "comm_open":
            self.comms[message["content"]["comm_id"]] = dict(message["content"]["data"].get("state") or {})
            self.opened_by[message["content"]["comm_id"]] = message["parent_header"].get("msg_id", "")
        elif message["msg_type"] == "comm_close":
            self.comms.pop(message["content"]["comm_id"], None)
        elif message["msg_type"] == "comm_msg":
            data = message["content"]["data"]
            if data.get("method") == "update" and message["content"]["comm_id"] in self.comms:
                self.comms[message["content"]["comm_id"]].update(data.get("state") or {})
        cell = self.cells.get(message["parent_header"].get("msg_id", ""))
        if cell is None:
            return
        cell.messages.append(message)
        if message["msg_type"] == "status" and message["content"]["execution_state"] == "idle":
            cell.done = True


def clean_env(directory: Path, **extra: str) -> dict[str, str]:
    """This process's environment without its LLMCHAT_*, OPENAI_* and AZURE_OPENAI_* variables (a real
    key or endpoint of the machine never reaches a test), importing this checkout, with its IPython
    dir in ``directory``; ``extra`` variables added."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LLMCHAT_", "OPENAI_", "AZURE_OPENAI_"))}
    env.update(PYTHONPATH=str(ROOT), IPYTHONDIR=str(directory), **extra)
    return env


class CleanKernel:
    """A python3 kernel on ``clean_env(directory)``, working in ``directory``; a context manager."""

    def __init__(self, directory: Path) -> None:
        from jupyter_client.manager import start_new_kernel

        self.manager, self.client = start_new_kernel(kernel_name="python3", env=clean_env(directory),
                                                     cwd=str(directory))

    def execute(self, code: str, *, interrupt_at_update: int | None = None) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """Run ``code``: its execute_reply's content and the contents of its stream, display, update and
        error messages, in order. With ``interrupt_at_update=n`` the kernel gets a SIGINT (the stop
        button) once, when the cell's n-th update_display_data arrives (the first display of an answer
        is its placeholder: an update means answer text has arrived)."""
        msg_id = self.client.execute(code)
        outputs: list[dict[str, Any]] = []
        updates = 0
        while True:
            msg = self.client.get_iopub_msg(timeout=60)
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            kind = msg["msg_type"]
            if kind in ("stream", "display_data", "update_display_data", "error"):
                outputs.append(msg["content"])
                if kind == "update_display_data":
                    updates += 1
                    if updates == interrupt_at_update:
                        self.manager.interrupt_kernel()
            elif kind == "status" and msg["content"]["execution_state"] == "idle":
                break
        return self.client.get_shell_msg(timeout=60)["content"], outputs

    def close(self) -> None:
        self.client.stop_channels()
        self.manager.shutdown_kernel(now=True)

    def __enter__(self) -> CleanKernel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
