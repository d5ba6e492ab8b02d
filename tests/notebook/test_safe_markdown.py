"""safe_markdown: every Markdown output we publish is display-safe, and money and math render right.

The payload corpus (tests/support/xss_corpus.py) goes through every output path (the answer, the
live tail at every split point, ``-f code``/``--json``, ``%chat`` tables, ``%chat history``, the
footer), and each result is rendered the way a trusted Markdown output is (JupyterLab's math step,
then CommonMark + GFM tables with raw HTML on; and CommonMark alone): no ``on*`` attribute, no
script/iframe/object/embed/style element, no href/src outside http(s), mailto and data:image.
"""

from __future__ import annotations

from typing import Any

import pytest
from support.xss_corpus import PAYLOADS, dangers, render_commonmark, render_like_jupyterlab

from jupyter_llmchat.core.messages import ImageRef, Message
from jupyter_llmchat.core.reply import Reply, Usage
from jupyter_llmchat.notebook.display import MarkdownDisplaySink
from jupyter_llmchat.notebook.footer import escape_markdown, footer_markdown
from jupyter_llmchat.notebook.formatted import FormattedSink, format_answer
from jupyter_llmchat.notebook.markdown_partial import close_open
from jupyter_llmchat.notebook.safe_markdown import allowed_destination, safe_bundle, safe_markdown
from jupyter_llmchat.notebook.tables import table_bundle
from jupyter_llmchat.store.transcript import to_markdown


def assert_safe(markdown: str, where: str) -> None:
    for render in (render_like_jupyterlab, render_commonmark):
        found = dangers(render(markdown))
        assert not found, f"{where}: {found} in {markdown!r}"


def test_the_corpus_is_large_and_hostile() -> None:
    assert len(PAYLOADS) >= 80
    raw_dangers = sum(bool(dangers(render_commonmark(p)) or dangers(render_like_jupyterlab(p))) for p in PAYLOADS)
    assert raw_dangers >= 70  # without the function most payloads are live (the rest target marked or MathJax)


@pytest.mark.parametrize("payload", PAYLOADS)
def test_an_answer_is_display_safe(payload: str) -> None:
    assert_safe(safe_markdown(payload), "answer")
    assert_safe(safe_markdown("Intro text.\n\n" + payload + "\n\nOutro $5 and $6."), "answer in context")


@pytest.mark.parametrize("payload", PAYLOADS)
def test_the_live_tail_is_display_safe_at_every_split_point(payload: str) -> None:
    text = "Here:\n\n" + payload
    for cut in range(1, len(text) + 1):
        assert_safe(safe_markdown(close_open(text[:cut])), f"live tail at {cut}")


@pytest.mark.parametrize("payload", PAYLOADS)
def test_formatted_answers_and_tables_and_footers_are_display_safe(payload: str) -> None:
    for kind in ("code", "json"):
        bundle, _ = format_answer(payload, kind)
        assert_safe(safe_bundle(bundle)["text/markdown"], f"-f {kind}")
    fenced, _ = format_answer(f"```{payload[:20].split()[0] if payload.split() else 'x'}\n{payload}\n```", "code")
    assert_safe(safe_bundle(fenced)["text/markdown"], "-f code block")
    assert_safe(table_bundle([("model", "cost"), (payload, "$1.00")], note=payload)["text/markdown"], "table")
    footer = footer_markdown(Reply(text="x", model=payload, usage=Usage(1, 2), cost=0.5, status="interrupted"))
    assert footer is not None
    assert_safe(safe_markdown(footer[0]), "footer")
    assert_safe(f"*{escape_markdown(payload)} · answering…*", "placeholder")


class _Bot:
    """What to_markdown reads of a Chatbot."""

    def __init__(self, messages: list[Message]) -> None:
        self.model = "gpt-4o-mini"
        self.system = "Be <b>safe</b> $1 $2"

        class _Conversation:
            pass

        self.conversation: Any = _Conversation()
        self.conversation.messages = messages


