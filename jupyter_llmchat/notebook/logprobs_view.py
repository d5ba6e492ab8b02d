"""An answer's tokens shaded by how likely the model found each one, its top alternatives on hover
(``%%chat --logprobs``, ``bot.ask(..., logprobs=True, top_logprobs=5)`` then ``LogprobsView(reply)``,
and the chat panel's "token probabilities" box).

Tokens are model output: untrusted text. The view is our own HTML in which every token and every
alternative is escaped (``html.escape``), so nothing a model writes becomes markup: a token
``<img src=x onerror=...>`` shows as those characters. The panel passes the same HTML through its
own allow-list as well (``html.sanitize_token_view``). A character split over several tokens (an
emoji, CJK) is shown whole, as one piece, from the tokens' UTF-8 bytes.
"""

from __future__ import annotations

import codecs
import html
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["LogprobsView", "Piece", "logprobs_bundle", "logprobs_html", "pieces", "probability_stats",
           "stats_text"]

SHADE = (255, 127, 14)  # the shade of an unlikely token (orange); a certain one has none
MAX_SHADE = 0.85  # the opacity of a token of probability 0
ALTERNATIVES_SHOWN = 5
CONTAINER_STYLE = "margin: 4px 0;"
SUMMARY_STYLE = "cursor: pointer; font-size: 12px; color: var(--jp-ui-font-color2, #616161);"
TOKENS_STYLE = ("white-space: pre-wrap; word-break: break-word; line-height: 1.7; padding: 4px 0; "
                "font-family: var(--jp-code-font-family, monospace); font-size: var(--jp-code-font-size, 13px);")


@dataclass
class Piece:
    """Text shown as one span: one token, or the tokens of one character split over several.
    ``probability`` is theirs together (None when the endpoint sent no number)."""

    text: str
    probability: float | None
    tokens: list[str] = field(default_factory=list)
    alternatives: list[tuple[str, float | None]] = field(default_factory=list)  # of the first token


def probability_stats(logprobs: Sequence[dict[str, Any]] | None) -> tuple[float, float] | None:
    """The mean and the lowest probability of an answer's tokens; None without numbers."""
    values = [p for p in (_probability(entry.get("logprob")) for entry in logprobs or () if isinstance(entry, dict))
              if p is not None]
    if not values:
        return None
    return sum(values) / len(values), min(values)


def stats_text(logprobs: Sequence[dict[str, Any]] | None) -> str | None:
    """"probability: mean 87.1%, lowest 12.0%" (the footer's fact and the view's summary)."""
    stats = probability_stats(logprobs)
    if stats is None:
        return None
    return f"probability: mean {percent(stats[0])}, lowest {percent(stats[1])}"


def percent(p: float) -> str:
    """A probability as the views show it: one decimal, "<0.1%" below that."""
    return f"{p * 100:.1f}%" if p >= 0.0005 else "<0.1%"


