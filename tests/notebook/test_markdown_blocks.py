"""markdown_blocks: the one block parser. Its cut points are checked against markdown-it-py
(CommonMark + GFM tables, as the front ends parse Markdown) on every prefix of realistic answers."""

from __future__ import annotations

import re

import markdown
import pytest
from markdown_it import MarkdownIt
from support.markdown_corpus import CORPUS, EDGE_CASES, MATH

from jupyter_llmchat.notebook.markdown_blocks import Boundaries, fenced_blocks, find_boundaries, scan
from jupyter_llmchat.server.markdown import generate_markdown

GFM = MarkdownIt("commonmark").enable(["table", "strikethrough"])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Para one.\n\nPara two.\n", Boundaries(hard=11)),
        ("# Title\nText after the heading\n", Boundaries(hard=8)),
        ("- a\n- b\n- c\n", Boundaries(soft=8)),  # same list: only a soft cut
        ("- a\n- b\n\n- c\n", Boundaries()),  # loose as a whole, tight in any two parts: no cut
        ("- a\n\n- b\n\n- c\n\n- d\n", Boundaries(soft=10)),  # loose on both sides of the cut
        ("1. a\n2. b\n", Boundaries(soft=5)),
        ("1. a\n1. b\n", Boundaries()),  # the second part would be numbered from 1 again
        ("- a\n- b\n\nAfter the list\n", Boundaries(hard=9)),
        ("- a\n\n1. b\n", Boundaries(hard=5)),  # a different list starts
        ("- a\n* b\n", Boundaries(hard=4)),  # so does another bullet character
        ("Steps:\n1. one\n2. two\n", Boundaries(hard=7, soft=14)),  # a list may interrupt a paragraph
        ("Text\n2. not a list\n", Boundaries()),  # ... but not one that starts at 2
        ("- a\n- b\nlazy line\n", Boundaries(soft=4)),
        ("```py\nx = 1\n\ny = 2\n", Boundaries(soft=13, soft_prefix="```py\n")),
        ("```py\nx\n```\nNext para\n", Boundaries(hard=12)),
        ("Para\n\n    indented code\n", Boundaries()),
        ("Para\n\nNext", Boundaries()),  # the next block's kind is not known yet
        ("Para\n\nNext paragraph is long", Boundaries(hard=6)),
        ("| a |\n|---|\n| 1 |\n\nAfter\n", Boundaries(hard=19)),
        ("| a |\n|---|\n| 1 |\nText\n", Boundaries()),  # a GFM table row, not a paragraph
        ("> quote\n\n> second\n", Boundaries(hard=9)),
        ("> quote\nlazy\n", Boundaries()),
        ("- a\n\n  continued item\n", Boundaries()),
        # a blank line inside a fence inside an item does not make the list loose
        ("1. Run:\n   ```sh\n   ls\n\n   pwd\n   ```\n2. Next\n", Boundaries(soft=38)),
        ("Text\n---\nNext\n", Boundaries()),  # after a setext heading (a table row could look alike)
        ("<!--\n\nnot a cut\n-->\nAfter\n", Boundaries()),
        ("$$\na = b\n\nc = d\n$$\n\nAfter\n", Boundaries(hard=20)),  # never inside display math
        ("See [x].\n\nMore.\n\n[x]: /url\n", Boundaries()),  # a link definition applies everywhere
    ],
)
def test_find_boundaries_exact(text: str, expected: Boundaries) -> None:
    assert find_boundaries(text) == expected


def _join(first: str, second: str) -> str:
    """The HTML of two pieces of one block cut in two, with the seam taken out (one fence, one list)."""
    if first.endswith("</code></pre>\n"):
        opened = re.match(r"<pre><code[^>]*>", second)
        assert opened, second[:80]
        return first[: -len("</code></pre>\n")] + second[opened.end():]
    if first.endswith("</ul>\n") and second.startswith("<ul>\n"):
        return first[:-6] + second[5:]
    opened = re.match(r'<ol(?: start="\d+")?>\n', second)
    assert first.endswith("</ol>\n") and opened, (first[-80:], second[:80])
    return first[:-6] + second[opened.end():]


def _numbered_on(first: str, second: str) -> bool:
    """An ordered list cut in two numbers on: the second part starts where the first stopped."""
    tokens = GFM.parse(second)
    if not tokens or tokens[0].type != "ordered_list_open":
        return True
    before = GFM.parse(first)
    opened = [i for i, t in enumerate(before) if t.type == "ordered_list_open" and t.level == 0][-1]
    items = sum(t.type == "list_item_open" and t.level == 1 for t in before[opened:])
    return int(tokens[0].attrGet("start") or 1) == int(before[opened].attrGet("start") or 1) + items


