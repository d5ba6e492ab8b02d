"""What the loopback server rejects, as OpenAI does (server/validation.py): bad images, malformed
requests, parameters out of range, too-long prompts, unknown models, status faults in OpenAI's and
other servers' wording, and a request's own "loopback" script."""

from __future__ import annotations

import base64
import http.client
import json

import openai
import pytest
from support.loopback_client import (
    KEY,
    QUESTION,
    chat_logs,
    cookbook_prompt_tokens,
    raw_chat,
    sdk,
    stream,
    streamed_text,
)

from jupyter_llmchat.server import DISCLOSURE

# 1x1 transparent PNG
PNG = base64.b64encode(bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000001e221bc330000000049454e44ae426082")).decode()


def test_reasoning_models_reject_max_tokens_like_openai(loopback):
    with pytest.raises(openai.BadRequestError) as caught:
        sdk(loopback).chat.completions.create(model="o3-mini", messages=QUESTION, max_tokens=5)
    assert caught.value.code == "unsupported_parameter"
    assert "max_completion_tokens" in caught.value.message


def test_image_parts_are_accepted_and_logged_verbatim(loopback):
    content = [{"type": "text", "text": "What is in this image?"},
               {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}", "detail": "low"}},
               {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]
    messages = [{"role": "user", "content": content}]
    response = sdk(loopback).chat.completions.create(model="gpt-4o", messages=messages)
    assert response.choices[0].message.content.startswith(DISCLOSURE)
    assert chat_logs(loopback)[-1].body["messages"] == messages
    # low detail costs gpt-4o's base 85 tokens; the URL image is budgeted at its upper bound
    assert response.usage.prompt_tokens > 85 + cookbook_prompt_tokens(
        [{"role": "user", "content": "What is in this image?"}], "gpt-4o")


@pytest.mark.parametrize("url, words", [
    ("data:image/png;base64,@@not-base64@@", "Invalid image data URL"),
    ("data:image/png,rawbytes", "Invalid image data URL"),
    ("file:///etc/passwd", "Invalid image URL"),
])
def test_broken_images_are_a_clear_400(loopback, url, words):
    messages = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]}]
    with pytest.raises(openai.BadRequestError) as caught:
        sdk(loopback).chat.completions.create(model="gpt-4o", messages=messages)
    assert words in caught.value.message and "\n" not in caught.value.message
    assert caught.value.body["param"] == "messages[0].content[0].image_url.url"


def test_images_to_a_model_without_vision_are_rejected_like_openai(loopback):
    messages = [{"role": "user", "content": "before"},
                {"role": "user", "content": [{"type": "text", "text": "What is this?"},
                                             {"type": "image_url", "image_url": {"url": "https://e.x/a.png"}}]}]
    client = sdk(loopback)
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="gpt-3.5-turbo", messages=messages)
    assert caught.value.body == {"message": "Invalid content type. image_url is only supported by certain "
                                 "models.", "type": "invalid_request_error",
                                 "param": "messages.[1].content.[1].type", "code": None}
    # a model outside the table takes them, unless the fault says otherwise
    assert client.chat.completions.create(model="loopback-demo", messages=messages).choices[0]
    loopback.queue(fault="images_unsupported")
    with pytest.raises(openai.BadRequestError) as again:
        client.chat.completions.create(model="loopback-demo", messages=messages)
    assert again.value.body == caught.value.body


def test_malformed_requests_are_rejected_with_openai_wording(loopback):
    client = sdk(loopback)
    with pytest.raises(openai.BadRequestError, match="Missing required parameter: 'messages'"):
        client.chat.completions.create(model="gpt-4o", messages=[])
    with pytest.raises(openai.BadRequestError, match="messages\\[0\\].role"):
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "wizard", "content": "x"}])
    conn = http.client.HTTPConnection("127.0.0.1", loopback.port, timeout=10)
    conn.request("POST", "/v1/chat/completions", b"{not json", {"Content-Type": "application/json"})
    response = conn.getresponse()
    assert response.status == 400 and "could not parse the JSON body" in json.loads(response.read())[
        "error"]["message"]
    conn.close()


@pytest.mark.parametrize("params, words", [
    ({"temperature": 3}, "Invalid 'temperature': decimal above maximum value. Expected a value <= 2, "
                         "but got 3"),
    ({"top_p": -0.5}, "Invalid 'top_p': decimal below minimum value. Expected a value >= 0, but got -0.5"),
    ({"max_tokens": 0}, "Invalid 'max_tokens': integer below minimum value. Expected a value >= 1, "
                        "but got 0"),
    ({"top_logprobs": 2}, "'logprobs' must be set to true when 'top_logprobs' is used"),
    ({"n": 2}, "answers one choice per request: send n=1"),
    ({"response_format": {"type": "yaml"}}, "Invalid value for 'response_format.type'"),
])
def test_out_of_range_parameters_are_400_like_openai(loopback, params, words):
    with pytest.raises(openai.BadRequestError) as caught:
        sdk(loopback).chat.completions.create(model="gpt-4o-mini", messages=QUESTION, **params)
    assert words in caught.value.body["message"]
    assert caught.value.body["param"].startswith(next(iter(params)))
    assert chat_logs(loopback)[-1].status == 400


