"""The loopback server's Batch API through the real openai SDK (client.files, client.batches) over
real HTTP: uploads, the statuses a batch moves through on the simulated clock, output and error
files matched by custom_id, failed, expired and cancelled batches, Azure's routes.

The clock is held (speedup 0) and stepped with ``clock.advance``, so every status is seen exactly,
whatever the machine's speed.
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from openai import AzureOpenAI, OpenAI

from jupyter_llmchat.server import LoopbackServer
from jupyter_llmchat.server.batches import (
    DEFAULT_SPEEDUP,
    FINALIZING_SECONDS,
    SECONDS_PER_LINE,
    VALIDATING_SECONDS,
    BatchScript,
)

LATER = 3600.0  # simulated seconds: enough for any batch here to finish, well inside its 24-hour window


@pytest.fixture
def server(loopback: LoopbackServer) -> Iterator[LoopbackServer]:
    loopback.batches.speedup = 0  # held: tests step the clock
    yield loopback
    loopback.batches.speedup = DEFAULT_SPEEDUP


def sdk(server: LoopbackServer) -> OpenAI:
    return OpenAI(base_url=server.base_url, api_key="sk-test", max_retries=0)


def request_line(custom_id: str, question: str, *, url: str = "/v1/chat/completions", model: str = "gpt-4o-mini",
                 **params: Any) -> dict[str, Any]:
    return {"custom_id": custom_id, "method": "POST", "url": url,
            "body": {"model": model, "messages": [{"role": "user", "content": question}], **params}}


def jsonl(lines: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines).encode()


def submit(client: OpenAI, lines: list[dict[str, Any]], endpoint: str = "/v1/chat/completions") -> Any:
    uploaded = client.files.create(file=("requests.jsonl", jsonl(lines)), purpose="batch")
    return client.batches.create(input_file_id=uploaded.id, endpoint=endpoint,  # type: ignore[arg-type]
                                 completion_window="24h")


def file_lines(client: OpenAI, file_id: str | None) -> list[dict[str, Any]]:
    assert file_id is not None
    return [json.loads(line) for line in client.files.content(file_id).text.splitlines()]


def test_a_batch_moves_through_openais_statuses_and_answers_each_line_as_chat_completions_does(
        server: LoopbackServer) -> None:
    client = sdk(server)
    lines = [request_line(f"row-{i}", f"Question {i}: café?", max_tokens=12) for i in range(3)]
    uploaded = client.files.create(file=("requests.jsonl", jsonl(lines)), purpose="batch")
    assert (uploaded.object, uploaded.purpose, uploaded.filename, uploaded.bytes) == (
        "file", "batch", "requests.jsonl", len(jsonl(lines)))
    assert client.files.retrieve(uploaded.id).id == uploaded.id
    assert client.files.content(uploaded.id).content == jsonl(lines)  # kept byte for byte

    batch = client.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions",
                                  completion_window="24h", metadata={"job": "test"})
    seen = [batch.status]
    clock = server.batches.clock
    for step in (VALIDATING_SECONDS, SECONDS_PER_LINE, 2 * SECONDS_PER_LINE, FINALIZING_SECONDS):
        clock.advance(step)
        batch = client.batches.retrieve(batch.id)
        seen.append(batch.status)
        if batch.status == "in_progress":
            assert batch.request_counts is not None and batch.request_counts.total == 3
            seen.append(f"{batch.request_counts.completed} done")
    assert seen == ["validating", "in_progress", "0 done", "in_progress", "1 done", "finalizing", "completed"]
    assert (batch.endpoint, batch.model, batch.completion_window, batch.metadata) == (
        "/v1/chat/completions", "gpt-4o-mini", "24h", {"job": "test"})
    assert batch.request_counts is not None
    assert (batch.request_counts.completed, batch.request_counts.failed) == (3, 0)
    assert batch.error_file_id is None  # no errors: no error file, as OpenAI does
    assert batch.in_progress_at == batch.created_at + int(VALIDATING_SECONDS)
    assert batch.completed_at is not None and batch.completed_at > batch.created_at

    outputs = file_lines(client, batch.output_file_id)
    assert [line["custom_id"] for line in outputs] == ["row-0", "row-1", "row-2"]
    for line, request in zip(outputs, lines):
        direct = client.chat.completions.create(**request["body"])
        assert line["error"] is None and line["response"]["status_code"] == 200
        assert line["id"].startswith("batch_req_") and line["response"]["request_id"].startswith("req_")
        answer = line["response"]["body"]
        assert answer["object"] == "chat.completion"
        assert answer["choices"][0]["message"]["content"] == direct.choices[0].message.content
        assert answer["choices"][0]["finish_reason"] == direct.choices[0].finish_reason == "length"
        assert direct.usage is not None and answer["usage"]["prompt_tokens"] == direct.usage.prompt_tokens
    assert batch.usage is not None
    assert batch.usage.input_tokens == sum(line["response"]["body"]["usage"]["prompt_tokens"] for line in outputs)
    assert batch.usage.output_tokens == 3 * 12


def test_a_line_the_endpoint_rejects_is_in_the_error_file_and_the_others_are_answered(
        server: LoopbackServer) -> None:
    client = sdk(server)
    lines = [request_line("good", "Fine?"), request_line("hot", "Too hot?", temperature=5),
             request_line("flaky", "Flaky?", loopback={"fault": "server_error"}),
             request_line("unknown-model", "Who?", model="gpt-4o-mini")]
    lines[3]["body"]["model"] = "gpt-4o-mini"  # one model per batch; the line's own fault is its params
    lines[3]["body"]["messages"] = []
    batch = submit(client, lines)
    server.batches.clock.advance(LATER)
    batch = client.batches.retrieve(batch.id)
    assert batch.status == "completed"
    assert batch.request_counts is not None
    assert (batch.request_counts.completed, batch.request_counts.failed) == (1, 3)
    assert [line["custom_id"] for line in file_lines(client, batch.output_file_id)] == ["good"]
    errors = {line["custom_id"]: line for line in file_lines(client, batch.error_file_id)}
    assert list(errors) == ["hot", "flaky", "unknown-model"]
    assert errors["hot"]["response"]["status_code"] == 400 and errors["hot"]["error"] is None
    assert errors["hot"]["response"]["body"]["error"] == {
        "message": "Invalid 'temperature': decimal above maximum value. Expected a value <= 2, but got 5 instead.",
        "type": "invalid_request_error", "param": "temperature", "code": "decimal_above_max_value"}
    assert errors["flaky"]["response"]["status_code"] == 500
    assert errors["flaky"]["response"]["body"]["error"]["type"] == "server_error"
    assert errors["unknown-model"]["response"]["body"]["error"]["message"] == "Missing required parameter: 'messages'."


def test_a_line_too_long_or_with_a_bad_script_gets_the_error_a_chat_request_gets(server: LoopbackServer) -> None:
    """A batch line and a chat request share the context-window check and the "loopback" field's reading."""
    client = sdk(server)
    lines = [request_line("long", " hello" * 9000, model="gpt-4"),
             request_line("bad-script", "Hi?", model="gpt-4", loopback={"fault": "no_such_fault"})]
    batch = submit(client, lines)
    server.batches.clock.advance(LATER)
    batch = client.batches.retrieve(batch.id)
    assert batch.status == "completed" and batch.output_file_id is None
    errors = {line["custom_id"]: line["response"] for line in file_lines(client, batch.error_file_id)}
    for line in lines:
        body = dict(line["body"])
        script = body.pop("loopback", None)
        with pytest.raises(openai.BadRequestError) as direct:
            client.chat.completions.create(**body, extra_body={"loopback": script} if script else None)
        response = errors[line["custom_id"]]
        assert (response["status_code"], response["body"]) == (400, {"error": direct.value.body})
    assert errors["long"]["body"]["error"]["code"] == "context_length_exceeded"
    assert errors["bad-script"]["body"]["error"]["param"] == "loopback"