# Distinct (hard, soft) cut points each answer yields over all its prefixes: the check below is
# not vacuous, and a change in what the parser finds shows up here.
CUTS = {
    "install_steps": (2, 2), "comparison": (6, 1), "math": (4, 4), "nested_fences": (5, 8),
    "setext_and_rules": (8, 1), "loose_list": (2, 2), "html_looking": (7, 0), "emphasis_and_quotes": (3, 0),
    "tight_steps": (4, 4), "indented_and_tabs": (3, 3), "definitions": (2, 0), "long_code": (3, 22),
    "mixed_lists": (3, 4),
}


@pytest.mark.parametrize("name", [*CORPUS, *EDGE_CASES])
def test_every_cut_of_every_prefix_renders_like_the_whole(name: str) -> None:
    """For every prefix of the answer: rendering the two sides of its hard cut apart gives the
    prefix's HTML; the piece after its soft cut, shown with its prefix, continues the same block."""
    answer = {**CORPUS, **EDGE_CASES}[name]
    rendered: dict[str, str] = {}

    def render(text: str) -> str:
        if text not in rendered:
            rendered[text] = GFM.render(text)
        return rendered[text]

    hard_cuts, soft_cuts = set(), set()
    for n in range(1, len(answer) + 1):
        prefix = answer[:n]
        found = find_boundaries(prefix)
        if found.hard:
            hard_cuts.add(found.hard)
            assert render(prefix[: found.hard]) + GFM.render(prefix[found.hard:]) == GFM.render(prefix), (n, found)
        if found.soft:
            soft_cuts.add(found.soft)
            first, second = prefix[: found.soft], found.soft_prefix + prefix[found.soft:]
            assert _join(render(first), GFM.render(second)) == GFM.render(prefix), (n, found)
            assert _numbered_on(first, second), (n, found)
    if name in CUTS:
        assert (len(hard_cuts), len(soft_cuts)) == CUTS[name]


def test_display_math_is_never_cut() -> None:
    """Jupyter takes $$ ... $$ out before it parses Markdown: a piece must hold all of it."""
    start, end = MATH.index("$$\n"), MATH.index("\n$$\n") + 4
    for n in range(1, len(MATH) + 1):
        found = find_boundaries(MATH[:n])
        assert not start < found.hard < end and not start < found.soft < end, n


def _python_markdown(text: str) -> str:
    html = markdown.markdown(text, extensions=["fenced_code", "tables"])
    return re.sub(r">\s+<", "><", re.sub(r"\s+", " ", html)).strip()


def test_hard_cuts_keep_the_panels_rendering_of_generated_answers() -> None:
    """The chat panel renders with Python-Markdown: on the loopback server's answers its hard
    cuts are exact too."""
    doc = generate_markdown("renderer cuts", 1500, lambda s: len(s) // 4)
    whole = _python_markdown(doc)
    cuts = {find_boundaries(doc[:n]).hard for n in range(1, len(doc) + 1)} - {0}
    assert len(cuts) > 20
    for cut in sorted(cuts):
        assert _python_markdown(doc[:cut]) + _python_markdown(doc[cut:]) == whole, cut


@pytest.mark.parametrize(
    ("text", "blocks"),
    [
        ("Use:\n\n```python\nprint(1)\n```\n", [("python", "print(1)", True)]),
        ("~~~bash title=x\nls -l\n~~~", [("bash", "ls -l", True)]),
        ("````md\n```py\nx\n```\n````", [("md", "```py\nx\n```", True)]),
        ("  ```python\n  indented\n    more\n  ```", [("python", "indented\n  more", True)]),
        ("1. Run:\n\n   ```bash\n   pip install x\n   ```\n", [("bash", "pip install x", True)]),
        ("> ```sql\n> SELECT 1;\n> ```\n", [("sql", "SELECT 1;", True)]),
        ("- a\n  ```\n  x\nb\n", [("", "x", True)]),  # the item ended, and the fence with it
        ("```make\nall:\n\tgcc x.c\n```", [("make", "all:\n\tgcc x.c", True)]),  # tabs kept
        ("```python\nnever closed", [("python", "never closed", False)]),
        ("    ```\n    indented code, not a fence\n    ```", []),
        ("``` not`a fence\n", []),
    ],
)
def test_fenced_blocks_exact(text: str, blocks: list[tuple[str, str, bool]]) -> None:
    assert [(b.language, b.code, b.complete) for b in fenced_blocks(text)] == blocks


@pytest.mark.parametrize(
    ("text", "closing"),
    [("```py\nx", "```"), ("1. a\n   ~~~~\n   x", "   ~~~~"), ("> ```\n> x", "> ```"), ("Text", None)],
)
def test_scan_says_which_fence_is_open_and_how_to_close_it(text: str, closing: str | None) -> None:
    fence = scan(text).open_fence
    assert (fence.closing if fence else None) == closing
