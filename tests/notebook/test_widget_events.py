"""CommPump in a real kernel driven as a front end drives it: a button clicked while its cell waits
is handled at once, in that cell's context; the messages that came meanwhile (the next cell, a
kernel_info request) are answered after the cell, in the order they came; an interrupt ends the
wait and leaves the kernel as it was. Outside a kernel, or off its main thread, there is no pump."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from support.kernel_client import LiveKernel

from jupyter_llmchat.notebook.widget_events import CommPump

WAIT_FOR_CLICK = """
import time
import ipywidgets
from IPython.display import display
from jupyter_llmchat.notebook.widget_events import CommPump

clicked = []
button = ipywidgets.Button(description="{label}")
button.on_click(lambda _: clicked.append(time.monotonic()))
display(button)
pump = CommPump.for_kernel()
with pump:
    while not clicked:
        pump.poll()
        time.sleep(0.02)
print("clicked", len(clicked), "handled", pump.handled)
"""


@pytest.fixture(scope="module")
def kernel() -> Iterator[LiveKernel]:
    k = LiveKernel()
    try:
        yield k
    finally:
        k.close()


def test_no_pump_outside_a_kernel_or_off_its_main_thread() -> None:
    assert CommPump.for_kernel() is None  # pytest: no kernel
    found: list[object] = []
    thread = threading.Thread(target=lambda: found.append(CommPump.for_kernel(object())))
    thread.start()
    thread.join()
    assert found == [None]


def test_a_click_is_handled_while_the_cell_waits_and_what_came_meanwhile_follows_in_order(
        kernel: LiveKernel) -> None:
    cell = kernel.execute(WAIT_FOR_CLICK.format(label="Go"))
    button = kernel.button("Go", cell)
    following = kernel.execute("print('second')")
    info_id = kernel.client.kernel_info()
    kernel.click(button)
    kernel.finish(cell)
    kernel.finish(following)
    assert cell.stdout() == "clicked 1 handled 1\n"
    assert following.stdout() == "second\n"
    replies = [kernel.client.get_shell_msg(timeout=30) for _ in range(3)]
    assert [(r["msg_type"], r["parent_header"]["msg_id"]) for r in replies] == [
        ("execute_reply", cell.msg_id), ("execute_reply", following.msg_id), ("kernel_info_reply", info_id)]
    started = [m["header"]["date"] for m in following.of_type("execute_input")]
    ended = [m["header"]["date"] for m in cell.of_type("status") if m["content"]["execution_state"] == "idle"]
    assert started[0] >= ended[0]  # the next cell ran after this one, not inside its wait
    # the kernel reads its shell messages itself again: a click now is handled at once
    kernel.click(button)
    assert kernel.run("print(len(clicked))").stdout() == "2\n"


def test_an_interrupt_ends_the_wait_and_the_kernel_goes_on(kernel: LiveKernel) -> None:
    cell = kernel.execute(WAIT_FOR_CLICK.format(label="Never"))
    kernel.button("Never", cell)
    kernel.interrupt()
    kernel.finish(cell)
    (error,) = cell.of_type("error")
    assert error["content"]["ename"] == "KeyboardInterrupt"
    assert kernel.run("print('still here')").stdout() == "still here\n"