def test_an_input_that_breaks_the_rules_fails_the_batch_with_each_lines_error(server: LoopbackServer) -> None:
    client = sdk(server)
    content = b"\n".join([
        json.dumps(request_line("a", "One")).encode(),
        b"{not json",
        json.dumps(request_line("a", "Two")).encode(),
        json.dumps(request_line("c", "Three", url="/v1/embeddings")).encode(),
        json.dumps(request_line("d", "Four", model="gpt-4o")).encode(),
        json.dumps({"custom_id": "e", "method": "POST", "url": "/v1/chat/completions"}).encode(),
    ])
    uploaded = client.files.create(file=("bad.jsonl", content), purpose="batch")
    batch = client.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions",
                                  completion_window="24h")
    assert batch.status == "validating"
    server.batches.clock.advance(VALIDATING_SECONDS)
    batch = client.batches.retrieve(batch.id)
    assert batch.status == "failed" and batch.failed_at == batch.created_at + int(VALIDATING_SECONDS)
    assert batch.output_file_id is None and batch.error_file_id is None
    assert batch.errors is not None and batch.errors.data is not None
    assert [(error.line, error.code, error.param) for error in batch.errors.data] == [
        (2, "invalid_json_line", None), (3, "duplicate_custom_id", "custom_id"), (4, "invalid_url", "url"),
        (5, "mismatched_model", "body.model"), (6, "missing_required_parameter", "body")]
    assert batch.errors.data[2].message == "The URL provided for this request does not match the batch endpoint."


