"""The loopback server's /v1/embeddings through the real openai SDK: deterministic unit vectors,
dimensions as text-embedding-3 shortens them, base64 and float encodings, usage counted exactly,
OpenAI's limits as 400s in its wording, Azure's route, scripted faults, the request log."""

from __future__ import annotations

import base64

import numpy as np
import openai
import pytest
from openai import AzureOpenAI, OpenAI

from jupyter_llmchat.core.tokens import get_encoding
from jupyter_llmchat.server.embeddings import MAX_INPUTS, embedding_vector

MODEL = "text-embedding-3-small"


def sdk(server, **kwargs) -> OpenAI:
    return OpenAI(base_url=server.base_url, api_key="sk-test", max_retries=kwargs.pop("max_retries", 0), **kwargs)


def floats(client: OpenAI, texts, **kwargs) -> np.ndarray:
    response = client.embeddings.create(model=kwargs.pop("model", MODEL), input=texts, encoding_format="float",
                                        **kwargs)
    return np.array([item.embedding for item in response.data])


def test_vectors_are_deterministic_distinct_and_of_length_one(loopback):
    client = sdk(loopback)
    first = floats(client, ["apple", "pear", "apple"])
    assert first.shape == (3, 1536)
    assert np.array_equal(first[0], first[2]) and not np.allclose(first[0], first[1])
    assert np.allclose(np.linalg.norm(first, axis=1), 1.0, atol=1e-6)
    assert np.array_equal(floats(client, "apple")[0], first[0])  # a single string, asked again
    assert floats(client, ["apple"], model="text-embedding-3-large").shape == (1, 3072)


def test_dimensions_keep_the_first_components_normalized_again(loopback):
    full = floats(sdk(loopback), ["apple"])[0]
    short = floats(sdk(loopback), ["apple"], dimensions=8)[0]
    assert short.shape == (8,)
    assert np.allclose(short, full[:8] / np.linalg.norm(full[:8]), atol=1e-6)


def test_base64_carries_the_same_float32_values(loopback):
    raw = sdk(loopback).embeddings.create(model=MODEL, input=["apple"], encoding_format="base64").data[0].embedding
    assert isinstance(raw, str)
    decoded = np.frombuffer(base64.b64decode(raw), dtype="<f4")
    assert np.array_equal(decoded, embedding_vector(MODEL, "apple"))
    # the SDK's default (base64 asked, decoded by the SDK) gives the same numbers
    default = sdk(loopback).embeddings.create(model=MODEL, input=["apple"]).data[0].embedding
    assert np.array_equal(np.array(default, dtype="<f4"), decoded)


def test_usage_counts_every_inputs_tokens(loopback):
    texts = ["Hello, world!", "naïve café ☕", "a " * 100]
    response = sdk(loopback).embeddings.create(model=MODEL, input=texts)
    expected = sum(len(get_encoding("cl100k_base").encode(t)) for t in texts)
    assert (response.usage.prompt_tokens, response.usage.total_tokens) == (expected, expected)
    assert [item.index for item in response.data] == [0, 1, 2]
    (logged,) = loopback.requests
    assert (logged.path, logged.status, logged.outcome) == ("/v1/embeddings", 200, "complete")
    assert logged.body["input"] == texts


@pytest.mark.parametrize(("kwargs", "message", "param"), [
    ({"input": []}, "'$.input' is invalid. Please check the API reference: https://platform.openai.com/docs/"
                    "api-reference.", "input"),
    ({"input": ["ok", ""]}, "'$.input[1]' is invalid. Please check the API reference: https://platform.openai.com/"
                            "docs/api-reference.", "input[1]"),
    ({"input": ["x"] * (MAX_INPUTS + 1)}, f"'$.input' is invalid: at most {MAX_INPUTS} inputs per request, got "
                                          f"{MAX_INPUTS + 1}.", "input"),
    ({"input": ["hello" + " hello" * 8199]}, "This model's maximum context length is 8192 tokens, however you requested 8200 "
                                   "tokens (8200 in your prompt; 0 for the completion). Please reduce your prompt; "
                                   "or completion length.", "input[0]"),
    ({"input": ["hello" + " hello" * 7999] * 38}, "Requested 304000 tokens, max 300000 tokens per request", "input"),
    ({"input": ["x"], "dimensions": 4000}, "Invalid value for 'dimensions' = 4000. Must be between 1 and 1536.",
     "dimensions"),
    ({"input": ["x"], "dimensions": 8, "model": "text-embedding-ada-002"},
     "This model does not support specifying dimensions.", "dimensions"),
])
def test_what_openai_refuses_is_a_400_in_its_wording(loopback, kwargs, message, param):
    with pytest.raises(openai.BadRequestError) as caught:
        sdk(loopback).embeddings.create(model=kwargs.pop("model", MODEL), **kwargs)
    assert caught.value.body["message"] == message and caught.value.body["param"] == param


@pytest.mark.parametrize("model", ["gpt-4o-mini", "text-embedding-4-huge"])
def test_a_model_that_does_not_embed_is_404(loopback, model):
    with pytest.raises(openai.NotFoundError) as caught:
        sdk(loopback).embeddings.create(model=model, input=["x"])
    assert caught.value.code == "model_not_found"


def test_azure_deployments_embed_too(loopback):
    client = AzureOpenAI(azure_endpoint=loopback.root_url, api_key="k", api_version="2024-10-21",
                         azure_deployment=MODEL, max_retries=0)
    response = client.embeddings.create(model=MODEL, input=["apple"], encoding_format="float")
    assert np.allclose(response.data[0].embedding, embedding_vector(MODEL, "apple"), atol=1e-7)
    assert loopback.requests[-1].path == f"/openai/deployments/{MODEL}/embeddings"


def test_a_scripted_rate_limit_is_retried_by_the_sdk_and_an_invalid_request_keeps_the_script(loopback):
    loopback.queue(fault="rate_limit", retry_after=0)
    with pytest.raises(openai.BadRequestError):
        sdk(loopback).embeddings.create(model=MODEL, input=[""])
    assert loopback.pending == 1
    vectors = floats(sdk(loopback, max_retries=1), ["apple"])
    assert vectors.shape == (1, 1536)
    assert [(r.status, r.outcome) for r in loopback.requests] == [(400, "error"), (429, "fault:rate_limit"),
                                                                  (200, "complete")]
