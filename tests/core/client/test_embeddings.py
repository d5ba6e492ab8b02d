"""EmbeddingClient (core/client/embeddings.py) through the real openai SDK against the loopback
server: one request per call, asked as base64 and decoded to float32 rows in the texts' order,
with the tokens billed and the model; ``dimensions`` sent only when given; the endpoint's refusals
and failures as one-line ChatErrors (after the SDK's retries, counted); ``cut`` ending a request in
flight and refusing the next one; lists of floats read as well as base64."""

from __future__ import annotations

import base64
import threading

import numpy as np
import pytest
from openai import OpenAI
from support.embedding_requests import MODEL, TEXTS, embedding_logs, expected, make_bot
from support.loopback_client import wait_for

from jupyter_llmchat.core.client import ChatClient, EmbeddedBatch, EmbeddingClient
from jupyter_llmchat.core.client.embeddings import _vector
from jupyter_llmchat.core.errors import (
    AuthenticationError,
    BadRequestError,
    ChatError,
    ModelNotFoundError,
    RateLimitError,
    ServerError,
)
from jupyter_llmchat.core.tokens import get_encoding
from jupyter_llmchat.server import LoopbackServer

KEY = "sk-embeddings-test-key-0123456789"


def embeddings(server: LoopbackServer, max_retries: int = 0) -> EmbeddingClient:
    return EmbeddingClient(ChatClient(base_url=server.base_url, api_key=KEY, max_retries=max_retries))


def tokens(texts: list[str]) -> int:
    encoding = get_encoding("cl100k_base")
    assert encoding is not None
    return sum(len(encoding.encode(text)) for text in texts)


# -- moved from tests/core/test_embedding.py ------------------------------------------------------
def test_a_rate_limit_is_retried(loopback):
    loopback.queue(fault="rate_limit", retry_after=0)
    vectors = make_bot(loopback, max_retries=1).embed(TEXTS[:2], progress=False)
    assert np.array_equal(vectors, expected(TEXTS[:2]))
    assert [r.status for r in embedding_logs(loopback)] == [429, 200]


# -- one request ------------------------------------------------------------------------------------
def test_one_request_gives_float32_rows_in_the_texts_order_with_its_tokens_and_model(
        loopback: LoopbackServer) -> None:
    texts = ["zebra", "apple", "a longer text, with punctuation."]
    answer = embeddings(loopback).embed(MODEL, texts)
    assert isinstance(answer, EmbeddedBatch)
    assert answer.vectors.dtype == np.float32 and answer.vectors.shape == (3, 1536)
    assert np.array_equal(answer.vectors, expected(texts))
    assert (answer.prompt_tokens, answer.model) == (tokens(texts), MODEL)
    (logged,) = embedding_logs(loopback)
    assert (logged.method, logged.path, logged.status, logged.outcome) == ("POST", "/v1/embeddings", 200, "complete")
    assert logged.body == {"model": MODEL, "input": texts, "encoding_format": "base64"}  # no dimensions: none given
    assert logged.headers["authorization"] == "Bearer ***"  # the key was sent (the log masks it)


def test_dimensions_are_sent_when_given_and_shorten_the_vectors(loopback: LoopbackServer) -> None:
    answer = embeddings(loopback).embed(MODEL, ["apple", "pear"], dimensions=8)
    assert answer.vectors.shape == (2, 8)
    assert np.array_equal(answer.vectors, expected(["apple", "pear"], 8))
    assert embedding_logs(loopback)[0].body == {"model": MODEL, "input": ["apple", "pear"], "dimensions": 8,
                                                "encoding_format": "base64"}


def test_a_ready_sdk_client_is_used_as_it_is(loopback: LoopbackServer) -> None:
    sdk = OpenAI(base_url=loopback.base_url, api_key=KEY, max_retries=0)
    answer = EmbeddingClient(ChatClient(client=sdk)).embed(MODEL, ["apple"])
    assert np.array_equal(answer.vectors, expected(["apple"]))
    assert [r.path for r in loopback.requests] == ["/v1/embeddings"]


def test_an_azure_deployment_is_asked_at_its_own_path(loopback: LoopbackServer) -> None:
    client = ChatClient(azure_endpoint=loopback.root_url, api_key="azure-key", api_version="2024-10-21",
                        azure_deployment=MODEL, max_retries=0)
    answer = EmbeddingClient(client).embed(MODEL, ["apple"])
    assert np.array_equal(answer.vectors, expected(["apple"]))
    (logged,) = embedding_logs(loopback)
    assert (logged.path, logged.query, logged.status) == (f"/openai/deployments/{MODEL}/embeddings",
                                                          "api-version=2024-10-21", 200)


def test_a_vector_is_read_from_base64_or_from_a_list_of_numbers() -> None:
    values = np.array([0.5, -1.25, 3.0], dtype="<f4")
    from_base64 = _vector(base64.b64encode(values.tobytes()).decode())
    from_list = _vector([0.5, -1.25, 3.0])  # a server that ignores encoding_format="base64"
    assert from_base64.dtype == from_list.dtype == np.dtype("<f4")
    assert from_base64.tolist() == from_list.tolist() == [0.5, -1.25, 3.0]