def test_an_expiring_batch_returns_what_it_answered_and_the_rest_as_batch_expired(server: LoopbackServer) -> None:
    client = sdk(server)
    server.batches.queue(BatchScript(expire_after=2))
    batch = submit(client, [request_line(f"row-{i}", f"Q{i}") for i in range(5)])
    server.batches.clock.advance(LATER)
    batch = client.batches.retrieve(batch.id)
    assert batch.status == "expired" and batch.expired_at is not None and batch.completed_at is None
    assert batch.request_counts is not None
    assert (batch.request_counts.total, batch.request_counts.completed, batch.request_counts.failed) == (5, 2, 3)
    assert [line["custom_id"] for line in file_lines(client, batch.output_file_id)] == ["row-0", "row-1"]
    errors = file_lines(client, batch.error_file_id)
    assert [(line["custom_id"], line["response"], line["error"]["code"]) for line in errors] == [
        ("row-2", None, "batch_expired"), ("row-3", None, "batch_expired"), ("row-4", None, "batch_expired")]
    assert errors[0]["error"]["message"] == ("This request could not be executed before the completion window "
                                             "expired.")
    # the next batch is not scripted: it completes
    batch = submit(client, [request_line("x", "Q")])
    server.batches.clock.advance(LATER)
    assert client.batches.retrieve(batch.id).status == "completed"


def test_a_batch_looked_at_only_a_day_later_finished_within_its_window(server: LoopbackServer) -> None:
    client = sdk(server)
    batch = submit(client, [request_line("only", "Q")])
    server.batches.clock.advance(VALIDATING_SECONDS + 24 * 3600)  # nothing looked at it until now
    batch = client.batches.retrieve(batch.id)
    # the line was answered long before the window closed, so the batch completed within it
    assert batch.status == "completed"


def test_a_cancelled_batch_keeps_its_answers_and_lists_the_lines_never_run(server: LoopbackServer) -> None:
    client = sdk(server)
    batch = submit(client, [request_line(f"row-{i}", f"Q{i}") for i in range(4)])
    server.batches.clock.advance(VALIDATING_SECONDS + 1.5 * SECONDS_PER_LINE)
    assert client.batches.retrieve(batch.id).status == "in_progress"
    batch = client.batches.cancel(batch.id)
    assert batch.status == "cancelling" and batch.cancelling_at is not None
    server.batches.clock.advance(LATER)
    batch = client.batches.retrieve(batch.id)
    assert batch.status == "cancelled" and batch.cancelled_at is not None
    assert batch.request_counts is not None
    assert (batch.request_counts.completed, batch.request_counts.failed) == (1, 3)
    assert [line["custom_id"] for line in file_lines(client, batch.output_file_id)] == ["row-0"]
    assert [(line["custom_id"], line["error"]["code"]) for line in file_lines(client, batch.error_file_id)] == [
        ("row-1", "batch_cancelled"), ("row-2", "batch_cancelled"), ("row-3", "batch_cancelled")]
    with pytest.raises(openai.BadRequestError) as caught:
        client.batches.cancel(batch.id)
    assert caught.value.body == {"message": "Cannot cancel a batch with status 'cancelled'.",
                                 "type": "invalid_request_error", "param": None, "code": "invalid_state"}


