"""Magic lines split like a shell's and parsed by magic_arguments parsers; mistakes are one line."""

from __future__ import annotations

import pytest
from IPython.core.error import UsageError
from IPython.core.magic_arguments import argument, magic_arguments

from jupyter_llmchat.notebook.arguments import parse, plain_help, split_line, usage_line


@magic_arguments("demo")
@argument("-i", "--image", action="append", default=[], metavar="SOURCE")
@argument("--system", metavar="TEXT")
@argument("-t", type=float)
def demo(line: str) -> None:
    """A magic to parse with."""


def test_quotes_are_removed_as_a_shell_removes_them() -> None:
    words = split_line("""--system 'Be terse.' -i "my plot.png" -i it\\'s.png""", hint="h")
    assert words == ["--system", "Be terse.", "-i", "my plot.png", "-i", "it's.png"]
    args = parse(demo.parser, words, hint="h")
    assert (args.system, args.image, args.t) == ("Be terse.", ["my plot.png", "it's.png"], None)


def test_mistakes_are_one_line_with_the_hint() -> None:
    with pytest.raises(UsageError) as caught:
        split_line("--system 'unclosed", hint="demo? lists the options")
    assert str(caught.value) == "cannot parse \"--system 'unclosed\": No closing quotation; demo? lists the options"
    with pytest.raises(UsageError) as caught:
        parse(demo.parser, ["-t", "warm"], hint="demo? lists the options", where="%demo: ")
    assert str(caught.value) == "%demo: argument -t: invalid float value: 'warm'; demo? lists the options"


def test_usage_line() -> None:
    assert usage_line(demo) == "%demo [-i SOURCE] [--system TEXT] [-t T]"


@magic_arguments("%cellmagic")  # a cell magic's parser is named "%name": its usage reads "%%name"
@argument("-f", "--format", choices=("a", "b"))
@argument("--raw", action="store_true", help="As written.")
def cell_demo(line: str, cell: str) -> None:
    """Ask the ``cell``.

    Second paragraph, kept as written.
    """


def test_plain_help_has_the_magic_s_usage_line_and_no_rest() -> None:
    assert cell_demo.__doc__.startswith("::\n\n  %%cellmagic ")  # what magic_arguments writes: reST
    assert plain_help(cell_demo) == cell_demo.__doc__ == (
        "usage: %%cellmagic [-f {a,b}] [--raw]\n\n"
        "Ask the ``cell``.\n\nSecond paragraph, kept as written.\n\n"
        "options:\n  -f {a,b}, --format {a,b}\n  --raw                 As written.\n")
    assert usage_line(cell_demo) == "%%cellmagic [-f {a,b}] [--raw]"


def test_name_lists_split_on_commas_keep_order_and_refuse_what_is_not_a_name() -> None:
    from jupyter_llmchat.notebook.arguments import name_list

    assert name_list([], option="--tools", example="f,g") == []
    assert name_list(["f,g", " h , f", "model.predict"], option="--tools", example="f,g") == [
        "f", "g", "h", "model.predict"]
    with pytest.raises(UsageError) as caught:
        name_list(["f,df[0]"], option="--with", example="df,model")
    assert str(caught.value) == ("--with: 'df[0]' is not a variable name; give names separated by commas, "
                                 "e.g. --with df,model (nothing was sent)")
    with pytest.raises(UsageError) as caught:
        name_list([" , "], option="--tools", example="f,g")
    assert str(caught.value) == "--tools needs names separated by commas, e.g. --tools f,g (nothing was sent)"
