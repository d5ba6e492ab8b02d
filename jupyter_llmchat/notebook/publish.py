"""Where the notebook sinks' display messages go: the running IPython shell, or a test double.

New outputs go through IPython's ``publish_display_data``. Updates of an output that exists go
through the very same ``publish`` method of the shell's display publisher, run with one step
left out: ipykernel's flush of stdout/stderr before every message, two round trips to its IO
thread that cost about 4x the rest of an update (``benchmarks/bench_publish.py``: 160 µs
public vs 40 µs). An update creates no output, so its order relative to printed text does not
matter. Everything else ``publish`` does (json_clean, image encoding, validation, display
history, the hooks an output capture registers, the parent header of the cell) still runs,
because it is ipykernel's own code that runs.
"""

from __future__ import annotations

import sys
from typing import Any, Protocol

__all__ = ["Bundle", "DisplayPublisher", "IPythonPublisher", "in_notebook_kernel", "output_widget_capturing",
           "updates_shown"]

Bundle = dict[str, str]


class DisplayPublisher(Protocol):
    """Where display messages go: ``display_data`` (update=False) or ``update_display_data``, and
    ``clear_output`` (wait=True: the front end clears when the next output arrives, in the same
    step as it shows that output, so replacing a cell's outputs shows no empty frame).

    A publisher may also have ``updates_shown() -> bool``: False when updates would not reach the
    screen (see ``output_widget_capturing``); without it they are taken to be shown.
    """

    def show(self, display_id: str, data: Bundle, *, update: bool) -> None: ...

    def clear(self, *, wait: bool) -> None: ...


def updates_shown(publisher: DisplayPublisher) -> bool:
    """Whether ``publisher``'s updates of an output reach the screen now."""
    check = getattr(publisher, "updates_shown", None)
    return True if check is None else bool(check())


class IPythonPublisher:
    """Publishes through the running IPython shell (ipykernel sends the messages on IOPub)."""

    def __init__(self) -> None:
        from IPython import get_ipython
        from IPython.display import publish_display_data

        self._shell = get_ipython()
        self._publish = publish_display_data

    def updates_shown(self) -> bool:
        return not output_widget_capturing()

    def show(self, display_id: str, data: Bundle, *, update: bool) -> None:
        transient = {"display_id": display_id}
        if update:
            # looked up on every message: capture_output() and the like swap the publisher
            pub = getattr(self._shell, "display_pub", None)
            publish = _publish_without_flush(pub)
            if publish is not None:
                publish(_WithoutFlush(pub), data, metadata={}, transient=transient, update=True)
                return
        self._publish(data, metadata={}, transient=transient, update=update)

    def clear(self, *, wait: bool) -> None:
        from IPython.display import clear_output

        clear_output(wait=wait)


class _WithoutFlush:
    """The display publisher as its own ``publish`` sees it, with the stdout/stderr flush a no-op."""

    __slots__ = ("_pub",)

    def __init__(self, pub: Any) -> None:
        object.__setattr__(self, "_pub", pub)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pub, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._pub, name, value)

    def _flush_streams(self) -> None:
        pass


def _publish_without_flush(pub: Any) -> Any:
    """``type(pub).publish`` if it can run on a ``_WithoutFlush`` of ``pub``, else None.

    That needs a publish that flushes through ``self._flush_streams()`` (ipykernel's does) and
    has no zero-argument ``super()`` (which would insist on a real instance).
    """
    publish = getattr(type(pub), "publish", None)
    code = getattr(publish, "__code__", None)
    if code is None or "_flush_streams" not in code.co_names or "__class__" in code.co_freevars:
        return None
    return publish


def output_widget_capturing() -> bool:
    """Whether an ipywidgets ``Output`` captures what this cell shows now (``with out:``).

    Front ends put the messages of a captured cell into the widget by the cell's message id, but
    drop every ``update_display_data`` among them, IPython's own included (JupyterLab's Output
    model keeps only new outputs, streams and clears: jupyter-widgets/ipywidgets#1844). A live
    view must then show its result as new outputs instead of updating one.
    """
    if "ipywidgets" not in sys.modules:
        return False  # no widget can be capturing
    from IPython import get_ipython

    header = getattr(getattr(get_ipython(), "display_pub", None), "parent_header", None) or {}
    msg_id = header.get("msg_id")
    if not msg_id:
        return False
    from ipywidgets import Output  # type: ignore[import-untyped]
    from ipywidgets.widgets import widget  # type: ignore[import-untyped]

    instances = getattr(widget, "_instances", {})  # ipywidgets 8's registry of live widgets
    return any(isinstance(w, Output) and w.msg_id == msg_id for w in list(instances.values()))


def in_notebook_kernel() -> bool:
    """True inside a Jupyter kernel (ZMQ shell); False in terminal IPython or plain Python."""
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    shell = ipython.get_ipython()
    return shell is not None and any(
        cls.__name__ == "ZMQInteractiveShell" for cls in type(shell).__mro__
    )