@pytest.mark.parametrize("payload", PAYLOADS)
def test_history_is_display_safe(payload: str) -> None:
    hostile = ImageRef(url="javascript:window.__pwned=1", source=payload, width=1, height=1)
    shown_url = ImageRef(url="https://img.example/a.png", source=payload)
    messages = [Message(role="user", text=payload, tokens=1, images=[hostile, shown_url]),
                Message(role="assistant", text=payload, tokens=1, model=payload, status="interrupted"),
                Message(role="assistant", text="end $1 and $2", tokens=1)]
    shown = to_markdown(_Bot(messages), image_html=True, render=safe_markdown)  # type: ignore[arg-type]
    assert_safe(shown, "history")


def test_rules_exactly() -> None:
    cases = {
        # raw HTML is text; code keeps it exactly
        "a <b>x</b> `<div>` and <https://ok.example/a>": "a &lt;b>x&lt;/b> `<div>` and <https://ok.example/a>",
        "```html\n<div onclick=\"x\">\n```": "```html\n<div onclick=\"x\">\n```",
        "```js\"><img src=x onerror=y>\nalert(1)\n```": "```js\nalert(1)\n```",
        # links: only http(s)/mailto, written plainly; the rest shows as text
        "[a](https://ok.example) [b](javascript:x) [c](jav&#x61;script:x) [d](mailto:me@x.org)":
            "[a](https://ok.example) [b]\\(javascript:x) [c]\\(jav&#x61;script:x) [d](mailto:me@x.org)",
        "![i](data:image/png;base64,AAAA) [l](data:image/png;base64,AAAA)":
            "![i](data:image/png;base64,AAAA) [l]\\(data:image/png;base64,AAAA)",
        "[x]: javascript:alert(1)\n\n[x]": "[x]\\: javascript:alert(1)\n\n[x]",
        "[x]: https://ok.example\n\n[x]": "[x]: https://ok.example\n\n[x]",
        "see ftp://old.example": "see ftp\\://old.example",
        # backticks: an unclosed run is literal text, a run that closes stays code
        "Use ``<img src=x>`": "Use \\`\\`&lt;img src=x>\\`",
        "| `a | <img> | b` |": "| \\`a | &lt;img> | b\\` |",
        # the plain tags models use in tables stay, where they cannot start an HTML block
        "| a<br>b | x<sub>2</sub> |": "| a<br>b | x<sub>2</sub> |",
        "<br>": "&lt;br>",
    }
    for raw, shown in cases.items():
        assert safe_markdown(raw) == shown, raw


def test_money_and_math_exactly() -> None:
    cases = {
        "costs $5 per month, the pro plan $20": "costs \\\\$5 per month, the pro plan \\\\$20",
        "It costs $5.": "It costs $5.",  # a lone dollar cannot pair: left as written
        "$5-$10 or US$5 and US$10": "\\\\$5-\\\\$10 or US\\\\$5 and US\\\\$10",
        "a model's \\$5 and \\$6": "a model's \\\\$5 and \\\\$6",
        "$x^2$ and $$\\int_0^1 x\\,dx$$ costs $3": "$x^2$ and $$\\int_0^1 x\\,dx$$ costs \\\\$3",
        "$x^2$ costs $3 and $4": "$x^2$ costs \\\\$3 and \\\\$4",
        "inline \\(a+b\\) and display \\[x^2\\]": "inline \\\\(a+b\\\\) and display \\\\[x^2\\\\]",
        "already \\\\(a\\\\) for JupyterLab": "already \\\\(a\\\\) for JupyterLab",
        "\\begin{align}a &< b\\end{align}": "\\begin{align}a &\\lt  b\\end{align}",
        "$a<b$ but a<b": "$a\\lt b$ but a&lt;b",
        "`$5` and `$6` in code, $7 and $8 not": "`$5` and `$6` in code, \\\\$7 and \\\\$8 not",
        "$\\href{javascript:x}{y}$": "$\\\\href{javascript:x}{y}$",
        "[pay](https://shop.example/$5) $6 $7": "[pay](https://shop.example/%245) \\\\$6 \\\\$7",
        "escaped brackets \\[1\\] stay": "escaped brackets \\[1\\] stay",
    }
    for raw, shown in cases.items():
        assert safe_markdown(raw) == shown, raw
    for raw in cases:
        assert safe_markdown(safe_markdown(raw)) == safe_markdown(raw), raw  # idempotent


