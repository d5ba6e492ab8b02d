"""The built-in notebook tools in a real kernel (nbclient): the variables list, a pandas DataFrame and
a numpy array inspected, In/Out read, and run_python's capture, namespace and time limit; exact
outputs. Each test runs one notebook (kernels are slow to start)."""

from __future__ import annotations

import textwrap

from support.kernel_notebook import run_cells

SETUP = """
import numpy as np
import pandas as pd
from math import sqrt
from jupyter_llmchat.notebook.kernel_tools import NotebookTools, notebook_tools
tools = NotebookTools(get_ipython(), time_limit=1)
"""
DATA = """
df = pd.DataFrame({"city": ["Oslo", "Lima", "<b>Pune</b>"], "temp": [3.5, 19.0, 27.25],
                   "rain": [True, False, True]})
arr = np.arange(12, dtype=float).reshape(3, 4)
arr[0, 1] = np.nan
n = 42
name = "Ada"
readings = [3.1, 2.7, 4.4]
def clean(text):
    return text.strip()
class Point:
    pass
_private = 1
"""


def cells(*sources: str) -> list[str]:
    return [textwrap.dedent(source).strip("\n") for source in sources]


def test_variables_dataframe_array_and_cells_read_exactly() -> None:
    sources = cells(
        SETUP,                                                   # 1
        DATA,                                                    # 2
        "df.shape",                                              # 3
        "print('printed, not kept')",                            # 4
        "print(tools.list_variables())",                         # 5
        "print(tools.inspect_variable('df'))",                   # 6
        "print(tools.inspect_variable('arr'))",                  # 7
        "print(tools.inspect_variable('df.temp'))",              # 8
        "print(tools.read_cell(3)); print(tools.read_cell(3, 'output'))",  # 9
        "print(tools.read_cell(4, 'output'))",                   # 10
        """
        for bad in ("nope", "df.nope", "df['city']"):
            try:
                tools.inspect_variable(bad)
            except ValueError as error:
                print(type(error).__name__, error)
        for number in (0, 99):
            try:
                tools.read_cell(number)
            except ValueError as error:
                print(type(error).__name__, error)
        """,                                                     # 11
        "print(str(df['city'].dtype))",                          # 12
        "print([(t.name, t.confirm, t.is_async) for t in notebook_tools()])",  # 13
    )
    run = run_cells(sources)  # run.stdout(i) is cell i + 1's (In[i + 1])
    assert run.stdout(3) == "printed, not kept\n"
    assert run.stdout(4) == (
        "name      type              shape/len/value\n"
        "arr       numpy.ndarray     (3, 4)\n"
        "df        pandas.DataFrame  (3, 3)\n"
        "n         int               42\n"
        "name      str               'Ada'\n"
        "readings  list              len 3\n"
        "functions: clean\n"
        "classes: Point\n")
    strings = run.stdout(11).strip()
    assert run.stdout(5) == (
        "df: pandas.DataFrame, shape (3, 3)\n\n"
        f"dtypes:\ncity    {strings:>7}\ntemp    float64\nrain       bool\n\n"
        "first 3 rows:\n"
        "          city   temp   rain\n"
        "0         Oslo   3.50   True\n"
        "1         Lima  19.00  False\n"
        "2  <b>Pune</b>  27.25   True\n\n"
        "describe():\n"
        "            temp\n"
        "count   3.000000\n"
        "mean   16.583333\n"
        "std    12.058019\n"
        "min     3.500000\n"
        "25%    11.250000\n"
        "50%    19.000000\n"
        "75%    23.125000\n"
        "max    27.250000\n")
    assert run.stdout(6) == (
        "arr: numpy.ndarray, shape (3, 4), dtype float64\n"
        "min 0, max 11, mean 5.90909, std 3.31538, NaN 1\n"
        "values:\n"
        "[[ 0. nan  2.  3.]\n"
        " [ 4.  5.  6.  7.]\n"
        " [ 8.  9. 10. 11.]]\n")
    assert run.stdout(7).startswith("df.temp: pandas.Series, length 3, dtype float64, name 'temp'\n\n")
    assert run.stdout(8) == "In[3]:\ndf.shape\nOut[3]: tuple, len 2\n(3, 3)\n"
    assert run.stdout(9) == ("Out[4] is empty: cell 4 returned no value (what a cell prints is not kept, only "
                              "the value of its last expression).\n")
    assert run.stdout(10) == (
        "NotebookToolError the notebook has no variable 'nope'; list_variables shows the variables\n"
        "NotebookToolError df has no attribute 'nope' (AttributeError); list_variables shows the variables\n"
        "NotebookToolError \"df['city']\" is not a variable name (a name, or name.attribute); list_variables "
        "shows the variables\n"
        "NotebookToolError there is no cell 0: this notebook has run cells 1 to 11\n"
        "NotebookToolError there is no cell 99: this notebook has run cells 1 to 11\n")
    assert run.stdout(12) == ("[('list_variables', False, False), ('inspect_variable', False, False), "
                              "('read_cell', False, False), ('run_python', True, True)]\n")