def test_a_held_clock_holds_every_batch(server: LoopbackServer) -> None:
    client = sdk(server)
    batch = submit(client, [request_line("only", "Q")])
    for _ in range(3):
        assert client.batches.retrieve(batch.id).status == "validating"
    server.batches.speedup = 1e9  # and a fast one finishes it at the next look
    assert client.batches.retrieve(batch.id).status == "completed"


def test_what_the_api_rejects(server: LoopbackServer) -> None:
    client = sdk(server)
    with pytest.raises(openai.NotFoundError) as missing:
        client.batches.create(input_file_id="file-nope", endpoint="/v1/chat/completions", completion_window="24h")
    assert missing.value.body == {"message": "No such File object: file-nope", "type": "invalid_request_error",
                                  "param": "id", "code": None}
    with pytest.raises(openai.NotFoundError):
        client.batches.retrieve("batch_nope")
    notes = client.files.create(file=("notes.jsonl", b"{}\n"), purpose="user_data")
    with pytest.raises(openai.BadRequestError) as purpose:
        client.batches.create(input_file_id=notes.id, endpoint="/v1/chat/completions", completion_window="24h")
    assert purpose.value.body["message"] == (f"The input file {notes.id} must be uploaded with purpose 'batch', "
                                             "not 'user_data'.")
    uploaded = client.files.create(file=("requests.jsonl", jsonl([request_line("a", "Q")])), purpose="batch")
    with pytest.raises(openai.BadRequestError) as endpoint:
        client.batches.create(input_file_id=uploaded.id, endpoint="/v1/embeddings", completion_window="24h")
    assert endpoint.value.body["message"] == ("The loopback server runs batches of /v1/chat/completions only, not "
                                              "'/v1/embeddings'.")
    # an upload that is not multipart/form-data
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    conn.request("POST", "/v1/files", b'{"purpose": "batch"}', {"Content-Type": "application/json"})
    response = conn.getresponse()
    assert response.status == 400
    assert json.loads(response.read())["error"]["message"] == ("Uploads must be multipart/form-data with the "
                                                               "fields 'file' and 'purpose'.")
    conn.close()


def test_batches_are_listed_newest_first_a_page_at_a_time(server: LoopbackServer) -> None:
    client = sdk(server)
    ids = [submit(client, [request_line("a", f"Q{i}")]).id for i in range(3)]
    page = client.batches.list(limit=2)
    assert [batch.id for batch in page.data] == [ids[2], ids[1]] and page.has_more
    assert [batch.id for batch in client.batches.list(limit=2, after=ids[1]).data] == [ids[0]]
    assert server.batches.batch_ids() == ids


def test_azure_batch_deployments_use_the_openai_routes_with_azures_url(server: LoopbackServer) -> None:
    client = AzureOpenAI(azure_endpoint=server.root_url, api_key="azure-key", api_version="2024-10-21",
                         azure_deployment="gpt-4o-mini", max_retries=0)
    batch = submit(client, [request_line("a", "Hello", url="/chat/completions")],  # type: ignore[arg-type]
                   endpoint="/chat/completions")
    server.batches.clock.advance(LATER)
    batch = client.batches.retrieve(batch.id)
    assert batch.status == "completed" and batch.endpoint == "/chat/completions"
    (line,) = file_lines(client, batch.output_file_id)  # type: ignore[arg-type]
    assert line["response"]["body"]["model"] == "gpt-4o-mini"
    paths = [(request.method, request.path, request.query) for request in server.requests]
    assert paths[:2] == [("POST", "/openai/files", "api-version=2024-10-21"),
                         ("POST", "/openai/batches", "api-version=2024-10-21")]
    assert server.batches.input_lines(batch.id)[0]["url"] == "/chat/completions"


def test_a_scripted_refusal_fails_the_next_batch_with_its_message(server: LoopbackServer) -> None:
    client = sdk(server)
    server.batches.queue(BatchScript(fail="The batch was refused."))
    batch = submit(client, [request_line("a", "Q")])
    server.batches.clock.advance(LATER)
    batch = client.batches.retrieve(batch.id)
    assert batch.status == "failed" and batch.errors is not None and batch.errors.data is not None
    assert [(e.line, e.code, e.message) for e in batch.errors.data] == [(1, "invalid_request", "The batch was refused.")]
    with pytest.raises(ValueError):
        BatchScript(fail=3)  # type: ignore[arg-type]

