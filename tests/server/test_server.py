"""The loopback server through the real openai SDK over real HTTP, plus raw HTTP for the wire format.

Expected token counts are recomputed here from the encoding with OpenAI's cookbook rules, not
taken from the server, so a miscount on either side shows up.
"""

from __future__ import annotations

import base64
import http.client
import json
import time
import urllib.error
import urllib.request
from typing import Any

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
    wait_for,
)

from jupyter_llmchat.server import DEFAULT_MODELS, DEMO_RATE, DISCLOSURE, LoopbackServer, start_demo_server

# 1x1 transparent PNG
PNG = base64.b64encode(bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000001e221bc330000000049454e44ae426082")).decode()


# ---------------------------------------------------------------------------------------------
# replies, usage, wire format


def test_models_endpoint_lists_the_served_models(loopback):
    client = sdk(loopback)
    assert [m.id for m in client.models.list().data] == list(DEFAULT_MODELS)
    assert {"gpt-4o", "gpt-4o-mini", "gpt-4.1", "gpt-4.1-mini", "gpt-4.1-nano", "o3-mini", "o4-mini",
            "gpt-4", "gpt-3.5-turbo", "gpt-5", "gpt-5-mini", "loopback-demo"} <= set(DEFAULT_MODELS)
    assert client.models.retrieve("gpt-4.1").id == "gpt-4.1"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("no-such-model")


def test_raw_stream_is_chunked_sse_ending_with_done(loopback):
    loopback.queue(reply="Hello!")
    conn = http.client.HTTPConnection("127.0.0.1", loopback.port, timeout=10)
    body = {"model": "gpt-4o-mini", "messages": QUESTION, "stream": True}
    conn.request("POST", "/v1/chat/completions", json.dumps(body), {"Content-Type": "application/json"})
    response = conn.getresponse()
    assert response.status == 200
    assert response.getheader("Transfer-Encoding") == "chunked"
    assert response.getheader("Content-Type").startswith("text/event-stream")
    events = response.read().decode().split("\n\n")
    assert events[-2:] == ["data: [DONE]", ""]
    payloads = [json.loads(e[len("data: "):]) for e in events[:-2]]
    assert "".join(p["choices"][0]["delta"].get("content", "") for p in payloads) == "Hello!"
    assert all("usage" not in p for p in payloads)  # no include_usage: no usage field at all
    conn.close()


def test_rate_limited_stream_delivers_the_same_text(loopback):
    loopback.queue(tokens=40)
    fast = streamed_text(stream(sdk(loopback)))
    loopback.queue(tokens=40, rate=2000.0)
    assert streamed_text(stream(sdk(loopback))) == fast


def test_reasoning_models_reject_max_tokens_like_openai(loopback):
    with pytest.raises(openai.BadRequestError) as caught:
        sdk(loopback).chat.completions.create(model="o3-mini", messages=QUESTION, max_tokens=5)
    assert caught.value.code == "unsupported_parameter"
    assert "max_completion_tokens" in caught.value.message


# ---------------------------------------------------------------------------------------------
# images and bad requests


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


def test_json_mode_default_replies_parse(loopback):
    client = sdk(loopback)
    messages = [{"role": "user", "content": "Reply in JSON: what is 2+2?"}]
    reply = client.chat.completions.create(model="gpt-4o-mini", messages=messages,
                                           response_format={"type": "json_object"})
    assert json.loads(reply.choices[0].message.content) == {
        "source": "jupyter_llmchat offline demo server, not a model", "question": messages[0]["content"]}
    schema = {"type": "object", "additionalProperties": False, "required": ["answer", "steps", "unit"],
              "properties": {"answer": {"type": "integer"},
                             "steps": {"type": "array", "items": {"$ref": "#/$defs/step"}},
                             "unit": {"anyOf": [{"type": "string", "enum": ["none", "apples"]},
                                                {"type": "null"}]}},
              "$defs": {"step": {"type": "object", "additionalProperties": False, "required": ["text", "ok"],
                                 "properties": {"text": {"type": "string"}, "ok": {"type": "boolean"}}}}}
    chunks = stream(client, messages, response_format={
        "type": "json_schema", "json_schema": {"name": "sum", "schema": schema, "strict": True}})
    assert json.loads(streamed_text(chunks)) == {
        "answer": 0, "steps": [{"text": "jupyter_llmchat offline demo server, not a model", "ok": False}],
        "unit": "none"}


def test_an_invalid_request_does_not_use_up_the_script(loopback):
    loopback.queue(reply="for the valid one")
    client = sdk(loopback)
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="gpt-4o-mini", messages=QUESTION, temperature=5)
    assert loopback.pending == 1
    assert client.chat.completions.create(model="gpt-4o-mini", messages=QUESTION).choices[
        0].message.content == "for the valid one"


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


