"""Named tool sets: ``tools="notebook"`` (or a name inside a list of tools) stands for the tools a
registered factory makes when a question is asked.

The core imports nothing above it, so it cannot know the notebook layer's tools: the package root
registers ``"notebook"`` (the built-in notebook tools of the running IPython) when it is imported,
which happens before any Chatbot exists. Registering costs nothing; the factory runs only when the
name is used.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from . import errors

_FACTORIES: dict[str, Callable[[], Iterable[Any]]] = {}


def register_tool_set(name: str, factory: Callable[[], Iterable[Any]]) -> None:
    """Make ``tools=name`` mean the tools (functions or Tools) ``factory()`` returns."""
    _FACTORIES[name] = factory


def tool_set_names() -> list[str]:
    return list(_FACTORIES)


def expanded(tools: Iterable[Any]) -> list[Any]:
    """``tools`` with each name of a set replaced by that set's tools, in place; an unknown name is
    a one-line ConfigurationError naming the sets there are."""
    items: list[Any] = []
    for item in tools:
        if not isinstance(item, str):
            items.append(item)
            continue
        factory = _FACTORIES.get(item)
        if factory is None:
            known = ", ".join(repr(name) for name in _FACTORIES) or "none"
            raise errors.ConfigurationError(f"tools={item!r} names no tool set (the sets: {known}); pass "
                                            "functions, or a list of them")
        items.extend(factory())
    return items
