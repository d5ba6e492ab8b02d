"""Untrusted Markdown (model output) to safe HTML for the chat panel.

Two layers, because the ``markdown`` package alone passes raw HTML straight through:
1. Python-Markdown with its raw-HTML handlers removed, so ``<script>`` or ``<img onerror=...>``
   in the text is escaped and shows as text;
2. nh3 (ammonia) with an explicit allow-list of tags, attributes and URL schemes, so nothing
   that slips through (a ``javascript:`` link, an event attribute) survives.
Markdown images become plain links: loading a remote image the model chose would let a
prompt-injected answer leak data through the URL without any click.
"""

from __future__ import annotations

import html
import re
import xml.etree.ElementTree as etree
from collections.abc import Callable

import markdown  # type: ignore[import-untyped]
import nh3
from markdown.treeprocessors import Treeprocessor  # type: ignore[import-untyped]

ALLOWED_TAGS = {
    "p", "br", "hr", "em", "strong", "code", "pre", "blockquote", "ul", "ol", "li", "a",
    "h1", "h2", "h3", "h4", "h5", "h6", "table", "thead", "tbody", "tr", "th", "td", "del",
}
ALLOWED_ATTRIBUTES = {
    "a": {"href", "title"},
    "code": {"class"},  # language-xxx from fenced code, for styling only
    "th": {"align", "style"},
    "td": {"align", "style"},
    "ol": {"start"},
}
URL_SCHEMES = {"http", "https", "mailto"}
_CLASS_OK = re.compile(r"^language-[A-Za-z0-9_+#.-]{1,40}$")
_STYLE_OK = re.compile(r"^text-align: (left|right|center);$")


class _ImagesToLinks(Treeprocessor):
    """Replace <img> with a link to the image, labelled with its alt text."""

    def run(self, root: etree.Element) -> None:
        for parent in root.iter():
            for index, child in enumerate(list(parent)):
                if child.tag == "img":
                    link = etree.Element("a", {"href": child.get("src", "")})
                    link.text = f"[image: {child.get('alt') or child.get('src', '')}]"
                    link.tail = child.tail
                    parent[index] = link


def _markdown() -> markdown.Markdown:
    md = markdown.Markdown(extensions=["tables", "fenced_code", "sane_lists"], output_format="html")
    # Without these two handlers raw HTML is treated as text and escaped by the serializer.
    md.preprocessors.deregister("html_block")
    md.inlinePatterns.deregister("html")
    md.treeprocessors.register(_ImagesToLinks(md), "images_to_links", 0)
    return md


def _value_filter(allowed: dict[str, re.Pattern[str]]) -> Callable[[str, str, str], str | None]:
    """An nh3 ``attribute_filter``: an attribute named in ``allowed`` keeps its value only where its
    pattern matches the value (else it is dropped); any other allow-listed attribute keeps its value."""

    def keep(tag: str, attribute: str, value: str) -> str | None:
        pattern = allowed.get(attribute)
        return value if pattern is None or pattern.match(value) else None

    return keep


_filter_attribute = _value_filter({"class": _CLASS_OK, "style": _STYLE_OK})


def sanitize(fragment: str) -> str:
    """Keep only the allow-listed tags/attributes/URL schemes of an HTML fragment."""
    return nh3.clean(
        fragment,
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        attribute_filter=_filter_attribute,
        url_schemes=URL_SCHEMES,
        link_rel="noopener noreferrer nofollow",
        set_tag_attribute_values={"a": {"target": "_blank"}},
        strip_comments=True,
    )


# The token-probability view (logprobs_view.py) in a bubble: its own small allow-list. Its layout
# comes from classes (bubbles.CSS); only a token's shade stays inline.
TOKEN_VIEW_TAGS = {"div", "details", "summary", "span"}
TOKEN_VIEW_ATTRIBUTES = {"div": {"class"}, "details": {"open"}, "summary": {"class"}, "span": {"style", "title"}}
_SHADE_OK = re.compile(r"^background-color: rgba\(\d{1,3}, \d{1,3}, \d{1,3}, [01](\.\d{1,2})?\)$")
_TOKEN_CLASS_OK = re.compile(r"^llmchat-[a-z-]{1,40}$")


_filter_token_attribute = _value_filter({"style": _SHADE_OK, "class": _TOKEN_CLASS_OK})


def sanitize_token_view(fragment: str) -> str:
    """The token view's HTML with only its own tags and attributes (a shade as the only style)."""
    return nh3.clean(fragment, tags=TOKEN_VIEW_TAGS, attributes=TOKEN_VIEW_ATTRIBUTES,
                     attribute_filter=_filter_token_attribute, url_schemes=set(), strip_comments=True,
                     link_rel=None)


def markdown_to_html(text: str) -> str:
    """Render untrusted Markdown to sanitized HTML (tables, fenced code, lists; raw HTML as text)."""
    return sanitize(_markdown().convert(text))


def escape(text: str) -> str:
    """Plain text to HTML text (for user messages and status lines)."""
    return html.escape(text, quote=True)
