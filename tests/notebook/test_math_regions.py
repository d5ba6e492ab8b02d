"""math_regions: the stretches JupyterLab's removeMath takes out of a Markdown output as math."""

from __future__ import annotations

from jupyter_llmchat.notebook.math_regions import math_regions


def cut(text: str) -> list[str]:
    return [text[a:b] for a, b in math_regions(text)]


def test_delimiters_jupyterlab_finds() -> None:
    assert cut("a $x^2$ b $$y$$ c \\\\(z\\\\) d \\\\[w\\\\] \\begin{align}v\\end{align}") == [
        "$x^2$", "$$y$$", "\\\\(z\\\\)", "\\\\[w\\\\]", "\\begin{align}v\\end{align}"]
    assert cut("one backslash \\(x\\) and \\[y\\] is no math to it") == []


def test_currency_pairs_but_escaped_dollars_and_blank_lines_stop_it() -> None:
    assert cut("costs $5 per month, the pro plan $20") == ["$5 per month, the pro plan $"]
    assert cut("costs \\$5 and \\\\$20") == []
    assert cut("a $5\n\nb $6") == []  # never across a blank line
    assert cut("a $5\nb $6") == ["$5\nb $"]


def test_dollars_in_code_it_recognizes_are_not_math() -> None:
    assert cut("`$a` and `$b`") == []
    assert cut("```\n$a\n$b\n```") == []
    assert cut("  ```\n  $a\n  ```\n$b") == ["$a\n  ```\n$"]  # an indented fence is not recognized


def test_braces_balance_inside_math() -> None:
    assert cut("$a{$ b $c}$") == ["$a{$ b $c}$"]