def test_run_python_captures_output_keeps_assignments_and_stops_at_the_time_limit() -> None:
    sources = cells(
        SETUP,                                                                     # 1
        "n = 20",                                                                  # 2
        "print(await tools.run_python('m = n + 1\\nprint(\"m is\", m)\\nm * 2'))",   # 3
        "print(m)",                                                                # 4
        "print(await tools.run_python('count = 0\\nwhile True:\\n    count += 1'))",  # 5
        "print(count > 0)",                                                        # 6
        "print(await tools.run_python('import time\\ntime.sleep(3)\\nnever = 1'))",  # 7
        "print(await tools.run_python('x = 1 / 0'))",                              # 8
        "print(await tools.run_python('pass'))",                                   # 9
        "print(await tools.run_python('\"<script>\" * 2'))",                        # 10
        "import time; time.sleep(3); print('never' in globals())",                # 11
    )
    run = run_cells(sources)
    assert run.stdout(2) == "printed:\nm is 21\n\nvalue:\n42\n"
    assert run.stdout(3) == "21\n"
    assert run.stdout(4).startswith("Stopped at line ")
    assert run.stdout(4).endswith(": the code was still running after the 1 s time limit. What it assigned before "
                                  "it was stopped stays in the notebook's namespace.\n")
    assert run.stdout(5) == "True\n"  # the kernel went on; what the loop assigned stayed
    assert run.stdout(6) == (
        "Not stopped: after the 1 s time limit the code was blocked in a call that cannot be interrupted (such as "
        "time.sleep or waiting for I/O). It goes on in the background and is stopped when that call returns; until "
        "then it may still change the notebook's namespace.\n")
    assert run.stdout(7) == (
        "error:\nTraceback (most recent call last):\n"
        '  File "<run_python 4>", line 1, in <module>\n'
        "    x = 1 / 0\n"
        "         ~~^~~\n"
        "ZeroDivisionError: division by zero\n")
    assert run.stdout(8) == "Done: it printed nothing and its last line has no value.\n"
    assert run.stdout(9) == "value:\n'<script><script>'\n"
    assert run.stdout(10) == "False\n"  # the abandoned code was stopped when its sleep returned


def test_the_tools_notebook_runs_offline_top_to_bottom(tmp_path) -> None:
    """notebooks/tools.ipynb against the offline demo server, which calls the tools a question names."""
    import os

    import nbformat
    from support.kernel_notebook import ROOT

    nb = nbformat.read(ROOT / "notebooks" / "tools.ipynb", as_version=4)
    code = [cell.source for cell in nb.cells if cell.cell_type == "code"]
    drop = ("OPENAI_API_KEY", "OPENAI_BASE_URL", "AZURE_OPENAI_API_KEY", "AZURE_OPENAI_ENDPOINT",
            "JUPYTER_LLMCHAT_STORE", *[k for k in os.environ if k.startswith("LLMCHAT_")])
    run = run_cells(code, drop_env=drop, cwd=tmp_path, env={"IPYTHONDIR": str(tmp_path / "ipython")})
    assert [run.status(i) for i in range(len(code))] == ["ok"] * len(code)

    def cell(start: str) -> int:
        return next(i for i, source in enumerate(code) if source.startswith(start))

    looked = run.displays(cell("%%chat --notebook"))[0]
    assert ("- `list_variables` returned: name type shape/len/value readings numpy.ndarray (2, 3) weather "
            "pandas.DataFrame (4, 3)\n") in looked
    assert "- `inspect_variable` returned: weather: pandas.DataFrame, shape (4, 3) dtypes: city " in looked
    calls = run.displays(cell("%%chat --notebook"), "text/plain")[0].splitlines()  # the blocks above the answer
    assert [line.split(" · ")[0] for line in calls] == [
        "\U0001f527 list_variables({})", '\U0001f527 inspect_variable({"name": "weather"})']
    assert run.displays(cell("%%chat\nUse run_python"), "text/plain")[0].startswith(
        '\U0001f527 run_python({"code": "print(weather.temp.mean())"}) · not run: nobody could approve it → ')
    listed = run.displays(cell("%chat tools"))[0].splitlines()
    assert [line.split(" | ")[0] for line in listed[2:]] == [
        "| list\\_variables", "| inspect\\_variable", "| read\\_cell", "| run\\_python"]
    assert [line.split(" | ")[-1] for line in listed[2:]] == ["no |", "no |", "no |", "yes |"]
    assert "- `to_fahrenheit` returned: " in run.displays(cell("%%chat --tools to_fahrenheit"))[0]
    approved = cell("from jupyter_llmchat.notebook.magics import current")
    assert run.stdout(approved) == ("The model wants to run: hottest = weather.loc[weather.temp.idxmax(), 'city']; "
                                    "print(hottest)\n")
    assert "- `run_python` returned: printed: Pune\n" in run.displays(approved)[0]
    assert run.displays(approved + 1, "text/plain") == ["('Pune', [('run_python', 'ok')])"]
    declined = cell("reply = bot.ask(")
    assert "- `run_python` returned: The user declined this call; it was not run.\n" in run.displays(declined)[0]
    assert run.displays(declined, "text/plain")[-1] == "[('run_python', 'declined')]"
    assert "Values from my noteb" in run.stdout(cell("print(_chat)"))  # the demo echoes the question's start


