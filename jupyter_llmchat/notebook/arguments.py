"""Magic lines parsed the IPython way: split like a shell (``arg_split``), then a
``magic_arguments`` parser; every mistake is one UsageError line that says where help is."""

from __future__ import annotations

import argparse
import os
from typing import Any

from IPython.core.error import UsageError
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


def usage_line(function: Any) -> str:
    """``%name [options] ARGS`` of a function decorated with ``magic_arguments``, on one line."""
    usage = function.parser.format_usage()
    return " ".join(usage.replace("::", " ").split())
