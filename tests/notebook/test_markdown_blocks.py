"""markdown_tail: what an incomplete streamed answer shows, and where it can be cut into pieces."""

from __future__ import annotations

import re

import markdown
import pytest

from jupyter_llmchat.notebook.markdown_blocks import (
    Boundaries,
    close_open,
    close_open_counted,
    find_boundaries,
    sentence_cut,
)
from jupyter_llmchat.server.markdown import generate_markdown


@pytest.mark.parametrize(
    ("partial", "shown"),
    [
        ("", ""),
        ("Plain words so far", "Plain words so far"),
        # code fences: closed with the opener's own marker, a half-typed closer shown as closed
        ("```python\nprint(1", "```python\nprint(1\n```"),
        ("```python\nprint(1)\n", "```python\nprint(1)\n```"),
        ("```python\nx = 1\n``", "```python\nx = 1\n```"),
        ("~~~~\ncode ``` inside\n", "~~~~\ncode ``` inside\n~~~~"),
        ("Para\n\n``` py", "Para\n\n``` py\n```"),
        ("```\n`x\n", "```\n`x\n```"),
        ("```\na\n```\n\nAfter", "```\na\n```\n\nAfter"),
        # tables: the delimiter row is supplied until the real one has arrived
        ("Intro\n\n| Name | Tokens", "Intro\n\n| Name | Tokens\n| --- | --- |"),
        ("| a | b |\n|:--", "| a | b |\n| --- | --- |"),
        ("| a | b | c |\n| --- | -", "| a | b | c |\n| --- | --- | --- |"),
        ("| a | b |\n|---|---|\n| 1 | 2", "| a | b |\n|---|---|\n| 1 | 2"),
        # half-typed block markers are held back (no setext heading, empty item or stray tick)
        ("Some text\n-", "Some text\n"),
        ("Some text\n==", "Some text\n"),
        ("- one\n- two\n-", "- one\n- two\n"),
        ("Steps:\n\n1.", "Steps:\n\n"),
        ("Steps:\n\n12", "Steps:\n\n"),
        ("# Title\n\n##", "# Title\n\n"),
        ("Para\n\n```", "Para\n\n"),
        ("Para\n\n|", "Para\n\n"),
        ("Steps:\n\n1. Fir", "Steps:\n\n1. Fir"),
        # inline: an open code span or ** is closed, or held back while nothing follows it
        ("Hello **wor", "Hello **wor**"),
        ("Use `pri", "Use `pri`"),
        ("Text and **", "Text and"),
        ("Text and `", "Text and"),
        ("**bold `code", "**bold `code`**"),
        ("``a ` b", "``a ` b``"),
        ("`a` and `b` done", "`a` and `b` done"),
        ("## **Bo", "## **Bo**"),
        ("- item with **bold ", "- item with **bold** "),
        ("**a** and **b", "**a** and **b**"),
    ],
)
def test_close_open_exact(partial: str, shown: str) -> None:
    assert close_open(partial) == shown


@pytest.mark.parametrize(
    ("partial", "hidden"),
    [("Some text\n-", 1), ("Hello **", 3), ("```py\nx\n``", 2), ("Hello **wor", 0), ("| a | b", 0)],
)
def test_close_open_counts_what_it_holds_back(partial: str, hidden: int) -> None:
    shown, held = close_open_counted(partial)
    assert (shown, held) == (close_open(partial), hidden)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Para one.\n\nPara two.\n", Boundaries(hard=11)),
        ("# Title\nText after the heading\n", Boundaries(hard=8)),
        ("- a\n- b\n\n- c\n", Boundaries(soft=9)),  # same list: only a soft cut
        ("1. a\n2. b\n", Boundaries(soft=5)),
        ("- a\n- b\n\nAfter the list\n", Boundaries(hard=9)),
        ("- a\n\n1. b\n", Boundaries(hard=5)),  # a different list starts
        ("```py\nx = 1\n\ny = 2\n", Boundaries(soft=13, soft_prefix="```py\n")),
        ("```py\nx\n```\nNext para\n", Boundaries(hard=12)),
        ("Para\n\n    indented code\n", Boundaries()),
        ("Para\n\nNext", Boundaries()),  # the next block's kind is not known yet
        ("Para\n\nNext paragraph is long", Boundaries(hard=6)),
        ("| a |\n|---|\n| 1 |\n\nAfter\n", Boundaries(hard=19)),
        ("> quote\n\n> second\n", Boundaries(hard=9)),
        ("- a\n\n  continued item\n", Boundaries()),
    ],
)
def test_find_boundaries_exact(text: str, expected: Boundaries) -> None:
    assert find_boundaries(text) == expected


