"""Magic lines parsed the IPython way: split like a shell (``arg_split``), then a
``magic_arguments`` parser; every mistake is one UsageError line that says where help is.

``magic_arguments`` writes a magic's help as reST (a ``::`` block, ``<...>`` around some
arguments); ``%%chat?`` and ``%chat?`` show it on a terminal-like pager, so ``plain_help``
rewrites it as plain text: ``usage: %%chat [options]`` first, then the description and arguments.
"""

from __future__ import annotations

import argparse
import os
import re
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic_arguments import MagicHelpFormatter
from IPython.utils.process import arg_split


def split_line(line: str, *, hint: str) -> list[str]:
    """The words of a magic line, quotes removed as a shell removes them (``-i "my plot.png"``)."""
    try:
        return arg_split(line, posix=os.name == "posix", strict=True)  # as IPython's %%script does
    except ValueError as error:
        raise UsageError(f"cannot parse {line.strip()!r}: {error}; {hint}") from None


def parse(parser: argparse.ArgumentParser, words: list[str], *, hint: str, where: str = "") -> argparse.Namespace:
    """``words`` parsed by a ``magic_arguments`` parser; on error one line: ``where``, argparse's
    complaint, ``hint``."""
    try:
        return parser.parse_args(words)
    except UsageError as error:  # MagicArgumentParser.error raises it instead of exiting
        raise UsageError(f"{where}{error}; {hint}") from None


_NAME_PATH = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")


def name_list(values: list[str], *, option: str, example: str) -> list[str]:
    """The names given to a repeatable option that takes ``a,b`` lists (``--tools f,g --tools h``),
    in order, each once; each a name or a dotted attribute path (``model.predict``)."""
    names: list[str] = []
    for value in values:
        for name in (part.strip() for part in value.split(",")):
            if not name:
                continue
            if not _NAME_PATH.fullmatch(name):
                raise UsageError(f"{option}: {name!r} is not a variable name; give names separated by commas, "
                                 f"e.g. {option} {example} (nothing was sent)")
            if name not in names:
                names.append(name)
    if values and not names:
        raise UsageError(f"{option} needs names separated by commas, e.g. {option} {example} (nothing was sent)")
    return names


def model_list(values: list[str] | None) -> list[str]:
    """The models of ``-m`` (repeatable: several compare their answers side by side), in order;
    an empty name or a model given twice is one UsageError line."""
    models: list[str] = []
    for value in values or ():
        if not value.strip():
            raise UsageError("--model needs a model name, e.g. -m gpt-4o")
        if value in models:
            raise UsageError(f"-m {value} is given twice: to compare models give different ones, e.g. "
                             "-m gpt-4o -m gpt-4o-mini (nothing was sent)")
        models.append(value)
    return models


class PlainHelpFormatter(MagicHelpFormatter):
    """magic_arguments' formatter without its reST: ``usage: %name ...``, arguments as argparse
    writes them (no ``<...>``), the description as written (dedented)."""

    def _format_action_invocation(self, action: argparse.Action) -> str:
        return argparse.RawDescriptionHelpFormatter._format_action_invocation(self, action)

    def add_usage(self, usage: Any, actions: Any, groups: Any, prefix: str | None = "usage: %") -> None:
        argparse.RawDescriptionHelpFormatter.add_usage(self, usage, actions, groups, prefix)


def plain_help(function: Any) -> str:
    """The help of a ``magic_arguments``-decorated function as plain text; it becomes the
    function's docstring, which is what ``%name?`` shows. The parser's name is the magic's
    (``"%chat"`` for the cell magic ``%%chat``, ``"chat reset"`` for ``%chat reset``)."""
    parser = function.parser
    parser.formatter_class = PlainHelpFormatter
    function.__doc__ = parser.format_help()
    return function.__doc__


def usage_line(function: Any) -> str:
    """``%name [options] ARGS`` of a function decorated with ``magic_arguments``, on one line."""
    parser = function.parser
    formatter = PlainHelpFormatter(parser.prog)
    formatter.add_usage(parser.usage, parser._actions, parser._mutually_exclusive_groups, prefix="%")
    return " ".join(formatter.format_help().split())


def namespace_value(name: str, namespace: dict[str, Any], *, option: str, example: str) -> Any:
    """The notebook value ``name`` names (a variable, or an attribute path such as ``models.Movie``);
    UsageError with one line if there is none (nothing is sent)."""
    root, *attributes = name.strip().split(".")
    if not root.isidentifier() or root not in namespace:
        raise UsageError(f"{option}: no variable {name!r} in the notebook; define it first, e.g. {example} "
                         "(nothing was sent)")
    value = namespace[root]
    for attribute in attributes:
        if not attribute.isidentifier() or not hasattr(value, attribute):
            raise UsageError(f"{option}: {name!r} names nothing ({type(value).__name__} has no attribute "
                             f"{attribute!r}; nothing was sent)")
        value = getattr(value, attribute)
    return value
