"""markdown_partial: what an incomplete streamed answer shows, and where one long paragraph splits."""

from __future__ import annotations

import re

import markdown
import pytest
from markdown_it import MarkdownIt

from jupyter_llmchat.notebook.markdown_blocks import find_boundaries
from jupyter_llmchat.notebook.markdown_partial import close_open, close_open_counted, sentence_cut
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
        ("```python\nx = 1\n```", "```python\nx = 1\n```"),
        ("~~~~\ncode ``` inside\n", "~~~~\ncode ``` inside\n~~~~"),
        ("Para\n\n``` py", "Para\n\n``` py\n```"),
        ("```\n`x\n", "```\n`x\n```"),
        ("```\na\n```\n\nAfter", "```\na\n```\n\nAfter"),
        # fences inside containers are closed where they stand
        ("1. Run:\n   ```bash\n   ls", "1. Run:\n   ```bash\n   ls\n   ```"),
        ("> ```sql\n> SELECT `x", "> ```sql\n> SELECT `x\n> ```"),
        ("> ```sql\n> SELECT 1;\n> ``", "> ```sql\n> SELECT 1;\n> ```"),
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
    [("Some text\n-", 1), ("Hello **", 3), ("```py\nx\n``", 2), ("```py\nx\n```", 3), ("Hello **wor", 0),
     ("| a | b", 0)],
)
def test_close_open_counts_what_it_holds_back(partial: str, hidden: int) -> None:
    shown, held = close_open_counted(partial)
    assert (shown, held) == (close_open(partial), hidden)


def _html(text: str) -> str:
    html = markdown.markdown(text, extensions=["fenced_code", "tables"])
    return re.sub(r">\s+<", "><", re.sub(r"\s+", " ", html)).strip()


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
        ("Start **bold\nstill bold. Next", ""),  # opened on the paragraph's first line
        ("See *this. Emphasis* here. Next", "See *this. Emphasis* here. "),
        ("Cost $x. Y$ and more. Next", "Cost $x. Y$ and more. "),  # inline math stays whole
        ("A [link. Text](https://x.y) here. Next", "A [link. Text](https://x.y) here. "),
        ("snake_case names. Next _emph. Still_ on", "snake_case names. "),
        ("```\nA. B. C", ""),  # code is never split this way
        ("- Item one. Item two", ""),  # nor list items, tables, quotes, headings
        ("> Quote one. Quote two", ""),
        ("| a. B |", ""),
        ("$$\nA. B. C", ""),  # nor display math
        ("no sentence end here", ""),
    ],
)
def test_sentence_cut_exact(text: str, head: str) -> None:
    cut = sentence_cut(text)
    assert text[:cut] == head


def test_sentence_cut_halves_render_as_the_same_words() -> None:
    gfm = MarkdownIt("commonmark")
    line = " ".join(f"Sentence number {i} has `code {i}.` and **bold {i}.** words." for i in range(60))
    cut = sentence_cut(line)
    assert 0 < cut < len(line)
    words = re.sub(r"</?p>", " ", gfm.render(line)).split()
    assert re.sub(r"</?p>", " ", gfm.render(line[:cut]) + gfm.render(line[cut:])).split() == words
