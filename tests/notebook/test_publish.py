"""publish: our updates run ipykernel's own publish (minus the flush), so every capture of
display output sees them as it sees IPython's; inside an ipywidgets Output the sinks show new outputs.

All in a real ipykernel (nbclient, which also plays the front end's part for Output widgets).
"""

from __future__ import annotations

import json

import pytest
from support.kernel_notebook import Run, run_cells

from jupyter_llmchat.notebook.publish import in_notebook_kernel, output_widget_capturing

ANSWER = "# Title\n\nA streamed **answer** with `code`.\n\n- one\n- two\n"

SETUP = (
    "import json, time\n"
    "import ipywidgets\n"
    "from IPython import get_ipython\n"
    "from IPython.display import display, publish_display_data\n"
    "from IPython.utils.capture import capture_output\n"
    "from jupyter_llmchat.core.reply import Reply\n"
    "from jupyter_llmchat.notebook.display import MarkdownDisplaySink\n"
    "from jupyter_llmchat.notebook.formatted import FormattedSink\n"
    "from jupyter_llmchat.notebook.publish import IPythonPublisher, output_widget_capturing\n"
    "def stream(sink, text):\n"
    "    sink.start('m')\n"
    "    for i in range(0, len(text), 4):\n"
    "        sink.write(text[i:i + 4]); time.sleep(0.003)\n"
    "    sink.finish(Reply(text=text, model='m'))\n"
)

HOOKS = (
    "seen = []\n"
    "def hook(msg):\n"
    "    if msg['msg_type'] != 'update_display_data':\n"
    "        return msg\n"
    "    seen.append([msg['content'], msg['parent_header']['msg_id'] == parent])\n"
    "    return None  # consumed, as an output capture does: nothing is sent\n"
    "pub = get_ipython().display_pub\n"
    "parent = pub.parent_header['msg_id']\n"
    "data = {'application/json': {'values': (1, 2)}, 'text/plain': 'a tuple'}\n"
    "pub.register_hook(hook)\n"
    "try:\n"
    "    publish_display_data(data, metadata={}, transient={'display_id': 'd1'}, update=True)\n"
    "    IPythonPublisher().show('d1', data, update=True)\n"
    "finally:\n"
    "    pub.unregister_hook(hook)\n"
    "print(json.dumps([repr(seen[0]) == repr(seen[1]), seen]))\n"
)

CAPTURE = (
    "with capture_output() as captured:\n"
    "    IPythonPublisher().show('d2', {'text/markdown': 'new'}, update=False)\n"
    "    IPythonPublisher().show('d2', {'text/markdown': 'updated'}, update=True)\n"
    "print(json.dumps([[o.data, o.transient, o.update] for o in captured.outputs]))\n"
)

CAPTURING = (
    "probe = ipywidgets.Output()\n"
    "before = output_widget_capturing()\n"
    "with probe:\n"
    "    during = output_widget_capturing()\n"
    "print(json.dumps([before, during, output_widget_capturing()]))\n"
)

IN_OUTPUT = (
    "out = ipywidgets.Output()\n"
    "display(out)\n"
    "with out:\n"
    f"    stream(MarkdownDisplaySink(interval=0.01), {ANSWER!r})\n"
    "    stream(FormattedSink('code', interval=0.01, footer=False), '```py\\nx = 1\\n```')\n"
    "print(out.model_id)\n"
)


@pytest.fixture(scope="module")
def kernel_run() -> Run:
    return run_cells([SETUP, HOOKS, CAPTURE, CAPTURING, IN_OUTPUT])


def test_updates_pass_the_display_hooks_exactly_as_ipythons_own(kernel_run: Run) -> None:
    """A hook registered on the display publisher (what output captures use) sees our update with
    exactly the content IPython's public path gives it (ipykernel's own code prepared both) and
    the cell's parent header, and can consume it."""
    same, seen = json.loads(kernel_run.stdout(1))
    content = {"data": {"application/json": {"values": [1, 2]}, "text/plain": "a tuple"}, "metadata": {},
               "transient": {"display_id": "d1"}}
    assert same is True and seen == [[content, True], [content, True]]
    assert kernel_run.outputs(1)[0].output_type == "stream"  # the consumed updates were not sent


def test_capture_output_captures_our_displays_and_updates(kernel_run: Run) -> None:
    assert json.loads(kernel_run.stdout(2)) == [
        [{"text/markdown": "new"}, {"display_id": "d2"}, False],
        [{"text/markdown": "updated"}, {"display_id": "d2"}, True],
    ]


def test_output_widget_capture_is_seen_only_inside_the_with_block(kernel_run: Run) -> None:
    assert json.loads(kernel_run.stdout(3)) == [False, True, False]
    assert output_widget_capturing() is False and in_notebook_kernel() is False  # not in a kernel here


def test_an_output_widget_captures_the_streamed_answers(kernel_run: Run) -> None:
    """Inside ``with out:`` the sinks show their results as new outputs, which the widget keeps
    (front ends drop updates there); the cell itself shows only the widget."""
    model_id = kernel_run.stdout(4).strip()
    state = kernel_run.nb.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    outputs = state[model_id]["state"]["outputs"]
    assert [(o["output_type"], o["data"]) for o in outputs] == [
        ("display_data", {"text/markdown": ANSWER, "text/plain": ANSWER}),
        ("display_data", {"text/markdown": "<sub>m</sub>", "text/plain": "[m]"}),
        ("display_data", {"text/plain": "x = 1", "text/markdown": "```py\nx = 1\n```"}),
    ]
    cell = kernel_run.outputs(4)
    assert [o.output_type for o in cell] == ["display_data", "stream"]  # the widget, the model id
    assert "application/vnd.jupyter.widget-view+json" in cell[0].data
