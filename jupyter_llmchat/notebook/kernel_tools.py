"""The built-in notebook tools: the model looks at the kernel's data, opt-in per session
(``%%chat --notebook``; ``tools="notebook"`` or ``notebook_tools()`` from Python).

``list_variables``, ``inspect_variable`` and ``read_cell`` only read. ``run_python`` runs code in the
user namespace (code_runner.py: its printed output captured, a time limit; what it assigns stays,
as a cell's would) and is a ``confirm=True`` tool: the user approves each call. Each tool returns
plain text cut to a size limit (summaries.py describes the values) and raises an exception with a
one-line message on bad input, which goes back to the model as the tool's error. User data is
untrusted: what a tool returns is text, never Markdown or HTML. ``function_tools`` makes the
notebook's own functions tools (``%%chat --tools f,g``).
"""

from __future__ import annotations

from typing import Any, Literal

from ..core.errors import ChatError, ConfigurationError
from ..core.tools import Tool
from .code_runner import RunResult, run_code_async
from .summaries import UnknownName, bounded, short_repr, size_of, summarize, type_name, value_at

RESULT_CHARS = 8000  # any tool's result, at most
MAX_VARIABLES = 200  # rows of the variables list
MAX_NAMES = 60  # functions and classes named on one line
RUN_TIME_LIMIT = 30.0  # seconds run_python's code may run before it is stopped


class NotebookToolError(ValueError):
    """A notebook tool was called with something it cannot use (the model sees the one line)."""


class NotebookTools:
    """The notebook tools over one IPython shell's namespace and history.

    ``time_limit``: seconds ``run_python`` waits before stopping the code."""

    def __init__(self, shell: Any, *, time_limit: float = RUN_TIME_LIMIT) -> None:
        self.shell = shell
        self.time_limit = time_limit

    def tools(self) -> list[Tool]:
        """The four tools; ``run_python`` asks the user before each call (it runs code in the notebook)."""
        return [Tool(self.list_variables), Tool(self.inspect_variable), Tool(self.read_cell),
                Tool(self.run_python, confirm=True)]

    # -- the tools (their docstrings and signatures are what the model is told) -----------------------
    def list_variables(self) -> str:
        """List the variables defined in the user's notebook: name, type, and shape, length or value.

        Modules, imported functions and IPython's own names are left out; functions and classes
        defined in the notebook are only named."""
        rows, functions, classes = [], [], []
        for name, value in self._user_items():
            if isinstance(value, type):
                classes.append(name)
            elif _is_function(value):
                functions.append(name)
            else:
                rows.append((name, type_name(value), size_of(value)))
        if not (rows or functions or classes):
            return "The notebook has no variables yet."
        lines = []
        if rows:
            shown = rows[:MAX_VARIABLES]
            lines += _aligned([("name", "type", "shape/len/value"), *shown])
            if len(rows) > len(shown):
                lines.append(f"… and {len(rows) - len(shown):,} more variables")
        for label, names in (("functions", functions), ("classes", classes)):
            if names:
                more = f" … and {len(names) - MAX_NAMES:,} more" if len(names) > MAX_NAMES else ""
                lines.append(f"{label}: {', '.join(names[:MAX_NAMES])}{more}")
        return bounded("\n".join(lines), RESULT_CHARS)

    def inspect_variable(self, name: str) -> str:
        """Describe one variable of the user's notebook: a DataFrame's shape, dtypes, first rows and
        describe(); an array's shape, dtype and statistics; any other value's type and shortened repr.

        Args:
            name: The variable's name, or a dotted attribute path such as model.coef_.
        """
        return summarize(self._lookup(name), name, limit=RESULT_CHARS)

    def read_cell(self, number: int, part: Literal["source", "output"] = "source") -> str:
        """Read an earlier cell of the user's notebook: its source code (In[number]) or the value it
        returned (Out[number]). Printed output is not kept by the notebook, only returned values.

        Args:
            number: The cell's execution count, as in In[number] and Out[number].
            part: "source" for the cell's code, "output" for the value it returned.
        """
        history = list(getattr(self.shell.history_manager, "input_hist_raw", []) or [])
        last = len(history) - 1
        if isinstance(number, bool) or not isinstance(number, int) or not 1 <= number <= last:
            cells = f"cells 1 to {last}" if last >= 1 else "no cells"
            raise NotebookToolError(f"there is no cell {number!r}: this notebook has run {cells}")
        if part == "source":
            source = history[number].rstrip("\n")
            return bounded(f"In[{number}]:\n{source}" if source.strip() else f"In[{number}] is empty.",
                           RESULT_CHARS)
        if part != "output":
            raise NotebookToolError(f"part must be 'source' or 'output', not {part!r}")
        outputs = self.shell.user_ns.get("Out") or {}
        if number not in outputs:
            return (f"Out[{number}] is empty: cell {number} returned no value (what a cell prints is not "
                    "kept, only the value of its last expression).")
        return summarize(outputs[number], f"Out[{number}]", limit=RESULT_CHARS)

    async def run_python(self, code: str) -> str:
        """Run Python code in the user's notebook namespace and return what it printed, the value of
        its last expression, or its error. Variables it assigns stay in the notebook. No magics or
        shell commands. It is stopped if it runs past a time limit.

        Args:
            code: The Python code to run, like the body of a notebook cell.
        """
        if not isinstance(code, str) or not code.strip():
            raise NotebookToolError("run_python needs code to run")
        # async: when the answer is stopped, the tool loop cancels it, and the code is stopped too
        result = await run_code_async(code, self.shell.user_ns, time_limit=self.time_limit,
                                      show_value=lambda value: short_repr(value, RESULT_CHARS))
        return bounded(run_report(result, self.time_limit), RESULT_CHARS)

    # -- helpers ----------------------------------------------------------------------------------
    def _user_items(self) -> list[tuple[str, Any]]:
        """The user's own names, sorted: not ``_private`` ones, not IPython's (In, Out, exit, ...),
        not modules, not this package's objects, and functions and classes only if the notebook
        defined them (not imported ones)."""
        namespace = self.shell.user_ns
        hidden = getattr(self.shell, "user_ns_hidden", {}) or {}
        missing = object()
        items = []
        for name, value in list(namespace.items()):
            if name.startswith("_") or value is hidden.get(name, missing) or type(value).__name__ == "module":
                continue
            if _ours(value):  # this package's objects (a Chatbot, these tools) are not the user's data
                continue
            if (isinstance(value, type) or _is_function(value)) and not _defined_in_notebook(value):
                continue
            items.append((name, value))
        return sorted(items, key=lambda item: item[0].lower())

    def _lookup(self, path: Any) -> Any:
        try:
            return value_at(path, self.shell.user_ns)
        except UnknownName as error:
            raise NotebookToolError(f"{error}; list_variables shows the variables") from None


