"""Our errors as IPython shows them: one line, "(nothing was sent)" when nothing was."""

from __future__ import annotations

from jupyter_llmchat.core.errors import APIError, ImageError
from jupyter_llmchat.notebook.error_display import shown_in_one_line
from jupyter_llmchat.notebook.expansion import ExpansionError


def test_one_line_and_whether_anything_was_sent() -> None:
    assert shown_in_one_line(ImageError("no file plot.png"))._render_traceback_() == [
        "ImageError: no file plot.png (nothing was sent)"]
    assert shown_in_one_line(ExpansionError("{x} at line 1"))._render_traceback_() == [
        "ExpansionError: {x} at line 1 (nothing was sent)"]
    error = APIError("server error (500); try again later", status=500)
    assert shown_in_one_line(error) is error
    assert error._render_traceback_() == ["APIError: server error (500); try again later"]