def test_prompt_beyond_the_context_window_is_400_with_the_count(loopback):
    messages = [{"role": "user", "content": " hello" * 9000}]
    with pytest.raises(openai.BadRequestError) as caught:
        sdk(loopback).chat.completions.create(model="gpt-4", messages=messages)
    assert caught.value.code == "context_length_exceeded"
    assert (f"maximum context length is 8192 tokens. However, your messages resulted in "
            f"{cookbook_prompt_tokens(messages, 'gpt-4')} tokens") in caught.value.message


def test_unknown_model_is_404_model_not_found(loopback):
    with pytest.raises(openai.NotFoundError) as caught:
        sdk(loopback).chat.completions.create(model="gpt-7-ultra", messages=QUESTION)
    assert caught.value.code == "model_not_found" and "`gpt-7-ultra`" in caught.value.message


def test_rate_limit_fault_has_retry_after_headers(loopback):
    loopback.queue(fault="rate_limit", retry_after=1.5)
    with pytest.raises(openai.RateLimitError) as caught:
        stream(sdk(loopback))
    error = caught.value
    assert (error.status_code, error.code) == (429, "rate_limit_exceeded")
    assert error.response.headers["retry-after"] == "2"
    assert error.response.headers["retry-after-ms"] == "1500"
    assert "Please try again in 1.5s" in error.message


def test_sdk_retries_honour_retry_after_then_succeed(loopback):
    loopback.queue(fault="rate_limit", retry_after=0.01, times=2)
    loopback.queue(reply="third time lucky")
    assert loopback.pending == 3
    text = streamed_text(stream(sdk(loopback, max_retries=2)))
    assert text == "third time lucky"
    logs = chat_logs(loopback)
    assert [r.status for r in logs] == [429, 429, 200]
    assert [r.headers["x-stainless-retry-count"] for r in logs] == ["0", "1", "2"]
    assert loopback.pending == 0


@pytest.mark.parametrize("fault, error_type, status, code", [
    ("server_error", openai.InternalServerError, 500, None),
    ("unauthorized", openai.AuthenticationError, 401, "invalid_api_key"),
    ("context_length", openai.BadRequestError, 400, "context_length_exceeded"),
    ("model_not_found", openai.NotFoundError, 404, "model_not_found"),
])
def test_status_faults(loopback, fault, error_type, status, code):
    loopback.queue(fault=fault)
    with pytest.raises(error_type) as caught:
        stream(sdk(loopback))
    assert (caught.value.status_code, caught.value.code) == (status, code)
    assert KEY not in caught.value.message and "\n" not in caught.value.message
    assert chat_logs(loopback)[-1].outcome == f"fault:{fault}"
    if fault == "context_length":
        assert caught.value.body["message"].startswith(
            "This model's maximum context length is 128000 tokens.")


@pytest.mark.parametrize("fault, status, body", [
    ("context_length_litellm", 400, {"error": {
        "message": "litellm.ContextWindowExceededError: litellm.BadRequestError: ContextWindowExceededError: "
                   "OpenAIException - This model's maximum context length is 128000 tokens. However, your "
                   "messages resulted in 128001 tokens. Please reduce the length of the messages.",
        "type": None, "param": None, "code": "400"}}),
    ("context_length_llamacpp", 400, {"error": {
        "message": "the request exceeds the available context size, try increasing it",
        "type": "exceed_context_size_error", "param": None, "code": 400, "n_prompt_tokens": 128001,
        "n_ctx": 128000}}),
    ("context_length_vllm", 400, {
        "message": "This model's maximum context length is 128000 tokens. However, you requested 128001 tokens "
                   "(128001 in the messages, 0 in the completion). Please reduce the length of the messages or "
                   "completion.", "type": "BadRequestError", "param": None, "code": 400, "object": "error"}),
    ("model_not_found_ollama", 404, {"error": {
        "message": 'model "gpt-4o-mini" not found, try pulling it first', "type": "api_error", "param": None,
        "code": None}}),
])
def test_other_servers_error_bodies_are_imitated_word_for_word(loopback, fault, status, body):
    loopback.queue(fault=fault)
    response = raw_chat(loopback, stream=True)
    assert (response.status, json.loads(response.read())) == (status, body)
    assert chat_logs(loopback)[-1].outcome == f"fault:{fault}"


def test_request_body_loopback_field_scripts_one_request_without_the_queue(loopback):
    loopback.queue(reply="from the queue")
    client = sdk(loopback)
    first = client.chat.completions.create(model="gpt-4o-mini", messages=QUESTION,
                                           extra_body={"loopback": {"reply": "from the body"}})
    assert first.choices[0].message.content == "from the body"
    assert client.chat.completions.create(model="gpt-4o-mini", messages=QUESTION).choices[
        0].message.content == "from the queue"
    with pytest.raises(openai.BadRequestError, match="unknown loopback option\\(s\\) speed"):
        client.chat.completions.create(model="gpt-4o-mini", messages=QUESTION,
                                       extra_body={"loopback": {"speed": 3}})
