"""Asking before a confirm=True tool runs, in a real kernel driven as a front end drives it: Approve
and Deny clicked while the ``%%chat`` cell still runs (the next cell, queued meanwhile, runs after
it), a kernel interrupt while the buttons wait, ``input()`` where widgets are missing, and a
notebook run without a front end (nbclient), where the call is declined and the model told why.
The model is the loopback server over the real openai SDK; the tool is run_python (--notebook)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from support.kernel_client import WIDGET_VIEW, Cell, LiveKernel
from support.kernel_notebook import run_cells

from jupyter_llmchat.core.errors import one_line
from jupyter_llmchat.core.tool_loop import DECLINED
from jupyter_llmchat.notebook.approval import NOBODY
from jupyter_llmchat.server import LoopbackServer

WRENCH = "\U0001f527"
# The kernel as one without ipywidgets: importing it fails (what was imported is put back after).
HIDE_WIDGETS = """
import sys
class _NoWidgets:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "ipywidgets":
            raise ImportError("No module named 'ipywidgets'")
_saved = {name: sys.modules.pop(name) for name in list(sys.modules) if name.split(".")[0] == "ipywidgets"}
_hidden = _NoWidgets()
sys.meta_path.insert(0, _hidden)
"""


@pytest.fixture(scope="module")
def kernel(loopback_server: LoopbackServer) -> Iterator[LiveKernel]:
    k = LiveKernel({"OPENAI_BASE_URL": loopback_server.base_url, "OPENAI_API_KEY": "sk-test"})
    try:
        k.run("%load_ext jupyter_llmchat")
        yield k
    finally:
        k.close()


def run_python(code: str) -> dict[str, Any]:
    return {"tool_calls": [{"name": "run_python", "arguments": {"code": code}}]}


def calls_text(cell: Cell) -> list[str]:
    """The text/plain of the cell's call outputs (one line per call)."""
    return [o["text/plain"] for o in cell.outputs() if "text/html" in o]


def test_approve_in_a_cell_runs_the_call_and_the_next_cell_waits(kernel: LiveKernel,
                                                                   loopback: LoopbackServer) -> None:
    loopback.queue(**run_python("answer = 6 * 7\nprint(answer)"))
    loopback.queue(reply="It printed **42**.")
    cell = kernel.execute("%%chat --notebook -s approve\nCompute it")
    following = kernel.execute("print('next cell sees', answer)")  # queued, as "run all" does
    approve = kernel.button("Approve", cell)
    waiting = kernel.until(lambda: [o for o in cell.outputs() if WIDGET_VIEW in o])
    assert waiting[0]["text/plain"] == (
        f'{WRENCH} run_python({{"code": "answer = 6 * 7\\nprint(answer)"}}) · waiting for your approval\n'
        "Approve or deny this call with the buttons; they need ipywidgets in the front end. Without them, "
        "interrupt the kernel to stop.")
    assert not following.messages  # it has not started: the cell still runs
    kernel.click(approve)
    kernel.finish(cell)
    kernel.finish(following)
    assert following.stdout() == "next cell sees 42\n"
    outputs = cell.outputs()
    assert [list(o) for o in outputs] == [["text/html", "text/plain"], ["text/markdown", "text/plain"],
                                          ["text/markdown", "text/plain"]]
    (line,) = calls_text(cell)
    assert line.startswith(f'{WRENCH} run_python({{"code": "answer = 6 * 7\\nprint(answer)"}}) · approved, done in ')
    assert line.endswith(" → printed: 42")
    assert outputs[1]["text/markdown"] == "It printed **42**."
    tool_message = [m for m in loopback.requests[-1].body["messages"] if m["role"] == "tool"]
    assert [m["content"] for m in tool_message] == ["printed:\n42"]


def test_deny_in_a_cell_tells_the_model_and_runs_nothing(kernel: LiveKernel, loopback: LoopbackServer) -> None:
    loopback.queue(**run_python("denied_ran = True"))
    loopback.queue(reply="Understood.")
    cell = kernel.execute("%%chat --notebook -s deny\nSet it")
    kernel.click(kernel.button("Deny", cell))
    kernel.finish(cell)
    assert calls_text(cell) == [f'{WRENCH} run_python({{"code": "denied_ran = True"}}) · declined → the user declined']
    tool_message = [m for m in loopback.requests[-1].body["messages"] if m["role"] == "tool"]
    assert [m["content"] for m in tool_message] == [DECLINED]
    assert kernel.run("print('denied_ran' in globals())").stdout() == "False\n"
    assert not [o for o in cell.outputs() if WIDGET_VIEW in o]  # the buttons are gone


def test_a_kernel_interrupt_while_the_buttons_wait_stops_the_answer(kernel: LiveKernel,
                                                                      loopback: LoopbackServer) -> None:
    loopback.queue(**run_python("interrupted_ran = True"))
    cell = kernel.execute("%%chat --notebook -s interrupt\nSet it")
    kernel.button("Approve", cell)
    requests = len(loopback.requests)
    kernel.interrupt()
    kernel.finish(cell)
    assert not cell.of_type("error")  # the answer ends, marked; the cell does not fail
    assert calls_text(cell) == [
        f'{WRENCH} run_python({{"code": "interrupted_ran = True"}}) · stopped → stopped by the user while it '
        "waited for the user's approval"]
    footer = [o for o in cell.outputs() if "text/markdown" in o]
    assert footer[-1]["text/plain"].startswith("[answer interrupted before any text]")
    assert len(loopback.requests) == requests  # nothing more was asked
    assert not [o for o in cell.outputs() if WIDGET_VIEW in o]
    assert kernel.run("print('interrupted_ran' in globals())").stdout() == "False\n"  # and the kernel goes on


def test_without_widgets_a_cell_asks_with_input(kernel: LiveKernel, loopback: LoopbackServer) -> None:
    kernel.run(HIDE_WIDGETS)
    try:
        loopback.queue(**run_python("typed = 'yes'"))
        loopback.queue(reply="Set.")
        cell = kernel.execute("%%chat --notebook -s typed\nSet it")
        prompt = kernel.answer_input("y")
        kernel.finish(cell)
    finally:
        kernel.run("sys.meta_path.remove(_hidden); sys.modules.update(_saved)")
    assert prompt == 'Allow the model to call run_python({"code": "typed = \'yes\'"})? [y/N] '
    (line,) = calls_text(cell)
    assert line.startswith(f'{WRENCH} run_python({{"code": "typed = \'yes\'"}}) · approved, done in ')
    assert kernel.run("print(typed)").stdout() == "yes\n"


def test_without_a_front_end_the_call_is_declined_and_the_model_told_why(loopback: LoopbackServer) -> None:
    """nbclient runs cells with allow_stdin False: nobody could click or type."""
    loopback.queue(**run_python("headless_ran = True"))
    loopback.queue(reply="Not run.")
    run = run_cells(["%load_ext jupyter_llmchat", "%%chat --notebook\nSet it", "print('headless_ran' in globals())"],
                    env={"OPENAI_BASE_URL": loopback.base_url, "OPENAI_API_KEY": "sk-test"})
    assert run.stdout(2) == "False\n"
    (line,) = run.displays(1, "text/plain")[:1]
    assert line == (f'{WRENCH} run_python({{"code": "headless_ran = True"}}) · not run: nobody could approve it → '
                    f"{one_line(NOBODY, 120)}")
    tool_message = [m for m in loopback.requests[-1].body["messages"] if m["role"] == "tool"]
    assert [m["content"] for m in tool_message] == [f"Not run: {NOBODY}."]
    assert json.dumps(run.outputs(1)).count(WIDGET_VIEW) == 0
