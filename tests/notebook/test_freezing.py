"""FreezePolicy: rent or buy, one policy for the cell and the panel; exact cut decisions."""

from __future__ import annotations

from support.fake_clock import FakeClock

from jupyter_llmchat.notebook.freezing import Cut, FreezePolicy

ANSWER = "# Title\n\nFirst paragraph here.\n\nSecond one, still streaming"
CODE = "Intro.\n\n```python\n" + "".join(f"value_{i} = {i} * {i}\n" for i in range(80))
PARAGRAPH = " ".join(f"Sentence {i} is here." for i in range(120))


def policy(**options: int) -> tuple[FreezePolicy, FakeClock]:
    clock = FakeClock(50.0)
    return FreezePolicy(clock=clock, **options), clock


def test_nothing_is_frozen_until_resending_has_cost_a_freeze() -> None:
    rule, _ = policy(freeze_cost=1000)
    rule.repainted(999)
    assert rule.cut(ANSWER, 0, "") is None
    rule.repainted(1)
    assert rule.cut(ANSWER, 0, "") == Cut(32)  # the last hard cut: "Second one" starts a block
    rule.frozen()
    assert rule.resent == 0 and rule.cut(ANSWER, 32, "") is None


def test_cuts_are_offsets_in_the_answer_after_the_live_piece_start() -> None:
    rule, _ = policy(freeze_cost=10)
    rule.repainted(10)
    assert rule.cut(ANSWER, 9, "") == Cut(32)  # the live piece starts at "First paragraph"


def test_a_freeze_waits_while_the_message_budget_of_the_second_is_spent() -> None:
    rule, clock = policy(freeze_cost=10, max_rate=12, freeze_messages=2)
    rule.repainted(10)
    for _ in range(11):
        rule.sent()
    assert rule.cut(ANSWER, 0, "") is None  # 11 + 2 > 12
    clock.now += 1.01  # those messages are more than a second old
    assert rule.cut(ANSWER, 0, "") == Cut(32)


def test_cuts_that_split_a_block_need_a_long_piece_and_twice_the_rent() -> None:
    rule, _ = policy(freeze_cost=100, soft_min=1024)
    rule.repainted(150)
    assert rule.cut(CODE, 8, "") is None  # soft only, and not yet twice the rent
    rule.repainted(50)
    cut = rule.cut(CODE, 8, "")
    assert cut == Cut(CODE.index("value_79"), "```python\n", split=True) and cut.open_end
    assert rule.cut(CODE[:500], 8, "") is None  # too short a piece for a soft cut


def test_one_long_paragraph_is_split_at_a_sentence_but_never_a_reopened_fence() -> None:
    rule, _ = policy(freeze_cost=100)
    rule.repainted(200)
    assert rule.cut(PARAGRAPH, 0, "") == Cut(PARAGRAPH.index("Sentence 119"), split=True)
    code = "".join(f"x = {i}. Y\n" for i in range(200))  # looks like sentences, but inside a fence
    assert rule.cut(code, 0, "```\n") == Cut(code.index("x = 199."), "```\n", split=True)  # a line, not a sentence


def test_a_cut_is_never_before_what_the_view_shows() -> None:
    """Freezing before the end of what is on screen would move shown text into another output."""
    rule, _ = policy(freeze_cost=10)
    rule.repainted(10)
    assert rule.cut(ANSWER, 0, "", after=32) == Cut(32)  # the view shows up to the cut: nothing moves
    assert rule.cut(ANSWER, 0, "", after=33) is None  # "S" of "Second" is on screen already
    assert rule.cut(PARAGRAPH, 0, "", after=len(PARAGRAPH)) is None  # no sentence end after it either


def test_while_a_freeze_is_due_a_line_that_may_start_a_cut_is_held_back() -> None:
    """A block's start is known to be a cut only once a few characters have arrived: while a
    freeze is due the view holds back such a line, so the cut comes before anything it shows."""
    rule, _ = policy(freeze_cost=10)
    text = "# Title\n\nFirst paragraph here.\n\nSec"
    assert rule.hold(text, 0, "") is None  # no freeze due: show everything
    rule.repainted(10)
    assert rule.hold(text, 0, "") == 32  # "Sec" may start a paragraph after a blank line
    assert rule.cut(text, 0, "", after=32) is None  # not known yet ...
    longer = text + "ond one, still"
    assert rule.hold(longer, 0, "") is None and rule.cut(longer, 0, "", after=32) == Cut(32)  # ... now it is
    assert rule.hold("# Title\n\nFirst paragraph\ngoes on", 0, "") is None  # a continuation line: no cut there
    assert rule.hold(text, 9, "") == 32  # offsets in the answer, as for cuts


def test_flat_only_cuts_only_before_a_paragraph_heading_or_table() -> None:
    """The cell's pieces become one output at the end: a cut where the pieces render taller than
    the whole (before a list, fence or quote; inside a block) would make the output jump up then."""
    from jupyter_llmchat.notebook.freezing import flat_seam

    assert [flat_seam(line) for line in ("Para", "## H", "| a |", "**Bold** start", "1990 was a year")] == [True] * 5
    assert [flat_seam(line) for line in ("- item", "1. one", "> quote", "```py", "~~~", "<div>", "---",
                                         "    code")] == [False] * 8
    rule = FreezePolicy(clock=FakeClock(50.0), freeze_cost=10, flat_only=True)
    rule.repainted(10)
    assert rule.cut(ANSWER, 0, "") == Cut(32)  # before "Second one": a paragraph
    listed = "Intro paragraph here.\n\n- first item of a list\n"
    assert rule.cut(listed, 0, "") is None and rule.hold(listed[:-12], 0, "") is None  # before a list: no
    rule.repainted(1000)
    assert rule.cut(CODE, 8, "") is None and rule.cut(PARAGRAPH, 0, "") is None  # never inside a block
    assert rule.hold("# Title\n\nFirst paragraph here.\n\nSec", 0, "") == 32