def test_ordinary_answers_are_unchanged() -> None:
    answers = [
        "Here is a comparison:\n\n| Language | Typing |\n|---|---|\n| Python | dynamic |\n\nAnd the code:\n\n"
        "```python\ndef greet(name):\n    return f\"hello {name}\"\n```\n\nThat is all.",
        "1. Install it:\n\n   ```bash\n   pip install x > log.txt 2>&1\n   ```\n2. Use `List<String>` and `a[i](x)`.",
        "> **Note** see [the docs](https://docs.example/a_(b)) and www.example.com.\n\n- [ ] task\n- [x] done",
        "Euler: $e^{i\\pi} + 1 = 0$, and\n\n$$\n\\sum_{n=1}^\\infty \\frac{1}{n^2} = \\frac{\\pi^2}{6}\n$$",
    ]
    for answer in answers:
        assert safe_markdown(answer) == answer


def test_allowed_destination() -> None:
    assert allowed_destination("https://x") and allowed_destination(" \n mailto:a@b") and allowed_destination("HTTP://x")
    assert allowed_destination("data:image/png;base64,AA", image=True)
    assert not allowed_destination("data:image/png;base64,AA")
    assert not allowed_destination("data:image/svg+xml;base64,AA", image=True)
    for bad in ("javascript:x", "jav&#x61;script:x", "javascript&colon;x", "java\tscript:x", "\\javascript:x",
                "\u00a0https://x", "//evil.example", "/api/kernels", "#top", "", "<javascript:x>", "<https://a b>"):
        assert not allowed_destination(bad), bad
    assert allowed_destination("<https://ok.example>")


def test_close_open_never_lengthens_the_backtick_run_it_closes() -> None:
    assert close_open("Use ``<img src=x onerror=alert(1)>`") == "Use ``<img src=x onerror=alert(1)>` ``"
    assert close_open("`a") == "`a`"


class _Area:
    def __init__(self) -> None:
        self.sent: list[dict[str, str]] = []

    def show(self, display_id: str, data: dict[str, str], *, update: bool) -> None:
        self.sent.append(dict(data))

    def clear(self, *, wait: bool) -> None:
        pass


def test_the_cell_sink_publishes_only_display_safe_markdown() -> None:
    """Every message the live cell view sends (placeholder, live tail, frozen pieces, the final
    answer, the footer) is display-safe; a text/plain copy is the exact answer."""
    answer = ("Costs $5 per month, the pro plan $20.\n\n" + "\n\n".join(PAYLOADS[:40]) + "\n\nBye `<b>`.")
    clock = [1000.0]
    area = _Area()
    sink = MarkdownDisplaySink(publisher=area, clock=lambda: clock[0], trailing=False)
    sink.start("model<img src=x onerror=y>")
    for i in range(0, len(answer), 7):
        sink.write(answer[i:i + 7])
        clock[0] += 0.05
    sink.finish(Reply(text=answer, model="m$1 $2", usage=Usage(1, 2), cost=0.5, total_time=1.0))
    assert len(area.sent) > 10
    for data in area.sent:
        assert_safe(data.get("text/markdown", ""), "cell sink")
    plain = [d["text/plain"] for d in area.sent if "text/plain" in d][:-1]  # the footer's is last
    assert all(text == answer for text in plain)  # the text/plain copy is the exact answer
    assert area.sent[-1]["text/markdown"].startswith("<sub>m\\\\$1 \\\\$2 · ")


def test_the_formatted_sink_publishes_display_safe_markdown() -> None:
    area = _Area()
    sink = FormattedSink("code", publisher=area, trailing=False)
    sink.start("m")
    text = "No code here: <img src=x onerror=y> [a](javascript:b)"
    sink.write(text)
    sink.finish(Reply(text=text, model="m"))
    shown = [d["text/markdown"] for d in area.sent if "text/markdown" in d]
    assert shown[0] == "No code here: &lt;img src=x onerror=y> [a]\\(javascript:b)"
    assert area.sent[0]["text/plain"] == "…" and any(d.get("text/plain") == text for d in area.sent)