def _html(text: str) -> str:
    html = markdown.markdown(text, extensions=["fenced_code", "tables"])
    return re.sub(r">\s+<", "><", re.sub(r"\s+", " ", html)).strip()


def test_hard_cuts_never_change_how_the_answer_renders() -> None:
    """Rendering the two sides of any hard cut separately gives the whole answer's HTML."""
    doc = generate_markdown("renderer cuts", 1500, lambda s: len(s) // 4)
    whole = _html(doc)
    cuts = {find_boundaries(doc[:n]).hard for n in range(1, len(doc) + 1)} - {0}
    assert len(cuts) > 20
    for cut in sorted(cuts):
        assert _html(doc[:cut]) + _html(doc[cut:]) == whole, cut


def test_every_prefix_shows_closed_fences_and_real_tables() -> None:
    """For every prefix of a long answer: fences are balanced and a started table renders as one."""
    doc = generate_markdown("every prefix", 800, lambda s: len(s) // 4)
    assert "```python" in doc and "| Name |" in doc
    for n in range(1, len(doc) + 1):
        shown = close_open(doc[:n])
        fences = [line for line in shown.split("\n") if line.startswith("```")]
        assert len(fences) % 2 == 0, (n, shown[-80:])
        last_block = shown.rsplit("\n\n", 1)[-1]
        if last_block.startswith("| Name"):
            assert "<table>" in _html(last_block), (n, last_block)


def test_soft_cut_reopens_the_fence() -> None:
    text = "```python\n" + "".join(f"line_{i} = {i}\n" for i in range(40))
    found = find_boundaries(text)
    assert found.hard == 0 and found.soft_prefix == "```python\n"
    frozen, rest = close_open(text[: found.soft]), close_open(found.soft_prefix + text[found.soft :])
    assert frozen.endswith("line_38 = 38\n```") and rest == "```python\nline_39 = 39\n```"


@pytest.mark.parametrize(
    ("text", "head"),
    [
        ("Intro.\n\nFirst one here. Second **bold. still** here. Third", "Intro.\n\nFirst one here. Second **bold. still** here. "),
        ("a `x. Y` b. Next", "a `x. Y` b. "),  # not inside the code span
        ("One **two. Three", ""),  # the only sentence end is inside an open **
        ("```\nA. B. C", ""),  # code is never split this way
        ("- Item one. Item two", ""),  # nor list items, tables, quotes, headings
        ("| a. B |", ""),
        ("no sentence end here", ""),
    ],
)
def test_sentence_cut_exact(text: str, head: str) -> None:
    cut = sentence_cut(text)
    assert text[:cut] == head


def test_sentence_cut_halves_render_as_the_same_words() -> None:
    line = " ".join(f"Sentence number {i} has `code {i}.` and **bold {i}.** words." for i in range(60))
    cut = sentence_cut(line)
    assert 0 < cut < len(line)
    whole = re.sub(r"</?p>", "", _html(line))
    halves = re.sub(r"</?p>", "", _html(line[:cut])) + " " + re.sub(r"</?p>", "", _html(line[cut:]))
    assert halves.split() == whole.split()