# -- the endpoint refusing or failing -------------------------------------------------------------
@pytest.mark.parametrize(("model", "texts", "options", "kind", "message"), [
    (MODEL, [], {}, BadRequestError,
     "request rejected (400): '$.input' is invalid. Please check the API reference: "
     "https://platform.openai.com/docs/api-reference."),
    (MODEL, ["ok", ""], {}, BadRequestError,
     "request rejected (400): '$.input[1]' is invalid. Please check the API reference: "
     "https://platform.openai.com/docs/api-reference."),
    ("text-embedding-ada-002", ["x"], {"dimensions": 8}, BadRequestError,
     "request rejected (400): This model does not support specifying dimensions."),
    (MODEL, ["x"], {"dimensions": 5000}, BadRequestError,
     "request rejected (400, invalid_value): Invalid value for 'dimensions' = 5000. Must be between 1 and 1536."),
])
def test_a_request_the_endpoint_rejects_is_one_line(loopback: LoopbackServer, model: str, texts: list[str],
                                                    options: dict, kind: type, message: str) -> None:
    with pytest.raises(kind) as caught:
        embeddings(loopback).embed(model, texts, **options)
    assert str(caught.value) == message and caught.value.status == 400  # type: ignore[attr-defined]
    assert [r.status for r in embedding_logs(loopback)] == [400]  # a 400 is not asked again


def test_an_unknown_model_names_the_fix(loopback: LoopbackServer) -> None:
    with pytest.raises(ModelNotFoundError) as caught:
        embeddings(loopback).embed("text-embedding-9", ["x"])
    assert str(caught.value) == (f"model 'text-embedding-9' is not available at {loopback.base_url} (404): check the "
                                 "name (Chatbot.client.list_models() lists what it serves) or the Azure deployment")


def test_a_rejected_key_is_one_line_without_the_key() -> None:
    with LoopbackServer(api_key="the-right-key-0123456789") as server:
        client = embeddings(server)
        with pytest.raises(AuthenticationError) as caught:
            client.embed(MODEL, ["x"])
        assert str(caught.value) == (
            f"authentication failed (401) at {server.base_url}: the API key was rejected or lacks access; set "
            "OPENAI_API_KEY, pass api_key=, or point OPENAI_BASE_URL (base_url=) at a local OpenAI-compatible server")
        assert KEY not in repr(caught.value) and [r.status for r in embedding_logs(server)] == [401]


def test_server_errors_are_retried_then_one_line_counting_the_retries(loopback: LoopbackServer) -> None:
    loopback.queue(fault="server_error", times=3)
    with pytest.raises(ServerError) as caught:
        embeddings(loopback, max_retries=2).embed(MODEL, ["x"])
    assert str(caught.value) == (f"server error (500) after 2 retries at {loopback.base_url}: The server had an "
                                 "error while processing your request. Sorry about that!; try again later")
    assert [r.status for r in embedding_logs(loopback)] == [500, 500, 500]


def test_a_rate_limit_without_retries_left_is_one_line(loopback: LoopbackServer) -> None:
    loopback.queue(fault="rate_limit", retry_after=0)
    with pytest.raises(RateLimitError) as caught:
        embeddings(loopback).embed(MODEL, ["x"])
    assert str(caught.value) == f"rate limited (429) at {loopback.base_url}: wait and ask again, or lower the request rate"


def test_an_endpoint_without_the_embeddings_api_names_the_url_that_was_asked(loopback: LoopbackServer) -> None:
    client = EmbeddingClient(ChatClient(base_url=loopback.root_url + "/no-api", max_retries=0))
    with pytest.raises(ChatError) as caught:
        client.embed(MODEL, ["x"])
    assert [r.path for r in embedding_logs(loopback)] == ["/no-api/embeddings"]
    assert str(caught.value) == (f"nothing answers at {loopback.root_url}/no-api/embeddings (404: Invalid URL "
                                 "(POST /no-api/embeddings)): check base_url= (OpenAI-compatible servers usually serve "
                                 "under /v1, e.g. http://localhost:11434/v1) or the Azure deployment")


# -- cut ----------------------------------------------------------------------------------------------
def test_cut_ends_the_request_in_flight_and_refuses_the_next(loopback: LoopbackServer) -> None:
    loopback.queue(delay=60.0)  # the request waits for its headers until it is cut
    client = embeddings(loopback)
    failed: list[BaseException] = []

    def embed() -> None:
        try:
            client.embed(MODEL, ["apple"])
        except ChatError as error:
            failed.append(error)

    asking = threading.Thread(target=embed)
    asking.start()
    wait_for(lambda: len(embedding_logs(loopback)) == 1)
    client.cut()
    asking.join(timeout=30)
    assert not asking.is_alive()
    assert [(type(e), str(e)) for e in failed] == [(ChatError, "the embeddings were stopped: this request was cut")]
    wait_for(lambda: embedding_logs(loopback)[0].outcome == "client_closed")
    assert embedding_logs(loopback)[0].outcome == "client_closed"  # the server saw the connection shut
    with pytest.raises(ChatError) as caught:
        client.embed(MODEL, ["pear"])
    assert str(caught.value) == "the embeddings were stopped: this request is not sent"
    assert len(embedding_logs(loopback)) == 1  # nothing more was sent


def test_cut_with_nothing_in_flight_only_refuses_what_comes_after(loopback: LoopbackServer) -> None:
    chat = ChatClient(base_url=loopback.base_url, api_key=KEY, max_retries=0)
    first, second = EmbeddingClient(chat), EmbeddingClient(chat)
    first.cut()
    with pytest.raises(ChatError) as caught:
        first.embed(MODEL, ["x"])
    assert str(caught.value) == "the embeddings were stopped: this request is not sent"
    assert embedding_logs(loopback) == []
    assert np.array_equal(second.embed(MODEL, ["x"]).vectors, expected(["x"]))  # another client is not cut
