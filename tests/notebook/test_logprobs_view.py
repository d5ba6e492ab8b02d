"""The token-probability view: pieces (characters split over tokens shown whole), exact shading and
tooltips, the statistics of the footer, and display safety: every payload of the injection corpus,
as tokens and as alternatives, comes out as text with only our own tags and attributes."""

from __future__ import annotations

import html
import math
from html.parser import HTMLParser

import pytest
from support.xss_corpus import PAYLOADS, dangers

from jupyter_llmchat.core.reply import Reply
from jupyter_llmchat.notebook.logprobs_view import (
    LogprobsView,
    logprobs_bundle,
    logprobs_html,
    percent,
    pieces,
    probability_stats,
    stats_text,
)


def entry(token: str, p: float, *alternatives: tuple[str, float], raw: bytes | None = None) -> dict:
    item = {"token": token, "logprob": math.log(p),
            "top_logprobs": [{"token": token, "logprob": math.log(p)},
                             *({"token": t, "logprob": math.log(q)} for t, q in alternatives)]}
    if raw is not None:
        item["bytes"] = list(raw)
    return item


def tokens_of(text: str, size: int = 3) -> list[dict]:
    """``text`` as tokens of ``size`` bytes each (cut inside characters, as real tokens are), each
    with an alternative holding the same hostile text."""
    raw = text.encode()
    chunks = [raw[i:i + size] for i in range(0, len(raw), size)]
    return [entry(chunk.decode("utf-8", "backslashreplace"), 0.5, (text, 0.25), raw=chunk) for chunk in chunks]


class Shape(HTMLParser):
    """Tags, attributes and the text of the token spans, as a browser would parse them."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, tuple[str, ...]]] = []
        self.titles: list[str] = []
        self.spans: list[str] = []
        self._in_span = False

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, tuple(name for name, _ in attrs)))
        if tag == "span":
            self._in_span = True
            self.spans.append("")
            self.titles.append(dict(attrs).get("title") or "")

    def handle_endtag(self, tag):
        if tag == "span":
            self._in_span = False

    def handle_data(self, data):
        if self._in_span:
            self.spans[-1] += data


def shape(markup: str) -> Shape:
    parsed = Shape()
    parsed.feed(markup)
    parsed.close()
    return parsed


def test_pieces_show_a_character_split_over_tokens_whole():
    text = "Hi 🎉 東京"
    split = [entry("Hi", 0.9, raw=b"Hi"), entry(" \\xf0\\x9f", 0.5, raw=" 🎉".encode()[:3]),
             entry("\\x8e\\x89", 0.4, raw="🎉".encode()[2:]), entry(" 東京", 1.0, raw=" 東京".encode())]
    shown = pieces(split)
    assert [piece.text for piece in shown] == ["Hi", " ", "🎉", " 東京"]
    assert "".join(piece.text for piece in shown) == text
    assert shown[2].tokens == ["\\x8e\\x89"] and shown[2].probability == pytest.approx(0.4)
    # a character cut between tokens whose bytes are not sent shows as U+FFFD, never as a crash
    assert [p.text for p in pieces([entry("a", 0.5, raw=b"\xe6"), entry("b", 0.5)])] == ["\ufffdb"]
    # entries that are not dicts, or without numbers, are shown without a shade
    odd = pieces(["junk", {"token": "x", "logprob": None}, {"token": "y", "logprob": "high"}])  # type: ignore[list-item]
    assert [(p.text, p.probability) for p in odd] == [("x", None), ("y", None)]


def test_the_view_is_exact():
    view = logprobs_html([entry("Yes", 0.9, (" No", 0.05), ("\n", 0.01)), entry("!", 0.25)])
    assert view == (
        '<div class="llmchat-logprobs" style="margin: 4px 0;"><details open>'
        '<summary class="llmchat-logprobs-summary" style="cursor: pointer; font-size: 12px; '
        'color: var(--jp-ui-font-color2, #616161);">token probability: mean 57.5%, lowest 25.0% · shaded by how '
        "unlikely each token was; hover a token for the alternatives</summary>"
        '<div class="llmchat-tokens" style="white-space: pre-wrap; word-break: break-word; line-height: 1.7; '
        "padding: 4px 0; font-family: var(--jp-code-font-family, monospace); "
        'font-size: var(--jp-code-font-size, 13px);">'
        '<span style="background-color: rgba(255, 127, 14, 0.08)" title="&quot;Yes&quot;  90.0%\nalternatives:\n'
        '&quot; No&quot;  5.0%\n&quot;\\n&quot;  1.0%">Yes</span>'
        '<span style="background-color: rgba(255, 127, 14, 0.64)" title="&quot;!&quot;  25.0%">!</span>'
        "</div></details></div>")
    assert logprobs_html([entry("a", 1.0)], open=False).startswith(
        '<div class="llmchat-logprobs" style="margin: 4px 0;"><details><summary')


def test_statistics_and_percentages():
    logprobs = [entry("a", 0.9), entry("b", 0.5), entry("c", 0.1)]
    assert probability_stats(logprobs) == pytest.approx((0.5, 0.1))
    assert stats_text(logprobs) == "probability: mean 50.0%, lowest 10.0%"
    assert stats_text(None) is None and stats_text([]) is None and probability_stats([{"token": "x"}]) is None
    assert [percent(p) for p in (1.0, 0.12345, 0.001, 0.0004, 0.0)] == ["100.0%", "12.3%", "0.1%", "<0.1%", "<0.1%"]
    assert stats_text([{"token": "x", "logprob": -9999.0}]) == "probability: mean <0.1%, lowest <0.1%"


@pytest.mark.parametrize("payload", PAYLOADS)
def test_every_payload_is_text_as_a_token_and_as_an_alternative(payload):
    markup = logprobs_html(tokens_of(payload))
    assert dangers(markup) == []
    parsed = shape(markup)
    assert {tag for tag, _ in parsed.tags} <= {"div", "details", "summary", "span"}
    assert {attribute for _, attributes in parsed.tags for attribute in attributes} <= {
        "class", "style", "title", "open"}
    assert "".join(parsed.spans) == payload.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "\ufffd")
    quoted = '"' + payload.replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t") + '"'
    assert all(f"alternatives:\n{quoted}  25.0%" in title for title in parsed.titles)


def test_the_bundle_and_the_display_object():
    reply = Reply("Yes!", "m", logprobs=[entry("Yes", 0.9), entry("!", 0.25)])
    bundle = logprobs_bundle(reply.logprobs)
    assert bundle["text/plain"] == "[token probability: mean 57.5%, lowest 25.0%]"
    assert html.unescape(bundle["text/html"]).count("<span") == 2
    import jupyter_llmchat

    assert jupyter_llmchat.LogprobsView is LogprobsView  # the package root offers it (loaded on first use)
    view = LogprobsView(reply)
    assert view._repr_mimebundle_() == bundle
    assert repr(view) == "<LogprobsView of 2 tokens: probability: mean 57.5%, lowest 25.0%>"
    with pytest.raises(ValueError, match="^this answer has no token probabilities: ask with logprobs=True"):
        LogprobsView(Reply("x", "m"))
