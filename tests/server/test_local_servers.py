"""The loopback server imitating local servers: their model endpoints answer as the real ones do,
prompts are counted with the real chat template, a prompt over the window gets the server's own
error, an image for a model without vision is refused. Plain HTTP (urllib) and the real SDK."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import openai
import pytest

from jupyter_llmchat.server import LoopbackServer
from jupyter_llmchat.server.local_servers import (
    KNOWLEDGE_DATE,
    LocalModel,
    model_card_extra,
    prompt_tokens,
    render,
    text_tokens,
    vocabulary,
)

MESSAGES = [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": " Why? "}]


def call(server: LoopbackServer, method: str, path: str, body: dict | None = None) -> tuple[int, object]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(server.root_url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_templates_render_as_the_real_ones():
    assert render("chatml", MESSAGES)[0] == (
        "<|im_start|>system\nBe terse.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello!"
        "<|im_end|>\n<|im_start|>user\n Why? <|im_end|>\n<|im_start|>assistant\n")
    assert render("llama3.1", MESSAGES)[0] == (
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n" + KNOWLEDGE_DATE + "Be terse.<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
        "Hello!<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nWhy?<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n")
    assert render("llama3", MESSAGES[1:2])[0] == (
        "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n")
    assert render("gemma", MESSAGES)[0] == (
        "<bos><start_of_turn>user\nBe terse.\n\nHi<end_of_turn>\n<start_of_turn>model\nHello!<end_of_turn>\n"
        "<start_of_turn>user\nWhy?<end_of_turn>\n<start_of_turn>model\n")


def test_special_tokens_count_one_each():
    assert len(vocabulary().encode("<|im_start|>user\nHi<|im_end|>", allowed_special={"<|im_start|>", "<|im_end|>"})) == 5
    assert prompt_tokens(LocalModel("m", n_ctx=10, template="chatml"), MESSAGES[1:2]) == 5 + 1 + 3
    assert text_tokens("<|im_start|>") == vocabulary().encode("<|im_start|>", disallowed_special=())  # text


def test_ollama_endpoints():
    models = [LocalModel("llama3.2", n_ctx=8192, template="llama3.1", loaded=True, trained_ctx=131072),
              LocalModel("llava", n_ctx=4096, vision=True, num_ctx_param=False)]
    with LoopbackServer(imitate="ollama", local_models=models, models=[]) as server:
        status, show = call(server, "POST", "/api/show", {"model": "llama3.2:latest"})
        assert status == 200 and show["parameters"] == 'num_ctx 8192\nstop "<|eot_id|>"'
        assert show["model_info"]["llama.context_length"] == 131072 and show["capabilities"] == ["completion"]
        assert "Cutting Knowledge Date" in show["template"]
        assert call(server, "POST", "/api/show", {"name": "llava"})[1]["capabilities"] == ["completion", "vision"]
        assert call(server, "POST", "/api/show", {"model": "nope"}) == (404, {"error": "model 'nope' not found"})
        assert [m["name"] for m in call(server, "GET", "/api/tags")[1]["models"]] == ["llama3.2", "llava"]
        assert [(m["name"], m["context_length"]) for m in call(server, "GET", "/api/ps")[1]["models"]] == [
            ("llama3.2", 8192)]


def test_llamacpp_endpoints():
    model = LocalModel("qwen", n_ctx=4096, template="chatml", vision=True, trained_ctx=32768)
    with LoopbackServer(imitate="llamacpp", local_models=[model], models=[]) as server:
        status, props = call(server, "GET", "/props")
        assert status == 200 and props["default_generation_settings"]["n_ctx"] == 4096
        assert props["modalities"] == {"vision": True} and "<|im_start|>" in props["chat_template"]
        assert call(server, "POST", "/tokenize", {"content": "Hello world"})[1] == {"tokens": text_tokens("Hello world")}
        assert call(server, "POST", "/tokenize", {})[0] == 400
        assert call(server, "POST", "/apply-template", {"messages": MESSAGES[1:2]})[1] == {
            "prompt": "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"}
        [card] = call(server, "GET", "/v1/models")[1]["data"]
        assert card["id"] == "qwen" and card["meta"]["n_ctx_train"] == 32768


def test_vllm_endpoints():
    model = LocalModel("org/model", n_ctx=16384)
    with LoopbackServer(imitate="vllm", local_models=[model], models=[]) as server:
        [card] = call(server, "GET", "/v1/models")[1]["data"]
        assert (card["id"], card["max_model_len"], card["owned_by"]) == ("org/model", 16384, "vllm")
        status, counted = call(server, "POST", "/tokenize", {"model": "org/model", "prompt": "Hello world"})
        assert status == 200 and counted["count"] == 2 and counted["max_model_len"] == 16384
        status, counted = call(server, "POST", "/tokenize", {"model": "org/model", "messages": MESSAGES[1:2]})
        assert counted["count"] == 9
        assert call(server, "POST", "/tokenize", {"model": "other", "prompt": "x"})[0] == 404


def test_lmstudio_endpoints():
    models = [LocalModel("qwen2-vl-7b", n_ctx=8192, vision=True, loaded=True, trained_ctx=32768),
              LocalModel("llama-3.1-8b", n_ctx=4096, template="llama3.1")]
    with LoopbackServer(imitate="lmstudio", local_models=models, models=[]) as server:
        listing = call(server, "GET", "/api/v0/models")[1]["data"]
        assert [(m["id"], m["type"], m["state"]) for m in listing] == [
            ("qwen2-vl-7b", "vlm", "loaded"), ("llama-3.1-8b", "llm", "not-loaded")]
        status, card = call(server, "GET", "/api/v0/models/qwen2-vl-7b")
        assert (card["loaded_context_length"], card["max_context_length"]) == (8192, 32768)
        assert "loaded_context_length" not in call(server, "GET", "/api/v0/models/llama-3.1-8b")[1]
        assert call(server, "GET", "/api/v0/models/none")[0] == 404


def test_the_plain_loopback_server_has_none_of_these_routes(loopback):
    assert call(loopback, "GET", "/props")[0] == 404
    assert model_card_extra(None, "gpt-4o") == {}


def long_prompt(words: int) -> list[dict[str, str]]:
    return [{"role": "user", "content": "word " * words}]


@pytest.mark.parametrize(("kind", "message"), [
    ("llamacpp", "the request exceeds the available context size, try increasing it"),
    ("vllm", "This model's maximum context length is 64 tokens. However, you requested 71 tokens (71 in the "
             "messages, 0 in the completion). Please reduce the length of the messages or completion."),
    ("ollama", "the prompt (71 tokens) exceeds the context length of m (64): a real ollama server would have cut "
               "it silently"),
])
def test_a_prompt_over_the_window_gets_the_servers_error(kind, message):
    with LoopbackServer(imitate=kind, local_models=[LocalModel("m", n_ctx=64)]) as server:
        sdk = openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0)
        assert prompt_tokens(LocalModel("m", n_ctx=64), long_prompt(62)) == 71
        with pytest.raises(openai.BadRequestError) as raised:
            sdk.chat.completions.create(model="m", messages=long_prompt(62))
        fits = sdk.chat.completions.create(model="m", messages=long_prompt(55))
    assert raised.value.body["message"] == message
    assert fits.usage.prompt_tokens == 64


def test_vllm_makes_room_for_max_tokens():
    with LoopbackServer(imitate="vllm", local_models=[LocalModel("m", n_ctx=64)]) as server:
        sdk = openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0)
        with pytest.raises(openai.BadRequestError, match=r"you requested 74 tokens \(64 in the messages, 10 in"):
            sdk.chat.completions.create(model="m", messages=long_prompt(55), max_tokens=10)


def test_an_image_for_a_model_without_vision_is_refused():
    image = {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}
    with LoopbackServer(imitate="llamacpp", local_models=[LocalModel("m", n_ctx=4096)]) as server:
        sdk = openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0)
        with pytest.raises(openai.InternalServerError, match="image input is not supported"):
            sdk.chat.completions.create(model="m", messages=[{"role": "user", "content": [image]}])


def test_local_models_are_checked():
    with pytest.raises(ValueError, match="template must be one of"):
        LocalModel("m", n_ctx=10, template="alpaca")
    with pytest.raises(ValueError, match="imitate must be one of"):
        LoopbackServer(imitate="tgi", local_models=[])