def notebook_tools(shell: Any = None, *, time_limit: float = RUN_TIME_LIMIT) -> list[Tool]:
    """The built-in notebook tools over ``shell`` (default: the running IPython)."""
    if shell is None:
        from IPython import get_ipython

        shell = get_ipython()
        if shell is None:
            raise ConfigurationError("the notebook tools look at a notebook's kernel, and this Python runs "
                                     "none: use them in Jupyter or IPython")
    return NotebookTools(shell, time_limit=time_limit).tools()


def function_tools(names: list[str], namespace: dict[str, Any]) -> list[Tool]:
    """``%%chat --tools f,g``: the notebook's functions ``names`` as Tools; a name that is not a
    function in the namespace raises ValueError (one line)."""
    made = []
    for name in names:
        try:
            value = value_at(name, namespace)
        except UnknownName as error:
            raise ValueError(str(error)) from None
        if isinstance(value, type):
            raise ValueError(f"{name} is a class, not a function")
        if not callable(value):
            raise ValueError(f"{name} is not a function (its type is {type_name(value)})")
        try:
            made.append(value if isinstance(value, Tool) else Tool(value, name=name.rpartition(".")[2]))
        except ChatError as error:
            raise ValueError(str(error)) from None
    return made


def run_report(result: RunResult, time_limit: float) -> str:
    """What run_python tells the model: what happened to the code, and to the namespace, then what it
    printed, its value or its error."""
    limit = f"{time_limit:g} s"
    if result.status == "stopped":
        where = f" at line {result.stopped_at}" if result.stopped_at else ""
        head = [f"Stopped{where}: the code was still running after the {limit} time limit. What it assigned "
                "before it was stopped stays in the notebook's namespace."]
    elif result.status == "abandoned":
        head = [f"Not stopped: after the {limit} time limit the code was blocked in a call that cannot be "
                "interrupted (such as time.sleep or waiting for I/O). It goes on in the background and is "
                "stopped when that call returns; until then it may still change the notebook's namespace."]
    else:
        head = []
    sections = [*head]
    for label, text in (("printed", result.stdout), ("printed to stderr", result.stderr)):
        if text:
            sections.append(f"{label}:\n{text.rstrip(chr(10))}")
    if result.dropped:
        sections.append(f"({result.dropped:,} more printed characters were not kept)")
    if result.error is not None:
        sections.append(f"error:\n{result.error}")
    if result.value is not None:
        sections.append(f"value:\n{result.value}")
    if not sections:
        sections.append("Done: it printed nothing and its last line has no value.")
    return "\n\n".join(sections)


def _is_function(value: Any) -> bool:
    """Functions, methods and builtins: named as functions rather than listed as variables."""
    import inspect

    return inspect.isroutine(value)


def _defined_in_notebook(value: Any) -> bool:
    """A function or class whose code is in the notebook's cells (module ``__main__``)."""
    return getattr(value, "__module__", None) == "__main__"


def _ours(value: Any) -> bool:
    module = getattr(type(value), "__module__", None) if not isinstance(value, type) else value.__module__
    return isinstance(module, str) and module.partition(".")[0] == "jupyter_llmchat"


def _aligned(rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
