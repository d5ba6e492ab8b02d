"""BatchClient (core/client/batches.py) through the real openai SDK against the loopback server's
Batch API: a JSONL file uploaded (purpose "batch"), a batch created over it, retrieved through
its statuses on the server's held clock (stepped exactly), cancelled, its files downloaded; the
counts and a failed batch's reasons as a BatchStatus; OpenAI's and Azure's spellings of the
endpoint and routes; every failure (no such batch or file, no Batch API, a refused request, a
rejected key) as one line."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from openai import OpenAI
from support.batch_rows import FAST, MODEL, client_for, rows

from jupyter_llmchat.core.batch import run_batch
from jupyter_llmchat.core.batch_jobs import MemoryBatchJobs
from jupyter_llmchat.core.client import BatchClient, BatchStatus, ChatClient
from jupyter_llmchat.core.errors import AuthenticationError, BadRequestError, BatchError
from jupyter_llmchat.server import LoopbackServer
from jupyter_llmchat.server.batches import DEFAULT_SPEEDUP, BatchScript

VALIDATING, PER_LINE, FINALIZING, CANCELLING = 10.0, 0.1, 10.0, 5.0  # the server's simulated seconds


@pytest.fixture
def held(loopback: LoopbackServer) -> Iterator[LoopbackServer]:
    """The loopback server with every batch held where it is: ``batches.clock.advance`` steps it."""
    loopback.batches.speedup = 0
    yield loopback
    loopback.batches.speedup = DEFAULT_SPEEDUP


def line(custom_id: str, content: str = "Hi", url: str = "/v1/chat/completions") -> dict[str, Any]:
    return {"custom_id": custom_id, "method": "POST", "url": url,
            "body": {"model": MODEL, "messages": [{"role": "user", "content": content}]}}


def jsonl(*lines: dict[str, Any]) -> bytes:
    return b"".join(json.dumps(item).encode() + b"\n" for item in lines)


def batches_of(server: LoopbackServer) -> BatchClient:
    return BatchClient(client_for(server))


def logged(server: LoopbackServer) -> list[tuple[str, str, int | None]]:
    return [(r.method, r.path, r.status) for r in server.requests]


# -- moved from tests/core/test_batch.py ----------------------------------------------------------
def test_azure_batch_deployments_work_the_same_way(server: LoopbackServer) -> None:
    client = ChatClient(azure_endpoint=server.root_url, api_key="azure-key", api_version="2024-10-21",
                        azure_deployment=MODEL, max_retries=0)
    _, results = run_batch(client, MemoryBatchJobs(), rows(2), poll=FAST)
    (batch_id,) = server.batches.batch_ids()
    assert [line["url"] for line in server.batches.input_lines(batch_id)] == ["/chat/completions"] * 2
    assert {(r.method, r.path) for r in server.requests} >= {("POST", "/openai/files"), ("POST", "/openai/batches")}
    assert [r.status for r in results] == ["done", "done"]


# -- files ----------------------------------------------------------------------------------------
def test_upload_sends_the_bytes_as_a_batch_file_and_returns_its_id(held: LoopbackServer) -> None:
    content = jsonl(line("a"), line("b", "Ünïcode ✓"))
    file_id = batches_of(held).upload(content, "job_1-1.jsonl")
    assert file_id.startswith("file-")
    assert held.batches.file_content(file_id) == content  # byte for byte
    stored = OpenAI(base_url=held.base_url, api_key="x", max_retries=0).files.retrieve(file_id)
    assert (stored.filename, stored.purpose, stored.bytes) == ("job_1-1.jsonl", "batch", len(content))
    assert logged(held)[0] == ("POST", "/v1/files", 200)


def test_download_returns_a_file_exactly(held: LoopbackServer) -> None:
    client = batches_of(held)
    content = jsonl(line("a")) + b"\n"  # a blank line at the end stays
    assert client.download(client.upload(content, "x.jsonl")) == content


# -- a batch through its statuses -----------------------------------------------------------------
def test_a_batch_is_created_and_seen_through_its_statuses_to_its_output_file(held: LoopbackServer) -> None:
    client = batches_of(held)
    file_id = client.upload(jsonl(line("a", "One"), line("b", "Two")), "in.jsonl")
    created = client.create(file_id, metadata={"jupyter_llmchat_job": "job_1"})
    assert created == BatchStatus(created.id, "validating", file_id, total=2)
    assert created.id.startswith("batch_") and not created.final
    assert held.requests[-1].body == {"input_file_id": file_id, "endpoint": "/v1/chat/completions",
                                      "completion_window": "24h", "metadata": {"jupyter_llmchat_job": "job_1"}}
    assert client.retrieve(created.id) == created  # the clock is held
    held.batches.clock.advance(VALIDATING + 1.5 * PER_LINE)
    assert client.retrieve(created.id) == BatchStatus(created.id, "in_progress", file_id, total=2, completed=1)
    held.batches.clock.advance(PER_LINE)
    assert client.retrieve(created.id) == BatchStatus(created.id, "finalizing", file_id, total=2, completed=2)
    held.batches.clock.advance(FINALIZING)
    done = client.retrieve(created.id)
    assert done.final and done.output_file_id is not None
    assert done == BatchStatus(created.id, "completed", file_id, done.output_file_id, None, 2, 2, 0)
    output = client.download(done.output_file_id)
    assert output == held.batches.file_content(done.output_file_id)
    answers = [json.loads(row) for row in output.splitlines()]
    assert [(a["custom_id"], a["response"]["status_code"], a["error"]) for a in answers] == [("a", 200, None),
                                                                                              ("b", 200, None)]
    assert [a["response"]["body"]["object"] for a in answers] == ["chat.completion"] * 2


def test_a_batch_without_metadata_is_created_too(held: LoopbackServer) -> None:
    client = batches_of(held)
    file_id = client.upload(jsonl(line("a")), "in.jsonl")
    created = client.create(file_id)
    assert created == BatchStatus(created.id, "validating", file_id, total=1)
    body = held.requests[-1].body
    assert (body["input_file_id"], body["endpoint"], body["completion_window"], body.get("metadata")) == (
        file_id, "/v1/chat/completions", "24h", None)


def test_cancel_keeps_the_answered_lines_and_puts_the_others_in_the_error_file(held: LoopbackServer) -> None:
    client = batches_of(held)
    file_id = client.upload(jsonl(line("a"), line("b"), line("c")), "in.jsonl")
    batch_id = client.create(file_id).id
    held.batches.clock.advance(VALIDATING + 1.5 * PER_LINE)  # "a" answered
    assert client.cancel(batch_id) == BatchStatus(batch_id, "cancelling", file_id, total=3, completed=1)
    assert logged(held)[-1] == ("POST", f"/v1/batches/{batch_id}/cancel", 200)
    held.batches.clock.advance(CANCELLING)
    cancelled = client.retrieve(batch_id)
    assert cancelled.output_file_id is not None and cancelled.error_file_id is not None
    assert cancelled == BatchStatus(batch_id, "cancelled", file_id, cancelled.output_file_id,
                                    cancelled.error_file_id, 3, 1, 2)
    assert [json.loads(row)["custom_id"] for row in client.download(cancelled.output_file_id).splitlines()] == ["a"]
    missing = [json.loads(row) for row in client.download(cancelled.error_file_id).splitlines()]
    assert [(m["custom_id"], m["response"], m["error"]["code"]) for m in missing] == [
        ("b", None, "batch_cancelled"), ("c", None, "batch_cancelled")]


def test_an_expired_batch_counts_the_lines_it_never_ran_as_failed(server: LoopbackServer) -> None:
    server.batches.queue(BatchScript(expire_after=1))
    client = batches_of(server)
    file_id = client.upload(jsonl(line("a"), line("b")), "in.jsonl")
    status = client.retrieve(client.create(file_id).id)
    assert (status.status, status.final, status.total, status.completed, status.failed) == ("expired", True, 2, 1, 1)
    missing = [json.loads(row) for row in client.download(status.error_file_id).splitlines()]  # type: ignore[arg-type]
    assert [(m["custom_id"], m["error"]["code"]) for m in missing] == [("b", "batch_expired")]


def test_a_malformed_input_file_fails_the_batch_with_each_line_s_reason(held: LoopbackServer) -> None:
    client = batches_of(held)
    content = b"{not json\n" + jsonl(line("a"), line("a"), line("b", url="/v1/embeddings"))
    file_id = client.upload(content, "bad.jsonl")
    batch_id = client.create(file_id).id
    held.batches.clock.advance(VALIDATING)
    assert client.retrieve(batch_id) == BatchStatus(batch_id, "failed", file_id, errors=(
        "line 1: invalid_json_line: This line is not parseable as valid JSON.",
        "line 3: duplicate_custom_id: The custom_id for this request is a duplicate of another request. The "
        "custom_id parameter must be unique for each request in a batch.",
        "line 4: invalid_url: The URL provided for this request does not match the batch endpoint."))
    assert client.retrieve(batch_id).final


def test_a_batch_the_provider_refuses_gives_its_reason(server: LoopbackServer) -> None:
    server.batches.queue(BatchScript(fail="Enqueued token limit reached for gpt-4o-mini.\nTry later."))
    client = batches_of(server)
    file_id = client.upload(jsonl(line("a")), "in.jsonl")
    batch_id = client.create(file_id).id
    assert client.retrieve(batch_id) == BatchStatus(batch_id, "failed", file_id, errors=(
        "line 1: invalid_request: Enqueued token limit reached for gpt-4o-mini. Try later.",))  # one line


# -- OpenAI and Azure -----------------------------------------------------------------------------
def test_openai_names_the_v1_endpoint(loopback: LoopbackServer) -> None:
    client = batches_of(loopback)
    assert (client.azure, client.endpoint) == (False, "/v1/chat/completions")


def test_azure_names_its_own_endpoint_and_routes(held: LoopbackServer) -> None:
    client = BatchClient(ChatClient(azure_endpoint=held.root_url, api_key="azure-key", api_version="2024-10-21",
                                    azure_deployment=MODEL, max_retries=0))
    assert (client.azure, client.endpoint) == (True, "/chat/completions")
    content = jsonl(line("a", url="/chat/completions"))
    file_id = client.upload(content, "in.jsonl")
    created = client.create(file_id)
    assert client.retrieve(created.id) == created == BatchStatus(created.id, "validating", file_id, total=1)
    assert held.requests[1].body["endpoint"] == "/chat/completions"
    assert [(r.method, r.path, r.query, r.status) for r in held.requests] == [
        ("POST", "/openai/files", "api-version=2024-10-21", 200),
        ("POST", "/openai/batches", "api-version=2024-10-21", 200),
        ("GET", f"/openai/batches/{created.id}", "api-version=2024-10-21", 200)]
    assert held.requests[0].headers["api-key"] == "***"  # Azure's key header (masked in the log)


# -- failures, one line each ----------------------------------------------------------------------
@pytest.mark.parametrize("call", ["retrieve", "cancel"])
def test_no_such_batch_is_one_line(loopback: LoopbackServer, call: str) -> None:
    with pytest.raises(BatchError) as caught:
        getattr(batches_of(loopback), call)("batch_nope")
    assert str(caught.value) == (f"no batch 'batch_nope' at {loopback.base_url} (404: No batch found with id "
                                 "'batch_nope'.): was it made with another endpoint or key?")
    assert caught.value.status == 404


def test_no_such_file_is_one_line(loopback: LoopbackServer) -> None:
    with pytest.raises(BatchError) as caught:
        batches_of(loopback).download("file-nope")
    assert str(caught.value) == (f"no file 'file-nope' (files of a batch expire 30 days after it was made) at "
                                 f"{loopback.base_url} (404: No such File object: file-nope): was it made with "
                                 "another endpoint or key?")
    assert caught.value.status == 404


@pytest.mark.parametrize(("call", "doing"), [(lambda c: c.upload(b"{}\n", "in.jsonl"), "POST /files"),
                                             (lambda c: c.create("file-x"), "POST /batches")])
def test_an_endpoint_without_the_batch_api_says_so(loopback: LoopbackServer, call: Any, doing: str) -> None:
    client = BatchClient(ChatClient(base_url=loopback.root_url + "/no-api", max_retries=0))
    with pytest.raises(BatchError) as caught:
        call(client)
    method, route = doing.split()
    assert str(caught.value) == (f"{loopback.root_url}/no-api has no Batch API ({doing} answered 404: Invalid URL "
                                 f"({method} /no-api{route})): use map() without mode='batch', or an endpoint that "
                                 "has one (OpenAI, an Azure batch deployment)")
    assert caught.value.status == 404


def test_cancelling_a_finished_batch_is_refused_in_one_line(server: LoopbackServer) -> None:
    client = batches_of(server)
    batch_id = client.create(client.upload(jsonl(line("a")), "in.jsonl")).id
    assert client.retrieve(batch_id).status == "completed"
    with pytest.raises(BadRequestError) as caught:
        client.cancel(batch_id)
    assert str(caught.value) == "request rejected (400, invalid_state): Cannot cancel a batch with status 'completed'."


def test_metadata_the_endpoint_refuses_is_one_line(held: LoopbackServer) -> None:
    client = batches_of(held)
    file_id = client.upload(jsonl(line("a")), "in.jsonl")
    with pytest.raises(BadRequestError) as caught:
        client.create(file_id, metadata={f"k{i}": "v" for i in range(17)})
    assert str(caught.value) == ("request rejected (400, invalid_value): Invalid 'metadata': expected at most 16 "
                                 "string keys with string values.")
    assert held.batches.batch_ids() == []


def test_a_rejected_key_is_one_line_without_the_key() -> None:
    key = "sk-wrong-batch-key-0123456789"
    with LoopbackServer(api_key="the-right-key-0123456789") as server:
        client = BatchClient(ChatClient(base_url=server.base_url, api_key=key, max_retries=0))
        for call in (lambda: client.upload(b"{}\n", "in.jsonl"), lambda: client.retrieve("batch_x")):
            with pytest.raises(AuthenticationError) as caught:
                call()
            assert str(caught.value) == (
                f"authentication failed (401) at {server.base_url}: the API key was rejected or lacks access; set "
                "OPENAI_API_KEY, pass api_key=, or point OPENAI_BASE_URL (base_url=) at a local OpenAI-compatible "
                "server")
            assert key not in repr(caught.value)
        assert [(r.path, r.status) for r in server.requests] == [("/v1/files", 401), ("/v1/batches/batch_x", 401)]


def test_creating_a_batch_over_a_missing_file_names_the_file(loopback: LoopbackServer) -> None:
    with pytest.raises(BatchError) as caught:
        batches_of(loopback).create("file-nope")
    assert str(caught.value) == (f"no file 'file-nope' at {loopback.base_url} (404: No such File object: file-nope): "
                                 "was it made with another endpoint or key?")