# ---------------------------------------------------------------------------------------------
# faults


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


def test_disconnect_mid_stream_truncates_the_chunked_body(loopback):
    loopback.queue(reply=" alpha beta gamma delta epsilon", fault="disconnect", after_tokens=3)
    received: list[str] = []
    with pytest.raises(openai.APIConnectionError) as caught:
        for chunk in sdk(loopback).chat.completions.create(model="gpt-4o-mini", messages=QUESTION,
                                                            stream=True):
            received.append(chunk.choices[0].delta.content)
    assert received == ["", " alpha", " beta", " gamma"]
    assert "incomplete chunked read" in str(caught.value.__cause__)


def test_disconnect_without_stream_cuts_the_body(loopback):
    loopback.queue(fault="disconnect")
    with pytest.raises(openai.APIConnectionError) as caught:
        sdk(loopback).chat.completions.create(model="gpt-4o-mini", messages=QUESTION)
    assert "without sending complete message body" in str(caught.value.__cause__)


def test_malformed_chunk_after_some_tokens(loopback):
    loopback.queue(reply=" alpha beta gamma", fault="malformed", after_tokens=2)
    received: list[str] = []
    with pytest.raises(json.JSONDecodeError):
        for chunk in sdk(loopback).chat.completions.create(model="gpt-4o-mini", messages=QUESTION,
                                                            stream=True):
            received.append(chunk.choices[0].delta.content)
    assert received == ["", " alpha", " beta"]


def test_stream_error_event_after_some_tokens(loopback):
    loopback.queue(reply=" alpha beta gamma", fault="stream_error", after_tokens=1, times=2)
    received: list[str] = []
    with pytest.raises(openai.APIError) as caught:
        for chunk in sdk(loopback).chat.completions.create(model="gpt-4o-mini", messages=QUESTION,
                                                            stream=True):
            received.append(chunk.choices[0].delta.content)
    assert received == ["", " alpha"]
    assert caught.value.message == "The server had an error while processing your request. Sorry about that!"
    with pytest.raises(openai.InternalServerError):  # not streamed: a plain 500
        sdk(loopback).chat.completions.create(model="gpt-4o-mini", messages=QUESTION)


def test_slow_first_byte_trips_the_client_read_timeout_then_serves_normally(loopback):
    loopback.queue(fault="slow_first_byte", delay=3.0)
    with pytest.raises(openai.APITimeoutError):
        stream(sdk(loopback, timeout=0.3))
    loopback.queue(reply="worth the wait", fault="slow_first_byte", delay=0.05)
    assert streamed_text(stream(sdk(loopback))) == "worth the wait"
    loopback.queue(reply="any script can wait first", delay=3.0)
    with pytest.raises(openai.APITimeoutError):
        stream(sdk(loopback, timeout=0.3))


def test_a_client_that_hangs_up_while_waiting_is_logged(loopback):
    loopback.queue(fault="slow_first_byte", delay=30.0)
    with pytest.raises(openai.APITimeoutError):
        stream(sdk(loopback, timeout=0.3))  # the SDK gives up and closes the connection
    wait_for(lambda: chat_logs(loopback)[-1].outcome not in (None, "fault:slow_first_byte"))  # None: no script yet
    assert chat_logs(loopback)[-1].outcome == "client_closed"  # noticed at once, not after 30 s
    assert loopback.pending == 0


# ---------------------------------------------------------------------------------------------
# other OpenAI-compatible servers, imitated


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


def test_llamacpp_empty_stream_has_only_an_error_field(loopback):
    loopback.queue(fault="empty_stream")
    response = raw_chat(loopback, stream=True)
    assert response.status == 200 and response.getheader("Content-Type").startswith("text/event-stream")
    assert response.read() == (b'error: {"code":400,"message":"the request exceeds the available context size, '
                               b'try increasing it","type":"exceed_context_size_error"}\n\n')
    loopback.queue(fault="empty_stream")
    assert stream(sdk(loopback)) == []  # what an OpenAI client sees: nothing at all


@pytest.mark.parametrize("fault, tail", [
    ("no_finish", '"delta":{"content":" beta"},"logprobs":null,"finish_reason":null}],"usage":null}'),
    ("no_done", '"rejected_prediction_tokens":0}}}')])
