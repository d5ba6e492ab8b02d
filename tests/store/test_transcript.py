"""JSON transcripts: an exact round trip (images, status, usage, system, model, tool calls and
results), version 1 files still read, clear errors."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from jupyter_llmchat.core.chatbot import Chatbot
from jupyter_llmchat.core.messages import ImageRef
from jupyter_llmchat.core.reply import NullSink
from jupyter_llmchat.store.transcript import FORMAT, TranscriptError, dump, load, read, save, to_markdown

PIXEL = ("data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAE"
         "hQGAhKmMIQAAAABJRU5ErkJggg==")
KEY = "sk-transcript-secret-99"


def make_bot(loopback, model: str = "gpt-4o-mini", **kwargs) -> Chatbot:
    return Chatbot(model, base_url=loopback.base_url, api_key=KEY, max_retries=0, **kwargs)


def test_round_trip_restores_everything(loopback, tmp_path: Path) -> None:
    loopback.queue(reply="A red pixel.")
    loopback.queue(reply="Still red.")
    bot = make_bot(loopback, system="Be brief.", temperature=0.2)
    image = ImageRef(PIXEL, detail="low", width=1, height=1, mime="image/png", source="pixel.png")
    bot.ask("What is this?", images=[image], sink=NullSink())
    bot.ask("And now?", sink=NullSink())
    path = save(bot, tmp_path / "sub" / "chat.json")
    text = path.read_text(encoding="utf-8")
    assert KEY not in text
    data = json.loads(text)
    assert (data["format"], data["version"], data["model"], data["system"], data["params"]) == \
        (FORMAT, 2, "gpt-4o-mini", "Be brief.", {"temperature": 0.2})

    other = make_bot(loopback, "gpt-4.1")
    load(path, other)
    assert other.model == "gpt-4o-mini" and other.system == "Be brief." and other.params == {"temperature": 0.2}
    assert list(other.conversation.messages) == list(bot.conversation.messages)
    assert other.conversation.messages[0].images == (image,)
    assert dump(other)["messages"] == data["messages"]
    # the restored conversation goes on: the next request carries the whole history, image included
    loopback.queue(reply="ok")
    other.ask("Continue", sink=NullSink())
    sent = loopback.requests[-1].body["messages"]
    assert [m["role"] for m in sent] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert sent[1]["content"][1] == {"type": "image_url", "image_url": {"url": PIXEL, "detail": "low"}}


def test_markdown_rendering(loopback) -> None:
    loopback.queue(reply="Hi **there**")
    bot = make_bot(loopback, system="Sys")
    bot.ask("Hello", images=[ImageRef(PIXEL, width=1, height=1, source="dot.png")], sink=NullSink())
    assert to_markdown(bot) == ("**model:** `gpt-4o-mini` · **messages:** 2\n\n### system\n\nSys\n\n"
                                "### user\n\nHello\n\n[image: dot.png 1x1]\n\n"
                                "### assistant · gpt-4o-mini\n\nHi **there**\n")
    assert to_markdown(bot, image_html=True).count("<img src=\"data:image/") == 1


def hostile_transcript(path: Path) -> Path:
    """A transcript file anyone could have written: a script URL, a tag in a label, a tag as the model."""
    label = '<img src=x onerror="alert(1)">'
    messages = [
        {"role": "user", "text": "look", "tokens": 5, "created": 0.0,
         "images": [{"url": "javascript:alert(1)", "detail": "auto", "source": label},
                    {"url": "data:text/html;base64,PHNjcmlwdD4=", "detail": "auto"},
                    {"url": PIXEL, "detail": "auto", "source": label, "width": 1, "height": 1}]},
        {"role": "assistant", "text": "ok", "tokens": 1, "created": 0.0, "model": "<b onmouseover=alert(1)>m</b>",
         "status": "<i>x</i>"},
    ]
    path.write_text(json.dumps({"format": FORMAT, "version": 1, "model": "`gpt` <b>", "messages": messages}))
    return path


def test_a_loaded_transcript_shows_only_http_and_data_image_urls_and_its_labels_as_text(loopback,
                                                                                        tmp_path: Path) -> None:
    bot = load(hostile_transcript(tmp_path / "evil.json"), make_bot(loopback))
    shown = to_markdown(bot, image_html=True)
    assert shown.count("<img ") == 1 and '<img src="data:image/png;base64,' in shown  # the one real image
    assert 'alt="&lt;img src=x onerror=&quot;alert(1)&quot;&gt;"' in shown  # its label: an attribute value
    assert "javascript:alert&#40;1&#41;" not in shown  # the label names the script URL's image, as text:
    assert "&#91;image: &#60;img src&#61;x onerror&#61;&#34;alert&#40;1&#41;&#34;&#62;&#93;" in shown
    assert "&#91;image: data URL&#93;" in shown
    first, rest = shown.split("\n", 1)
    assert first == "**model:** `` `gpt` <b> `` · **messages:** 2"  # a code span: literal inside
    assert re.findall(r"(?<!\\)<", rest) == ["<"]  # every other "<" backslash-escaped: the <img> alone is a tag
    assert "### assistant · \\<b onmouseover=alert(1)\\>m\\</b\\> · \\<i\\>x\\</i\\>\n" in shown
    plain = to_markdown(bot)
    assert "[image: \\<img src=x onerror=\"alert(1)\"\\> 1x1]" in plain and "[image: data URL]" in plain


@pytest.mark.parametrize("content, message", [
    ("{broken", "'{path}' is not a transcript: invalid JSON at line 1 (Expecting property name enclosed in "
                "double quotes)"),
    ('{"a": 1}', "'{path}' is not a jupyter_llmchat transcript (no \"format\": \"jupyter_llmchat.transcript\")"),
    (json.dumps({"format": FORMAT, "version": 9, "model": "m", "messages": []}),
     "'{path}' is transcript version 9; this jupyter_llmchat reads versions 1 and 2: upgrade the package"),
    (json.dumps({"format": FORMAT, "version": 1, "model": "m"}),
     "'{path}' is damaged: it needs a \"model\" string and a \"messages\" list"),
    (json.dumps({"format": FORMAT, "version": 1, "model": "m", "messages": [{"role": "user"}]}),
     "'{path}': message 1 is damaged (Message.__init__() missing 2 required positional arguments: 'text' "
     "and 'tokens')"),
])
def test_bad_files_leave_the_conversation_untouched(loopback, tmp_path: Path, content: str, message: str) -> None:
    loopback.queue(reply="kept")
    bot = make_bot(loopback, system="Keep me")
    bot.ask("q", sink=NullSink())
    before = list(bot.conversation.messages)
    path = tmp_path / "bad.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(TranscriptError) as caught:
        load(path, bot)
    assert str(caught.value) == message.format(path=path)
    assert list(bot.conversation.messages) == before and bot.system == "Keep me"


def test_missing_file_and_directory_target(loopback, tmp_path: Path) -> None:
    with pytest.raises(TranscriptError, match="^no transcript at '.*nope.json': check the path"):
        read(tmp_path / "nope.json")
    with pytest.raises(TranscriptError, match="it is a directory; give a file name such as chat.json$"):
        save(make_bot(loopback), tmp_path)


# -- tool calls (version 2) -------------------------------------------------------------------------
def add(a: int, b: int) -> int:
    """Add two whole numbers."""
    return a + b


def test_tool_calls_and_results_round_trip_and_the_loaded_history_is_one_the_server_takes(loopback,
                                                                                         tmp_path: Path) -> None:
    loopback.queue(tool_calls=[{"name": "add", "arguments": {"a": 2, "b": 3}}])
    loopback.queue(reply="It is 5.")
    bot = make_bot(loopback, tools=[add])
    bot.ask("2+3?", sink=NullSink())
    path = save(bot, tmp_path / "tools.json")
    data = json.loads(path.read_text(encoding="utf-8"))
    call_id = bot.history[1].tool_calls[0].id
    assert [(m["role"], m["tool_calls"], m["tool_call_id"]) for m in data["messages"]] == [
        ("user", [], None), ("assistant", [{"id": call_id, "name": "add", "arguments": '{"a": 2, "b": 3}'}], None),
        ("tool", [], call_id), ("assistant", [], None)]
    other = load(path, make_bot(loopback))
    assert list(other.conversation.messages) == list(bot.conversation.messages)
    loopback.queue(reply="ok")
    assert other.ask("And 3+4?", sink=NullSink()).text == "ok"  # the server validated the restored tool turn
    assert [m["role"] for m in loopback.requests[-1].body["messages"]] == ["user", "assistant", "tool", "assistant",
                                                                           "user"]


def test_a_version_1_transcript_still_loads(loopback, tmp_path: Path) -> None:
    path = tmp_path / "v1.json"
    path.write_text(json.dumps({"format": FORMAT, "version": 1, "model": "gpt-4o-mini", "system": None, "params": {},
                                "messages": [{"role": "user", "text": "hi", "tokens": 8, "images": [], "name": None,
                                              "status": "complete", "model": None, "usage": None, "created": 1.0},
                                             {"role": "assistant", "text": "hello", "tokens": 9, "images": [],
                                              "name": None, "status": "complete", "model": "gpt-4o-mini",
                                              "usage": None, "created": 2.0}]}))
    bot = load(path, make_bot(loopback))
    assert [(m.role, m.text, m.tool_calls, m.tool_call_id) for m in bot.history] == [
        ("user", "hi", (), None), ("assistant", "hello", (), None)]


def test_markdown_shows_calls_as_code_and_results_as_literal_text(loopback) -> None:
    def fetch(url: str) -> str:
        """Fetch a page."""
        return "<script>alert(1)</script> ``` **not bold**"

    loopback.queue(tool_calls=[{"name": "fetch", "arguments": {"url": "http://x"}}])
    loopback.queue(reply="Fetched.")
    bot = make_bot(loopback, tools=[fetch])
    bot.ask("Get it", sink=NullSink())
    assert to_markdown(bot).split("\n\n### ", 2)[2] == (
        'assistant · gpt-4o-mini\n\n**tool call:** `fetch({"url": "http://x"})`\n\n'
        "### tool\n\n````text\n<script>alert(1)</script> ``` **not bold**\n````\n\n"
        "### assistant · gpt-4o-mini\n\nFetched.\n")
