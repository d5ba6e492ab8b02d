"""The loopback server's HTTP handler through the real openai SDK and raw HTTP: routes (models,
Azure, the control API), chunked SSE, pacing, mid-stream and body faults, waiting before an answer,
hang-ups, the key check, the masked request log, and an invalid request leaving the script queued."""

from __future__ import annotations

import http.client
import json
import time
import urllib.error
import urllib.request
from typing import Any

import openai
import pytest
from support.loopback_client import KEY, QUESTION, chat_logs, raw_chat, sdk, stream, streamed_text, wait_for

from jupyter_llmchat.server import DEFAULT_MODELS, LoopbackServer


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


def test_an_invalid_request_does_not_use_up_the_script(loopback):
    loopback.queue(reply="for the valid one")
    client = sdk(loopback)
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="gpt-4o-mini", messages=QUESTION, temperature=5)
    assert loopback.pending == 1
    assert client.chat.completions.create(model="gpt-4o-mini", messages=QUESTION).choices[
        0].message.content == "for the valid one"


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
    with LoopbackServer(model_list=False) as server, sdk(server) as client:  # closed before the server stops
        with pytest.raises(openai.NotFoundError) as caught:
            client.models.list()
        assert caught.value.response.text == "404 page not found"
        assert streamed_text(stream(client, extra_body={"loopback": {"reply": "chat works"}})) == "chat works"


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
    with LoopbackServer(api_key=KEY) as server, sdk(server, api_key="sk-wrong") as wrong, sdk(server) as right:
        with pytest.raises(openai.AuthenticationError) as caught:
            wrong.chat.completions.create(model="gpt-4o-mini", messages=QUESTION)
        assert caught.value.code == "invalid_api_key" and "sk-wrong" not in caught.value.message
        assert right.chat.completions.create(model="gpt-4o-mini", messages=QUESTION).choices[0]
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


def test_latency_holds_every_answer_until_it_has_passed_and_a_script_delay_overrides_it(loopback):
    """Checked by what the client and the log see, not by a clock: under a 30 s latency a scripted
    delay of 0 is answered, and a client that gives up on an unscripted answer is logged as gone."""
    loopback.latency = 30  # the fixture puts it back
    loopback.queue(reply="at once", delay=0)
    answer = sdk(loopback, timeout=20).chat.completions.create(model="gpt-4o-mini", messages=QUESTION)
    assert answer.choices[0].message.content == "at once"
    with pytest.raises(openai.APITimeoutError):  # held: the client gives up long before 30 s
        sdk(loopback, timeout=0.2).chat.completions.create(model="gpt-4o-mini", messages=QUESTION)
    wait_for(lambda: loopback.requests[-1].outcome is not None)
    assert [entry.outcome for entry in loopback.requests] == ["complete", "client_closed"]
    for wrong in (-1, float("nan"), True, "1"):
        with pytest.raises(ValueError, match="latency must be a number of seconds >= 0"):
            loopback.latency = wrong
    assert LoopbackServer(latency=2).latency == 2.0