def test_streams_that_end_without_saying_so(loopback, fault, tail):
    loopback.queue(reply=" alpha beta gamma", fault=fault, after_tokens=2)
    events = raw_chat(loopback, stream=True, stream_options={"include_usage": True}).read().decode().split("\n\n")
    assert events[-1] == "" and events[-2].endswith(tail) and "[DONE]" not in "".join(events)
    if fault == "no_done":
        assert '"finish_reason":"stop"' in events[-3]
    else:
        assert all('"finish_reason":null' in event for event in events[:-1])


def test_html_page_json_body_and_no_usage(loopback):
    loopback.queue(fault="html_page")
    page = raw_chat(loopback, stream=True)
    assert page.status == 200 and page.getheader("Content-Type") == "text/html; charset=utf-8"
    assert page.read().startswith(b"<!doctype html>")
    loopback.queue(reply="whole", fault="json_body")
    whole = raw_chat(loopback, stream=True)
    assert whole.getheader("Content-Type") == "application/json"
    assert json.loads(whole.read())["choices"][0]["message"]["content"] == "whole"
    loopback.queue(reply="no usage here", fault="no_usage")
    chunks = stream(sdk(loopback))
    assert streamed_text(chunks) == "no usage here" and all(c.usage is None for c in chunks)


def test_a_server_without_a_model_list_answers_404():
    with LoopbackServer(model_list=False) as server:
        with pytest.raises(openai.NotFoundError) as caught:
            sdk(server).models.list()
        assert caught.value.response.text == "404 page not found"
        assert streamed_text(stream(sdk(server), extra_body={"loopback": {"reply": "chat works"}})) == "chat works"


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


# ---------------------------------------------------------------------------------------------
# scripting, log, control API, auth, binding, lifecycle


def test_request_log_masks_the_key_and_keeps_the_body(loopback):
    loopback.queue(reply="ok")
    sdk(loopback).chat.completions.create(model="gpt-4o-mini", messages=QUESTION, temperature=0.3, seed=7)
    entry = chat_logs(loopback)[-1]
    assert entry.method == "POST" and entry.path == "/v1/chat/completions"
    assert entry.headers["authorization"] == "Bearer ***"
    assert entry.body == {"model": "gpt-4o-mini", "messages": QUESTION, "temperature": 0.3, "seed": 7}
    assert (entry.status, entry.outcome) == (200, "complete")
    assert KEY not in repr(loopback.requests) and KEY not in repr(loopback)
    conn = http.client.HTTPConnection("127.0.0.1", loopback.port, timeout=10)
    conn.request("GET", "/v1/models", headers={"Authorization": "Basic dXNlcjpwYXNz", "X-Api-Key": KEY,
                                               "Cookie": "session=abc"})
    conn.getresponse().read()
    conn.close()
    headers = loopback.requests[-1].headers
    assert (headers["Authorization"], headers["X-Api-Key"], headers["Cookie"]) == ("Basic ***", "***", "***")
    assert abs(entry.time - time.time()) < 60


