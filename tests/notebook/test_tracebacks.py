"""--error's traceback text: IPython's machinery dropped, cells named In[n], chained causes kept."""

from __future__ import annotations

import sys

import pytest
from IPython.core.interactiveshell import InteractiveShell

from jupyter_llmchat.notebook.tracebacks import last_error_block


@pytest.fixture
def shell():
    shell = InteractiveShell.instance()
    saved = {name: getattr(sys, name, None) for name in ("last_type", "last_value", "last_traceback")}
    yield shell
    for name, value in saved.items():
        if value is None and hasattr(sys, name):
            delattr(sys, name)
        elif value is not None:
            setattr(sys, name, value)


def test_last_error_block_names_cells_and_keeps_causes(shell, capsys) -> None:
    for name in ("last_type", "last_value", "last_traceback"):
        if hasattr(sys, name):
            delattr(sys, name)
    assert last_error_block(shell) is None
    shell.run_cell("def parse(text):\n    return int(text)\n", store_history=True)
    first = shell.execution_count - 1
    shell.run_cell("try:\n    parse('x')\nexcept ValueError as e:\n    raise RuntimeError('bad input') from e\n",
                   store_history=True)
    second = shell.execution_count - 1
    capsys.readouterr()
    block = last_error_block(shell)
    assert block == (
        f"The code that failed (In[{second}]):\n\n```python\ntry:\n    parse('x')\nexcept ValueError as e:\n"
        "    raise RuntimeError('bad input') from e\n```\n\nThe error:\n\n```pytb\n"
        "Traceback (most recent call last):\n"
        f"  Cell In[{second}], line 2, in <module>\n    parse('x')\n"
        f"  Cell In[{first}], line 2, in parse\n    return int(text)\n"
        "ValueError: invalid literal for int() with base 10: 'x'\n\n"
        "The above exception was the direct cause of the following exception:\n\n"
        "Traceback (most recent call last):\n"
        f"  Cell In[{second}], line 4, in <module>\n    raise RuntimeError('bad input') from e\n"
        "RuntimeError: bad input\n```")
    assert "\x1b" not in block and "interactiveshell.py" not in block
