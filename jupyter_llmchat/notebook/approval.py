"""Asking the user before a ``confirm=True`` tool runs: Approve / Deny buttons, or ``input()``.

The tool loop calls a view's ``approve_tool(approval)`` in the thread that asks (``tool_loop``).

- The chat panel asks from a thread of its own: its buttons' clicks reach the kernel while it
  waits, as any widget's do (``ApprovalButtons.wait`` polls ``approval.wait``).
- A ``%%chat`` cell asks from the kernel's main thread, inside the cell: the buttons' clicks are
  handled during the wait by ``widget_events.CommPump`` (the kernel's comm handlers run; the next
  cell, queued by "run all", waits for this one as it would have).
- Where buttons cannot be clicked (ipywidgets missing, the kernel not one we can pump, the cell's
  outputs captured by an ``Output`` widget), ``input()`` asks instead: the kernel serves it while
  a cell runs. Where nobody can answer (a notebook run by nbclient or papermill allows no input),
  the call is declined and the model told why.

Stop ends the wait at once: the panel's Stop (``approval.stopped``), a kernel interrupt (the
KeyboardInterrupt goes up through the wait; the tool loop marks the call stopped).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextlib import nullcontext
from typing import TYPE_CHECKING, Any, Literal

from ..core.tool_loop import arguments_preview, terminal_approver
from .publish import in_notebook_kernel
from .widget_events import CommPump

if TYPE_CHECKING:
    from ..core.tool_loop import Approval

__all__ = ["POLL_SECONDS", "ApprovalButtons", "approve_in_cell", "ask_with_input", "cell_approval_mode"]

POLL_SECONDS = 0.05  # between looks at the buttons (and, in a cell, at the kernel's comm messages)
NOBODY = ("it needs the user's approval and nobody could be asked: the notebook runs without a front end "
          "(no input allowed); give approve= to bot.ask to decide from code")
NO_WIDGETS = ("Approve or deny this call with the buttons; they need ipywidgets in the front end. Without "
              "them, interrupt the kernel to stop.")

ApprovalMode = Literal["buttons", "input", "nobody"]


class ApprovalButtons:
    """Approve / Deny for one call, and the user's choice once a button is clicked."""

    def __init__(self, approval: Approval) -> None:
        import ipywidgets as widgets  # type: ignore[import-untyped]

        self.approval = approval
        self.choice: bool | None = None
        self.clicked = threading.Event()
        name = approval.call.name
        self.approve = widgets.Button(description="Approve", icon="check", button_style="warning",
                                      tooltip=f"run {name} with these arguments")
        self.deny = widgets.Button(description="Deny", icon="times", tooltip=f"do not run {name}; the model is told")
        self.approve.add_class("llmchat-approve")
        self.deny.add_class("llmchat-deny")
        question = widgets.HTML('<span style="font-size: 0.92em;">Run this call?</span>')
        self.widget = widgets.HBox([question, self.approve, self.deny])
        self.widget.add_class("llmchat-approval")
        self.approve.on_click(lambda _: self._chosen(True))
        self.deny.on_click(lambda _: self._chosen(False))

    def wait(self) -> bool:
        """Wait for a click (or a stop); True when the call was approved. In a cell on the kernel's
        main thread, the kernel handles the clicks meanwhile (``CommPump``)."""
        approval = self.approval
        pump = CommPump.for_kernel()
        with pump if pump is not None else nullcontext():
            while not self.clicked.is_set() and not approval.stopped:
                if pump is not None:
                    pump.poll()
                    if self.clicked.is_set():
                        break
                approval.wait(POLL_SECONDS)
        return bool(self.choice) and not approval.stopped

    def close(self) -> None:
        for widget in (self.widget, *self.widget.children):
            widget.close()

    def _chosen(self, choice: bool) -> None:
        if self.clicked.is_set():
            return
        self.choice = choice
        self.approve.disabled = self.deny.disabled = True
        self.clicked.set()


def cell_approval_mode() -> ApprovalMode:
    """How a cell can ask now: buttons (widgets, and a kernel whose clicks we can handle while the
    cell waits), ``input()``, or nobody (the front end allows no input: nbclient, papermill)."""
    from IPython import get_ipython

    kernel = getattr(get_ipython(), "kernel", None)
    if kernel is not None and not getattr(kernel, "_allow_stdin", True):
        return "nobody"
    try:
        import ipywidgets  # noqa: F401
    except ImportError:
        return "input"
    on_main = threading.current_thread() is threading.main_thread()
    return "buttons" if not on_main or CommPump.for_kernel(kernel) is not None else "input"


def approve_in_cell(approval: Approval, waiting: dict[str, str],
                    replace: Callable[[dict[str, Any] | None], None] | None) -> bool:
    """Ask in a cell. ``waiting``: the call's output as it shows while it waits (its blocks, this
    call's open); ``replace(bundle)`` puts a bundle in that output (None: its blocks again). With
    no ``replace`` (the output cannot be updated), ``input()`` asks. Outside a kernel (a test, a
    script showing Markdown): the terminal's y/N, as any ask without a view."""
    if not in_notebook_kernel():
        return terminal_approver(approval)
    mode = cell_approval_mode()
    if mode == "nobody":
        approval.note = NOBODY
        return False
    if mode == "input" or replace is None:
        if replace is not None:
            replace(waiting)
        try:
            return _decided(approval, ask_with_input(approval))
        finally:
            if replace is not None:
                replace(None)
    import ipywidgets as widgets

    buttons = ApprovalButtons(approval)
    blocks = widgets.HTML(waiting.get("text/html", ""))
    view = widgets.VBox([blocks, buttons.widget])
    view.add_class("llmchat-approval-view")
    bundle = dict(view._repr_mimebundle_() or {})
    bundle["text/plain"] = f"{waiting.get('text/plain', '')}\n{NO_WIDGETS}"
    replace(bundle)
    try:
        return _decided(approval, buttons.wait())
    finally:
        try:
            replace(None)
        finally:
            view.close()
            blocks.close()
            buttons.close()


def ask_with_input(approval: Approval) -> bool:
    """Ask with ``input()`` (a y/N line); a front end that cannot answer declines, with a note."""
    call = approval.call
    try:
        line = input(f"Allow the model to call {call.name}({arguments_preview(call)})? [y/N] ")
    except EOFError:
        approval.note = NOBODY
        return False
    except Exception as error:  # StdinNotImplementedError: this front end sends no input
        if type(error).__name__ != "StdinNotImplementedError":
            raise
        approval.note = NOBODY
        return False
    return line.strip().lower() in ("y", "yes")


def _decided(approval: Approval, choice: bool) -> bool:
    """The choice, also on the call at once (the tool loop sets it too), so the block redrawn
    before the call runs already says it."""
    if not approval.stopped:
        approval.call.approved = choice
    return choice
