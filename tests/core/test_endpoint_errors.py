"""Error responses read the same way whoever sent them: OpenAI, LiteLLM, llama.cpp, vLLM, Ollama.
Bodies here are the servers' own (the loopback server sends them over HTTP in test_client.py)."""

from __future__ import annotations

import pytest

from jupyter_llmchat.core import errors
from jupyter_llmchat.core.endpoint_errors import context_window_said, explain, read_error

WHERE = "http://127.0.0.1:8080/v1"


def said(status, body, headers=None, model="llama3"):
    return explain(read_error(status, body, headers), where=WHERE, model=model, tried=" after 2 retries")


def test_the_error_object_is_found_wherever_the_server_puts_it():
    openai_style = read_error(400, {"error": {"message": "m", "type": "t", "param": "p", "code": "c"}})
    assert (openai_style.message, openai_style.type, openai_style.param, openai_style.code) == ("m", "t", "p", "c")
    assert read_error(400, {"object": "error", "message": "bare", "code": 400}).message == "bare"  # vLLM
    assert read_error(404, {"error": "model 'x' not found"}).message == "model 'x' not found"  # a string error
    assert read_error(422, {"detail": "field required"}).message == "field required"  # FastAPI servers
    assert read_error(502, "<html>Bad gateway</html>").message == "<html>Bad gateway</html>"
    assert read_error(500, None, text="plain\ntext").message == "plain text"


def test_a_code_that_only_repeats_the_status_is_dropped_and_none_strings_are_none():
    litellm = read_error(400, {"error": {"message": "m", "type": "None", "param": "None", "code": "400"}})
    assert (litellm.code, litellm.type, litellm.param) == (None, None, None)
    assert read_error(400, {"error": {"message": "m", "code": 400}}).code is None
    assert read_error(429, {"error": {"message": "m", "code": "rate_limit_exceeded"}}).code == "rate_limit_exceeded"


@pytest.mark.parametrize("status, body, window", [
    (400, {"error": {"message": "This model's maximum context length is 128000 tokens. However, your messages "
                                "resulted in 130000 tokens.", "code": "context_length_exceeded"}}, 128000),
    (400, {"error": {"message": "litellm.ContextWindowExceededError: litellm.BadRequestError: OpenAIException - "
                                "This model's maximum context length is 8192 tokens.", "code": "400"}}, 8192),
    (400, {"error": {"code": 400, "message": "the request exceeds the available context size, try increasing it",
                     "type": "exceed_context_size_error", "n_prompt_tokens": 5000, "n_ctx": 4096}}, 4096),
    (400, {"object": "error", "message": "This model's maximum context length is 2,048 tokens. However, you "
                                         "requested 2100 tokens.", "type": "BadRequestError", "code": 400}, 2048),
    (500, {"error": {"message": "the request exceeds the available context size", "code": 500}}, None),
    (400, {"error": {"message": "prompt is too long: 210000 tokens > 200000 maximum"}}, None),
])
def test_context_errors_are_recognised_by_code_type_or_words(status, body, window):
    error = said(status, body)
    assert isinstance(error, errors.ContextLengthError) and error.status == status
    assert str(error).startswith("the endpoint says the prompt exceeds the model's context window (")
    assert context_window_said(read_error(status, body)) == window
    fix = (f"set context_window={window} (the window the server names) so trimming keeps the prompt inside it, "
           "or lower max_tokens") if window else "set context_window= to the model's real window so trimming uses it"
    assert str(error).endswith(f"); {fix}")
    assert ", 400" not in str(error) and "(400, 400)" not in str(error)


def test_the_litellm_context_error_no_longer_reads_request_rejected_400_400():
    body = {"error": {"message": "litellm.ContextWindowExceededError: litellm.BadRequestError: "
                                 "ContextWindowExceededError: OpenAIException - This model's maximum context length "
                                 "is 8192 tokens. However, your messages resulted in 9000 tokens.",
                      "type": None, "param": None, "code": "400"}}
    assert str(said(400, body)) == (
        "the endpoint says the prompt exceeds the model's context window (litellm.ContextWindowExceededError: "
        "litellm.BadRequestError: ContextWindowExceededError: OpenAIException - This model's maximum context length "
        "is 8192 tokens. However, your messages resulted in 9000 tokens.); set context_window=8192 (the window the "
        "server names) so trimming keeps the prompt inside it, or lower max_tokens")