def _control(server: LoopbackServer, method: str, path: str, data: Any = None,
             content_type: str = "application/json") -> tuple[int, Any]:
    body = json.dumps(data).encode() if data is not None else (b"" if method == "POST" else None)
    request = urllib.request.Request(server.root_url + path, data=body, method=method,
                                     headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_control_api_queue_requests_and_reset(loopback):
    assert _control(loopback, "POST", "/_loopback/queue", {"reply": "scripted over HTTP", "times": 2}) == (
        200, {"queued": 1, "pending": 2})
    assert _control(loopback, "POST", "/_loopback/queue", [{"tokens": 3}, {"fault": "server_error"}])[
        1] == {"queued": 2, "pending": 4}
    client = sdk(loopback)
    assert client.chat.completions.create(model="gpt-4o-mini", messages=QUESTION).choices[
        0].message.content == "scripted over HTTP"
    status, data = _control(loopback, "GET", "/_loopback/requests")
    assert status == 200 and len(data["requests"]) == 1
    logged = data["requests"][0]
    assert logged["body"]["messages"] == QUESTION and logged["headers"]["authorization"] == "Bearer ***"
    assert _control(loopback, "POST", "/_loopback/reset") == (200, {"reset": True})
    assert loopback.pending == 0 and loopback.requests == []


def test_control_api_rejects_bad_scripts_and_non_json_posts(loopback):
    status, data = _control(loopback, "POST", "/_loopback/queue", {"fault": "meltdown"})
    assert status == 400 and "unknown fault 'meltdown'" in data["error"]["message"]
    status, data = _control(loopback, "POST", "/_loopback/queue", {"reply": "x"}, content_type="text/plain")
    assert status == 415
    assert _control(loopback, "GET", "/_loopback/nothing")[0] == 404
    assert loopback.pending == 0


def test_api_key_is_enforced_when_set():
    with LoopbackServer(api_key=KEY) as server:
        with pytest.raises(openai.AuthenticationError) as caught:
            sdk(server, api_key="sk-wrong").chat.completions.create(model="gpt-4o-mini", messages=QUESTION)
        assert caught.value.code == "invalid_api_key" and "sk-wrong" not in caught.value.message
        assert sdk(server).chat.completions.create(model="gpt-4o-mini", messages=QUESTION).choices[0]
        assert [r.status for r in server.requests] == [401, 200]
        assert KEY not in repr(server)


def test_concurrent_streams_are_served_side_by_side(loopback):
    from concurrent.futures import ThreadPoolExecutor

    client = sdk(loopback)

    def ask(i: int) -> str:
        messages = [{"role": "user", "content": f"question {i}"}]
        return streamed_text(stream(client, messages, extra_body={"loopback": {"tokens": 60, "rate": 600.0}}))

    with ThreadPoolExecutor(max_workers=6) as pool:
        answers = list(pool.map(ask, range(6)))
    for i, answer in enumerate(answers):
        loopback.queue(tokens=60)
        alone = client.chat.completions.create(model="gpt-4o-mini",
                                               messages=[{"role": "user", "content": f"question {i}"}])
        assert answer == alone.choices[0].message.content
    assert len(set(answers)) == 6


def test_client_closing_a_stream_is_logged(loopback):
    loopback.queue(tokens=2000, rate=500.0)
    chunks = sdk(loopback).chat.completions.create(model="gpt-4o-mini", messages=QUESTION, stream=True)
    next(chunks)
    next(chunks)
    chunks.close()
    deadline = time.monotonic() + 20
    while chat_logs(loopback)[-1].outcome != "client_closed" and time.monotonic() < deadline:
        time.sleep(0.02)
    assert chat_logs(loopback)[-1].outcome == "client_closed"


def test_azure_deployment_route_with_api_key_header():
    with LoopbackServer(api_key=KEY) as server:
        server.queue(reply="from azure")
        client = openai.AzureOpenAI(azure_endpoint=server.root_url, api_key=KEY, api_version="2024-10-21",
                                    azure_deployment="gpt-4o", max_retries=0)
        response = client.chat.completions.create(model="gpt-4o", messages=QUESTION)
        assert response.choices[0].message.content == "from azure"
        entry = server.requests[-1]
        assert entry.path == "/openai/deployments/gpt-4o/chat/completions"
        assert entry.query == "api-version=2024-10-21"
        assert entry.headers["api-key"] == "***"


def test_start_demo_server_is_one_lazy_singleton():
    demo = start_demo_server()
    assert start_demo_server() is demo
    assert demo.default_rate == DEMO_RATE
    response = sdk(demo).chat.completions.create(model="gpt-4o-mini", messages=QUESTION)
    text = response.choices[0].message.content
    assert text.startswith(DISCLOSURE)


def test_latency_holds_every_answer_until_it_has_passed_and_a_script_delay_overrides_it(loopback):
    loopback.latency = 0.3  # the fixture puts it back
    client = sdk(loopback)
    started = time.monotonic()
    client.chat.completions.create(model="gpt-4o-mini", messages=QUESTION)
    assert time.monotonic() - started >= 0.3  # a lower bound: the server waited at least that long
    loopback.queue(reply="at once", delay=0)
    assert client.chat.completions.create(model="gpt-4o-mini", messages=QUESTION).choices[0].message.content == "at once"
    loopback.latency = 30  # a client that gives up while it waits is logged as gone, not answered
    with pytest.raises(openai.APITimeoutError):
        sdk(loopback, timeout=0.2).chat.completions.create(model="gpt-4o-mini", messages=QUESTION)
    deadline = time.monotonic() + 10
    while loopback.requests[-1].outcome is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert [entry.outcome for entry in loopback.requests] == ["complete", "complete", "client_closed"]
    for wrong in (-1, float("nan"), True, "1"):
        with pytest.raises(ValueError, match="latency must be a number of seconds >= 0"):
            loopback.latency = wrong
    assert LoopbackServer(latency=2).latency == 2.0


