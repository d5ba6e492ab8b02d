"""{name} / {expression} expansion: f-string rules, literal braces, and one-line errors."""

from __future__ import annotations

import pytest

from jupyter_llmchat.core.errors import ChatError
from jupyter_llmchat.notebook.expansion import ExpansionError, expand, placeholders

NS = {"x": 3, "name": "Ada", "d": {"a": 1}, "In": ["", "x = 3"], "Out": {1: 9}, "items": [1, 2, 3]}


@pytest.mark.parametrize("template, expected", [
    ("hi {name}!", "hi Ada!"),
    ("{{literal}} {x + 1}", "{literal} 4"),
    ("{{ {x} }}", "{ 3 }"),
    ('{d["a"]} {d!r} {x:05d} {x!r:>4}', "1 {'a': 1} 00003    3"),
    ("{ {1: 2}[1] }", "2"),  # a dict literal inside a placeholder
    ("{[i * 2 for i in items]}", "[2, 4, 6]"),
    ("{x != 2}", "True"),  # != is not a conversion
    ('{"}"}', "}"),  # braces inside a string literal
    ("{'a:b'}", "a:b"),  # a colon inside a string is not a format spec
    ("{In[1]} -> {Out[1]}", "x = 3 -> 9"),
    ("{(y := 5)}", "5"),  # := is not a format spec
    ("no placeholders at all", "no placeholders at all"),
    ("multi\nline {x}\n", "multi\nline 3\n"),
])
def test_expands_like_f_strings(template: str, expected: str) -> None:
    assert expand(template, dict(NS)) == expected


@pytest.mark.parametrize("template, message", [
    ("{y}", "{y} at line 1, column 1: name 'y' is not defined; define it in a cell first, or write {{ and }} "
            "for literal braces, or use %%chat --raw"),
    ("ok\n  {", "unmatched '{' at line 2, column 3; write {{ and }} for literal braces, or use %%chat --raw"),
    ("a } b", "single '}' at line 1, column 3; write {{ and }} for literal braces, or use %%chat --raw"),
    ("{}", "empty {} at line 1, column 1; write {{ and }} for literal braces, or use %%chat --raw"),
    ("{x +}", "{x +} at line 1, column 1 is not a Python expression (invalid syntax); write {{ and }} for "
              "literal braces, or use %%chat --raw"),
    ("{Out[3]}", "{Out[3]} at line 1, column 1 failed: KeyError: 3"),
    ("{1/0}", "{1/0} at line 1, column 1 failed: ZeroDivisionError: division by zero"),
    ("{x:zz}", "{x:zz} at line 1, column 1: bad format spec 'zz' (Unknown format code 'z' for object of "
               "type 'int')"),
    ("{(1}", "mismatched '}' in the placeholder at line 1, column 1; write {{ and }} for literal braces, "
             "or use %%chat --raw"),
    ('{"abc}', "unterminated string in the placeholder at line 1, column 1; write {{ and }} for literal "
               "braces, or use %%chat --raw"),
])
def test_errors_are_one_line_and_name_the_fix(template: str, message: str) -> None:
    with pytest.raises(ExpansionError) as caught:
        expand(template, dict(NS))
    assert str(caught.value) == message
    assert "\n" not in str(caught.value)
    assert isinstance(caught.value, ChatError)


def test_placeholders_lists_expressions_in_order() -> None:
    assert placeholders("{{x}} {a} and {b[1]!r:>3} {{") == ["a", "b[1]!r:>3"]


def test_expression_sees_the_namespace_as_globals() -> None:
    ns = {"base": 10}
    assert expand("{[base + i for i in range(2)]}", ns) == "[10, 11]"  # comprehension scope needs globals
