"""Messages: API shape with and without images, JSON round trip, and text with surrogates made
encodable (pairs joined, even across stream deltas; lone halves as U+FFFD)."""

from __future__ import annotations

import json

from jupyter_llmchat.core.messages import ImageRef, Message, SurrogateJoiner, ToolRequest, clean_text
from jupyter_llmchat.core.reply import Usage


def test_text_message_to_api():
    assert Message("user", "hi", 5).to_api() == {"role": "user", "content": "hi"}
    assert Message("user", "hi", 7, name="ada").to_api() == {"role": "user", "content": "hi", "name": "ada"}


def test_image_message_to_api_parts():
    image = ImageRef("https://example.org/cat.png", detail="low")
    assert Message("user", "what is it?", 90, images=(image,)).to_api() == {"role": "user", "content": [
        {"type": "text", "text": "what is it?"},
        {"type": "image_url", "image_url": {"url": "https://example.org/cat.png", "detail": "low"}}]}


def test_round_trip_through_json_keeps_everything():
    message = Message("assistant", "partial", 12, status="interrupted", model="gpt-4o",
                      usage=Usage(10, 2, 0), images=(ImageRef("data:image/png;base64,AAAA", width=1, height=1),))
    restored = Message.from_dict(json.loads(json.dumps(message.to_dict())))
    assert restored == message
    assert restored.partial


def test_tool_calls_and_results_in_the_apis_shape_and_through_json():
    calls = (ToolRequest("call_1", "get_weather", '{"city": "Paris"}'), ToolRequest("call_2", "add", "{bad"))
    asking = Message("assistant", "", 40, tool_calls=calls, model="gpt-4o")
    result = Message("tool", "sunny", 9, tool_call_id="call_1")
    assert asking.to_api() == {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}},
        {"id": "call_2", "type": "function", "function": {"name": "add", "arguments": "{bad"}}]}
    assert Message("assistant", "Checking.", 45, tool_calls=calls[:1]).to_api()["content"] == "Checking."
    assert result.to_api() == {"role": "tool", "content": "sunny", "tool_call_id": "call_1"}
    for message in (asking, result):
        data = json.loads(json.dumps(message.to_dict()))
        assert Message.from_dict(data) == message
    assert asking.to_dict()["tool_calls"][1] == {"id": "call_2", "name": "add", "arguments": "{bad"}
    old = Message("user", "hi", 5).to_dict()
    del old["tool_calls"], old["tool_call_id"]  # a message saved before tools
    assert Message.from_dict(old) == Message("user", "hi", 5, created=old["created"])


# -- text that cannot be encoded -------------------------------------------------------------

def test_clean_text_joins_pairs_and_replaces_lone_surrogates():
    text = "plain 😀 text"
    assert clean_text(text) is text  # nothing to do: the same object back
    assert clean_text("a\ud83d\ude00b") == "a😀b"  # a pair written as two halves: one character
    assert clean_text("lone \ud83d high, lone \ude00 low, end \ud83d") == "lone \ufffd high, lone \ufffd low, end \ufffd"
    assert clean_text("\ud83d\ude00\ud83d").encode("utf-8") == "😀\ufffd".encode()


def test_a_pair_split_across_deltas_is_joined():
    joiner = SurrogateJoiner()
    assert [joiner.feed(delta) for delta in ["smile \ud83d", "\ude00 and", " \ud83c", "\udf89", "!"]] == [
        "smile ", "😀 and", " ", "🎉", "!"]
    assert joiner.flush() == ""


def test_a_half_that_stays_alone_becomes_a_replacement_character():
    joiner = SurrogateJoiner()
    assert [joiner.feed(delta) for delta in ["a\ud83d", " b", "\ude00c", "end\ud83d"]] == [
        "a", "\ufffd b", "\ufffdc", "end"]
    assert joiner.flush() == "\ufffd" and joiner.flush() == ""
