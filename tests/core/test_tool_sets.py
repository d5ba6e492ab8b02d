"""Named tool sets: a name in tools= stands for the tools its factory makes, when asked; the package
root registers "notebook"."""

from __future__ import annotations

import pytest

import jupyter_llmchat  # noqa: F401 - importing the package registers "notebook"
from jupyter_llmchat.core import tool_sets
from jupyter_llmchat.core.errors import ConfigurationError
from jupyter_llmchat.core.tool_sets import expanded, register_tool_set, tool_set_names


def clock() -> str:
    """The time."""
    return "noon"


def test_a_name_stands_for_its_sets_tools_made_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tool_sets, "_FACTORIES", dict(tool_sets._FACTORIES))
    made: list[str] = []

    def factory() -> list:
        made.append("made")
        return [clock]

    register_tool_set("time", factory)
    assert made == []  # registering runs nothing
    assert "notebook" in tool_set_names() and "time" in tool_set_names()

    def other() -> None:
        """Another."""

    assert expanded(["time", other]) == [clock, other]
    assert expanded([other]) == [other] and made == ["made"]
    with pytest.raises(ConfigurationError) as caught:
        expanded(["nosuch"])
    assert str(caught.value) == ("tools='nosuch' names no tool set (the sets: 'notebook', 'time'); pass functions, "
                                 "or a list of them")


def test_the_notebook_set_outside_a_kernel_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    import IPython

    monkeypatch.setattr(IPython, "get_ipython", lambda: None)  # as in a plain script (other tests made a shell)
    with pytest.raises(ConfigurationError) as caught:
        expanded(["notebook"])
    assert str(caught.value) == ("the notebook tools look at a notebook's kernel, and this Python runs none: use "
                                 "them in Jupyter or IPython")