def test_stopping_the_answer_stops_run_pythons_code(loopback) -> None:
    """Stop while run_python's code runs: the tool loop cancels the (async) tool, and the code is
    stopped too, as a kernel interrupt would stop it; it does not run on to the time limit."""
    import threading
    import time

    from IPython.core.interactiveshell import InteractiveShell

    from jupyter_llmchat.core.chatbot import Chatbot
    from jupyter_llmchat.core.reply import NullSink
    from jupyter_llmchat.notebook.kernel_tools import notebook_tools

    shell = InteractiveShell.instance()
    shell.user_ns["spins"] = 0
    bot = Chatbot("gpt-4o-mini", base_url=loopback.base_url, api_key="sk-test",
                  tools=notebook_tools(shell, time_limit=600))
    loopback.queue(tool_calls=[{"name": "run_python", "arguments": {"code": "while True:\n    spins += 1"}}])
    started = threading.Event()

    def approve(approval) -> bool:
        threading.Timer(0.3, bot.stop).start()
        started.set()
        return True

    reply = bot.ask("Spin", sink=NullSink(), approve=approve)
    assert started.is_set()
    assert [(call.name, call.outcome) for call in reply.calls] == [("run_python", "stopped")]
    code_threads = [t for t in threading.enumerate() if t.name == "llmchat-run-python"]
    for thread in code_threads:  # it ends within the runner's grace (no timing asserted)
        thread.join(10)
    assert [thread for thread in code_threads if thread.is_alive()] == []
    spins = shell.user_ns["spins"]
    assert spins > 0
    time.sleep(0.2)
    assert shell.user_ns["spins"] == spins  # nothing runs on in the background


def test_tools_notebook_from_python_in_a_kernel(loopback) -> None:
    """``tools="notebook"`` (the package registers the set): the built-in tools over the kernel's
    namespace, offered with the question; alone or beside other functions."""
    loopback.queue(tool_calls=[{"name": "inspect_variable", "arguments": {"name": "scores"}},
                               {"name": "double", "arguments": {"x": 4}}])
    loopback.queue(reply="Seen.")
    sources = cells(f"""
        import numpy as np
        from jupyter_llmchat import Chatbot, NullSink
        scores = np.array([1, 2, 3])
        def double(x: int) -> int:
            \"\"\"Twice x.\"\"\"
            return 2 * x
        bot = Chatbot("gpt-4o-mini", base_url="{loopback.base_url}", api_key="sk-test")
        reply = bot.ask("Look", tools=["notebook", double], sink=NullSink())
        print([(call.name, call.outcome) for call in reply.calls], reply.text)
        """)
    run = run_cells(sources)
    assert run.stdout(0) == "[('inspect_variable', 'ok'), ('double', 'ok')] Seen.\n"
    bodies = [r.body for r in loopback.requests if r.path.endswith("/chat/completions")]
    assert [tool["function"]["name"] for tool in bodies[0]["tools"]] == [
        "list_variables", "inspect_variable", "read_cell", "run_python", "double"]
    assert [m["content"] for m in bodies[1]["messages"] if m["role"] == "tool"] == [
        "scores: numpy.ndarray, shape (3,), dtype int64\nmin 1, max 3, mean 2, std 0.816497\nvalues:\n[1 2 3]", "8"]