@pytest.mark.parametrize("status, body, expected", [
    (404, {"error": {"message": 'model "llama3" not found, try pulling it first', "type": "api_error"}},
     f"model 'llama3' is not available at {WHERE} (404: model \"llama3\" not found, try pulling it first); pull it "
     "on the server first (ollama pull llama3): check the name (Chatbot.client.list_models() lists what it serves) "
     "or the Azure deployment"),
    (404, {"object": "error", "message": "The model `llama3` does not exist.", "type": "NotFoundError", "code": 404},
     f"model 'llama3' is not available at {WHERE} (404: The model `llama3` does not exist.): check the name "
     "(Chatbot.client.list_models() lists what it serves) or the Azure deployment"),
    (404, {"error": {"message": "The model `llama3` does not exist or you do not have access to it.",
                     "code": "model_not_found"}},
     f"model 'llama3' is not available at {WHERE} (404): check the name (Chatbot.client.list_models() lists what "
     "it serves) or the Azure deployment"),
    (400, {"error": {"message": "400: {'error': 'Invalid model name passed in model=llama3. Call `/v1/models` to "
                                "view available models for your key.'}", "type": "None", "code": "400"}},
     f"model 'llama3' is not available at {WHERE} (400: 400: {{'error': 'Invalid model name passed in model=llama3. "
     "Call `/v1/models` to view available models for your key.'}): check the name (Chatbot.client.list_models() "
     "lists what it serves) or the Azure deployment"),
    (404, "404 page not found",
     f"nothing answers at {WHERE}/chat/completions (404: 404 page not found): check base_url= (OpenAI-compatible "
     "servers usually serve under /v1, e.g. http://localhost:11434/v1) or the Azure deployment"),
])
def test_a_missing_model_and_a_wrong_address_are_told_apart(status, body, expected):
    error = said(status, body)
    assert isinstance(error, errors.ModelNotFoundError) and str(error) == expected


@pytest.mark.parametrize("body", [
    {"error": {"message": "image input is not supported - hint: if this is unexpected, you may need to provide "
                          "the mmproj", "type": "invalid_request_error", "code": 400}},  # llama.cpp without mmproj
    {"object": "error", "message": "llama3 is not a multimodal model", "type": "BadRequestError", "code": 400},
    {"error": {"message": "Invalid content type. image_url is only supported by certain models.",
               "param": "messages.[0].content.[1].type", "code": None}},  # OpenAI
])
def test_a_model_without_vision_is_named_whatever_the_wording(body):
    error = said(400, body)
    assert isinstance(error, errors.BadRequestError)
    assert str(error).startswith(f"model 'llama3' at {WHERE} does not take images (400: ")
    assert str(error).endswith("); ask a vision model (e.g. model=\"gpt-4o-mini\") or leave the images out")


def test_status_errors_say_the_status_once():
    assert str(said(500, {"error": {"message": "litellm.APIConnectionError: boom", "code": "500"}})) == (
        f"server error (500) after 2 retries at {WHERE}: litellm.APIConnectionError: boom; try again later")
    assert str(said(422, {"error": {"message": "bad field", "code": "invalid_value"}})) == (
        "request rejected (422, invalid_value): bad field")
    assert str(said(400, {"error": {"message": "bad", "code": "400"}})) == "request rejected (400): bad"
    assert str(said(413, "Request Entity Too Large")) == (
        f"the request is too large for {WHERE} (413: Request Entity Too Large): send fewer or smaller images, or a "
        "shorter prompt")
    limited = said(429, {"error": {"message": "slow down"}}, {"retry-after-ms": "1500"})
    assert str(limited) == (f"rate limited (429) after 2 retries at {WHERE}; the server asks to wait 1.5 s: wait and "
                            "ask again, or lower the request rate")
    assert str(said(401, {"error": {"message": "no"}})).startswith(f"authentication failed (401) at {WHERE}: ")
