"""The %chat table renderer: Markdown and aligned text in one bundle; text from outside (model and
session names) cannot become markup in the Markdown."""

from __future__ import annotations

from jupyter_llmchat.notebook.tables import markdown_cell, table_bundle


def test_markdown_and_text_with_numbers_right_aligned_and_a_note() -> None:
    bundle = table_bundle([("session", "requests"), ("alpha", "3"), ("total", "10")], numeric=(1,),
                          note="1 reply had no usage.")
    assert bundle == {
        "text/markdown": "| session | requests |\n|---|---:|\n| alpha | 3 |\n| total | 10 |\n\n1 reply had no usage.",
        "text/plain": "session  requests\nalpha           3\ntotal          10\n\n1 reply had no usage."}


def test_untrusted_cells_stay_text() -> None:
    payloads = {
        "<img src=x onerror=alert(1)>": "\\<img src=x onerror=alert(1)\\>",
        "[click](javascript:alert(1))": "\\[click\\](javascript:alert(1))",
        "a|b": "a\\|b",
        "*bold* _it_ `code` ~~s~~": "\\*bold\\* \\_it\\_ \\`code\\` \\~\\~s\\~\\~",
        # the page holds \$ and \\: MathJax shows a dollar and a backslash, never math
        "$x^2$ &amp; back\\slash": "\\\\$x^2\\\\$ \\&amp; back\\\\\\\\slash",
        "two\nlines": "two lines",
    }
    for raw, escaped in payloads.items():
        assert markdown_cell(raw) == escaped
    bundle = table_bundle([("model",), ("<b>x</b>\n| y",)])
    assert bundle["text/markdown"].splitlines()[2] == "| \\<b\\>x\\</b\\> \\| y |"
    assert bundle["text/plain"].splitlines()[1] == "<b>x</b> | y"  # plain text is shown as is


def test_costs_in_a_table_and_its_note_show_as_dollars() -> None:
    """``%chat usage``: two costs in one row or in the note never pair into math (JupyterLab typesets
    ``$...$`` in Markdown outputs); the note is our prose and passes the display-safe function too."""
    bundle = table_bundle([("model", "cost"), ("a$b", "$0.50"), ("total", "$1.25 + unknown")], numeric=(1,),
                          note="2 replies cost $0 if no text arrived, else $0.01.")
    assert bundle["text/markdown"] == (
        "| model | cost |\n|---|---:|\n| a\\\\$b | \\\\$0.50 |\n| total | \\\\$1.25 + unknown |\n\n"
        "2 replies cost \\\\$0 if no text arrived, else \\\\$0.01.")