def pieces(logprobs: Iterable[dict[str, Any]]) -> list[Piece]:
    """The spans of the view: each token, tokens that end inside a character joined to the next."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    shown: list[Piece] = []
    pending: list[dict[str, Any]] = []
    for entry in logprobs:
        if not isinstance(entry, dict):
            continue
        raw = _bytes(entry.get("bytes"))
        if raw is not None:
            text = decoder.decode(raw)
        else:  # no bytes: the token's text as sent (a split character left before it shows as U+FFFD)
            text = decoder.decode(b"", final=True) + _text(entry.get("token"))
        pending.append(entry)
        if text:
            shown.append(_piece(text, pending))
            pending = []
    if pending:
        shown.append(_piece(decoder.decode(b"", final=True), pending))
    return shown


def logprobs_html(logprobs: Sequence[dict[str, Any]], *, open: bool = True) -> str:
    """The view as HTML: a summary line, then every token shaded by how unlikely it was, with its
    probability and top alternatives in its tooltip. Every token is escaped."""
    spans = "".join(_span(piece) for piece in pieces(logprobs))
    summary = stats_text(logprobs) or "probability: not sent"
    summary = f"token {summary} · shaded by how unlikely each token was; hover a token for the alternatives"
    return (f'<div class="llmchat-logprobs" style="{CONTAINER_STYLE}"><details{" open" if open else ""}>'
            f'<summary class="llmchat-logprobs-summary" style="{SUMMARY_STYLE}">{html.escape(summary)}</summary>'
            f'<div class="llmchat-tokens" style="{TOKENS_STYLE}">{spans}</div></details></div>')


def logprobs_bundle(logprobs: Sequence[dict[str, Any]]) -> dict[str, str]:
    """The cell output of the view: our HTML, and a plain-text line for front ends without HTML."""
    stats = stats_text(logprobs) or "probability: not sent"
    return {"text/html": logprobs_html(logprobs), "text/plain": f"[token {stats}]"}


class LogprobsView:
    """Shows the tokens of ``reply`` (a Reply asked with ``logprobs=True``) or of a logprobs list:
    make it a cell's last expression, or ``display()`` it."""

    def __init__(self, reply_or_logprobs: Any) -> None:
        logprobs = getattr(reply_or_logprobs, "logprobs", reply_or_logprobs)
        if logprobs is None:
            raise ValueError("this answer has no token probabilities: ask with logprobs=True "
                             "(and top_logprobs=5 for the alternatives)")
        self.logprobs: list[dict[str, Any]] = list(logprobs)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        return logprobs_bundle(self.logprobs)

    def __repr__(self) -> str:
        return f"<LogprobsView of {len(self.logprobs)} tokens: {stats_text(self.logprobs) or 'no probabilities'}>"


# -- pieces ----------------------------------------------------------------------------------------
def _piece(text: str, entries: list[dict[str, Any]]) -> Piece:
    numbers = [float(entry["logprob"]) for entry in entries if _number(entry.get("logprob"))]
    total = sum(numbers) if len(numbers) == len(entries) else None  # the piece's: its tokens' together
    first = entries[0]
    chosen = _text(first.get("token"))
    alternatives = [(_text(top.get("token")), _probability(top.get("logprob")))
                    for top in first.get("top_logprobs") or () if isinstance(top, dict)]
    alternatives = [(token, p) for token, p in alternatives if token != chosen][:ALTERNATIVES_SHOWN]
    return Piece(text.replace("\x00", "\ufffd"), _probability(total), [_text(entry.get("token")) for entry in entries],
                 alternatives)


def _span(piece: Piece) -> str:
    p = piece.probability
    red, green, blue = SHADE
    style = "" if p is None else f' style="background-color: rgba({red}, {green}, {blue}, {_opacity(p)})"'
    return f'<span{style} title="{html.escape(_tooltip(piece), quote=True)}">{html.escape(piece.text)}</span>'


def _opacity(p: float) -> float:
    return round(MAX_SHADE * (1 - min(max(p, 0.0), 1.0)), 2)


def _tooltip(piece: Piece) -> str:
    chosen = " + ".join(_quoted(token) for token in piece.tokens)
    said = percent(piece.probability) if piece.probability is not None else "probability not sent"
    lines = [f"{chosen}  {said}"]
    if piece.alternatives:
        lines.append("alternatives:")
        lines.extend(f"{_quoted(token)}  {percent(p) if p is not None else '?'}" for token, p in piece.alternatives)
    return "\n".join(lines)


def _quoted(token: str) -> str:
    """A token in quotes, so a leading space shows; line breaks and tabs written as escapes."""
    return '"' + token.replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t") + '"'


def _probability(logprob: Any) -> float | None:
    return math.exp(min(float(logprob), 0.0)) if _number(logprob) else None


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _bytes(value: Any) -> bytes | None:
    if isinstance(value, list) and all(isinstance(b, int) and not isinstance(b, bool) and 0 <= b < 256 for b in value):
        return bytes(value)
    return None
