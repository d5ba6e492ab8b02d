"""CellWatch: in a real kernel, a cell magic under owning_cell learns whether its cell showed
anything that is not ours (then no sink may replace the cell's outputs), and the kernel's streams
and display publisher are as they were afterwards."""

from __future__ import annotations

import json

from support.kernel_notebook import run_cells

from jupyter_llmchat.notebook.cell_watch import CellWatch, current_cell, running_request

SETUP = '''
import sys, warnings
from IPython.core.magic import register_cell_magic
from IPython.display import display, publish_display_data
from jupyter_llmchat.notebook.cell_watch import current_cell, owning_cell
seen = []

@register_cell_magic
@owning_cell
def probe(line, cell):
    watch = current_cell()
    exec(cell)
    seen.append(None if watch is None else watch.only_ours())
'''

CASES = [
    ("quiet", "%%probe\npass", True),
    ("print", "%%probe\nprint('a word')", False),
    ("stderr", "%%probe\nsys.stderr.write('to stderr')", False),
    ("warning", "%%probe\nwarnings.warn('careful')", False),
    ("display", "%%probe\ndisplay('shown')", False),
    ("ours", "%%probe\nwith current_cell().ours():\n    print('the sink wrote this')", True),
    ("claimed", "%%probe\ncurrent_cell().claim('llmchat-x')\n"
                "publish_display_data({'text/plain': 'mine'}, transient={'display_id': 'llmchat-x-0'})", True),
    ("from_code", "x = 1\nget_ipython().run_cell_magic('probe', '', 'pass')", None),
]


def test_a_cell_magic_learns_whether_its_cell_holds_anything_else() -> None:
    run = run_cells([SETUP, *(code for _, code, _ in CASES),
                     "import json\nprint(json.dumps([seen, 'watched_write' in sys.stdout.write.__qualname__,"
                     " 'watched_write' in sys.stderr.write.__qualname__,"
                     " len(get_ipython().display_pub._hooks), current_cell() is None]))"])
    seen, stdout_wrapped, stderr_wrapped, hooks, outside = json.loads(run.stdout(len(CASES) + 1))
    assert dict(zip([name for name, _, _ in CASES], seen)) == {name: expected for name, _, expected in CASES}
    assert (stdout_wrapped, stderr_wrapped, hooks, outside) == (False, False, 0, True)  # all as it was


def test_outside_a_kernel_nothing_is_watched() -> None:
    watch = CellWatch()
    assert watch.start() is False and watch.only_ours() is False and current_cell() is None
    watch.stop()  # harmless


class _Kernel:
    def __init__(self, parent: object) -> None:
        self.parent = parent

    def get_parent(self) -> object:
        if isinstance(self.parent, Exception):
            raise self.parent
        return self.parent


class _Shell:
    def __init__(self, kernel: object) -> None:
        self.kernel = kernel


def test_the_running_request_is_the_kernels_parent_message_or_empty() -> None:
    request = {"content": {"code": "%%chat\nhi"}, "metadata": {"cellId": "c-1"}}
    assert running_request(_Shell(_Kernel(request))) == request
    assert running_request(_Shell(_Kernel(None))) == {}  # no request being run
    assert running_request(_Shell(_Kernel(RuntimeError("no session")))) == {}  # the kernel cannot say
    assert running_request(_Shell(None)) == {} and running_request(object()) == {}  # not a kernel's shell
