"""Safe Markdown -> HTML for untrusted model output: exact outputs, injection payloads inert."""

from __future__ import annotations

import pytest

from jupyter_llmchat.notebook.html import escape, markdown_to_html, sanitize
from jupyter_llmchat.notebook.markdown_partial import close_open

LINK = 'target="_blank" rel="noopener noreferrer nofollow"'


def test_raw_html_blocks_are_escaped_as_text() -> None:
    payload = '<img src=x onerror="window.__pwned=1">\n\n<script>window.__pwned=2</script>'
    assert markdown_to_html(payload) == (
        '<p>&lt;img src=x onerror="window.__pwned=1"&gt;</p>\n'
        "<p>&lt;script&gt;window.__pwned=2&lt;/script&gt;</p>"
    )


def test_inline_html_is_escaped_and_inline_code_kept() -> None:
    assert markdown_to_html("hi <b>bold</b> <img src=x onerror=alert(1)> and `<script>`") == (
        "<p>hi &lt;b&gt;bold&lt;/b&gt; &lt;img src=x onerror=alert(1)&gt; and "
        "<code>&lt;script&gt;</code></p>"
    )


def test_html_comment_and_div_with_handler_show_as_text() -> None:
    assert markdown_to_html("<!-- c -->x") == "<p>&lt;!-- c --&gt;x</p>"
    assert markdown_to_html("<div onclick=x>hi</div>") == "<p>&lt;div onclick=x&gt;hi&lt;/div&gt;</p>"


def test_table_with_alignment() -> None:
    assert markdown_to_html("| a | b |\n|:--|--:|\n| 1 | 2 |") == (
        "<table>\n<thead>\n<tr>\n"
        '<th style="text-align: left;">a</th>\n<th style="text-align: right;">b</th>\n'
        "</tr>\n</thead>\n<tbody>\n<tr>\n"
        '<td style="text-align: left;">1</td>\n<td style="text-align: right;">2</td>\n'
        "</tr>\n</tbody>\n</table>"
    )


def test_fenced_code_keeps_language_class_and_escapes_content() -> None:
    assert markdown_to_html('```python\nprint("<x>")\n```') == (
        '<pre><code class="language-python">print("&lt;x&gt;")\n</code></pre>'
    )


def test_lists_and_emphasis() -> None:
    assert markdown_to_html("1. *one*\n2. **two**") == (
        "<ol>\n<li><em>one</em></li>\n<li><strong>two</strong></li>\n</ol>"
    )


def test_javascript_links_lose_their_href_and_links_open_safely() -> None:
    assert markdown_to_html("[x](javascript:alert(1)) [y](https://e.com)") == (
        f'<p><a {LINK}>x</a> <a href="https://e.com" {LINK}>y</a></p>'
    )


def test_images_become_links_so_nothing_loads_by_itself() -> None:
    assert markdown_to_html("![cat](http://evil/leak?d=1)") == (
        f'<p><a href="http://evil/leak?d=1" {LINK}>[image: cat]</a></p>'
    )


def test_entities() -> None:
    assert markdown_to_html("&copy; &amp; a < b") == "<p>© &amp; a &lt; b</p>"


@pytest.mark.parametrize(
    ("fragment", "expected"),
    [
        ('<a href="javascript:x" onclick="y">z</a>', f"<a {LINK}>z</a>"),
        ("<script>alert(1)</script>ok", "ok"),
        ('<img src=x onerror="alert(1)">', ""),
        ('<code class="evil; x">c</code>', "<code>c</code>"),
        ('<td style="background:url(javascript:x)">c</td>', "c"),
        ('<svg onload="alert(1)"><p>t</p></svg>', "<p>t</p>"),
        ('<iframe src="https://e.com"></iframe>', ""),
    ],
)
def test_sanitize_strips_anything_not_allow_listed(fragment: str, expected: str) -> None:
    assert sanitize(fragment) == expected


def test_partial_stream_renders_as_code() -> None:
    assert markdown_to_html(close_open("```python\nx = 1")) == (
        '<pre><code class="language-python">x = 1\n</code></pre>'
    )


def test_escape() -> None:
    assert escape('<b a="1">&') == "&lt;b a=&quot;1&quot;&gt;&amp;"


def test_the_token_view_keeps_only_its_own_tags_attributes_and_shades() -> None:
    from jupyter_llmchat.notebook.html import sanitize_token_view

    hostile = ('<div class="llmchat-tokens" onclick="x"><span style="background-color: rgba(255, 127, 14, 0.5)" '
               'title="a &quot;b&quot;">t</span><span style="background: url(javascript:x)">u</span>'
               '<span class="evil">v</span><img src=x onerror=y><a href="javascript:x">w</a>'
               '<details open><summary class="llmchat-logprobs-summary" style="color: red">s</summary></details></div>')
    assert sanitize_token_view(hostile) == (
        '<div class="llmchat-tokens"><span style="background-color: rgba(255, 127, 14, 0.5)" '
        'title="a &quot;b&quot;">t</span><span>u</span><span>v</span>w'
        '<details open=""><summary class="llmchat-logprobs-summary">s</summary></details></div>')
