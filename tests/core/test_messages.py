"""Messages: API shape with and without images, JSON round trip."""

from __future__ import annotations

import json

from jupyter_llmchat.core.messages import ImageRef, Message
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
