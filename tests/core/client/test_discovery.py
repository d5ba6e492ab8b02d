"""Asking local servers about a model, through the real SDK against the loopback server imitating
Ollama, llama.cpp, vLLM and LM Studio: what each says, where it is said, once per client; a server
that does not answer is said so; the server's tokenizer counts, and is given up when it stops."""

from __future__ import annotations

import socket

import pytest

from jupyter_llmchat.core import errors
from jupyter_llmchat.core.client import ChatClient
from jupyter_llmchat.core.client.discovery import ServedModel, cached, discover, served_models
from jupyter_llmchat.server import LoopbackServer
from jupyter_llmchat.server.local_servers import JINJA_TEMPLATES, LocalModel, text_tokens


def client_of(server: LoopbackServer) -> ChatClient:
    return ChatClient(base_url=server.base_url, api_key="not-needed", max_retries=0)


def test_ollama_says_num_ctx_template_and_capabilities():
    model = LocalModel("gemma3:4b", n_ctx=8192, template="gemma", vision=True)
    with LoopbackServer(imitate="ollama", local_models=[model]) as server:
        facts = discover(client_of(server), "ollama", "gemma3:4b")
        root = server.root_url
        asked = [(r.method, r.path, r.body) for r in server.requests]
    assert asked == [("POST", "/api/show", {"model": "gemma3:4b", "name": "gemma3:4b"}), ("GET", "/api/ps", None)]
    assert (facts.answered, facts.window, facts.window_source) == (True, 8192, f"Ollama /api/show num_ctx at {root}")
    assert (facts.vision, facts.vision_source) == (True, "Ollama /api/show capabilities")
    assert "<start_of_turn>" in facts.template and facts.count_text is None


def test_an_ollama_without_capabilities_does_not_say_whether_it_sees():
    model = LocalModel("llava", n_ctx=4096, capabilities=False)
    with LoopbackServer(imitate="ollama", local_models=[model]) as server:
        facts = discover(client_of(server), "ollama", "llava")
    assert facts.vision is None
    assert facts.vision_source == "the server does not say it takes images (this Ollama reports no capabilities)"


def test_an_unknown_ollama_model_is_said_so():
    with LoopbackServer(imitate="ollama", local_models=[LocalModel("llama3.2", n_ctx=4096)]) as server:
        facts = discover(client_of(server), "ollama", "llama3.3")
        root = server.root_url
    assert not facts.answered and facts.window is None
    assert facts.window_source == f"Ollama at {root} did not answer (/api/show answered 404)"


def test_llamacpp_says_n_ctx_modalities_template_and_counts_with_its_tokenizer():
    model = LocalModel("llama-3.1-8b", n_ctx=2048, template="llama3.1")
    with LoopbackServer(imitate="llamacpp", local_models=[model]) as server:
        facts = discover(client_of(server), "llamacpp", "llama-3.1-8b")
        text = "Ein Überraschungsei 数据 and ```code```"
        assert facts.count_text is not None and facts.count_text(text) == len(text_tokens(text))
        facts.count_text(text)  # cached: not asked again
        bodies = [r.body for r in server.requests if r.path == "/tokenize"]
    assert (facts.window, facts.vision, facts.vision_source) == (2048, False, "llama.cpp /props modalities")
    assert facts.template == JINJA_TEMPLATES["llama3.1"] and facts.counted_by == "llama.cpp /tokenize"
    assert bodies == [{"content": "Hello, world", "add_special": False}, {"content": text, "add_special": False}]


def test_vllm_says_max_model_len_and_counts_with_its_tokenizer():
    model = LocalModel("Qwen/Qwen2.5-7B-Instruct", n_ctx=32768)
    with LoopbackServer(imitate="vllm", local_models=[model], models=["gpt-4o"]) as server:
        facts = discover(client_of(server), "vllm", model.name)
        assert facts.count_text is not None and facts.count_text("hello there") == len(text_tokens("hello there"))
        missing = discover(client_of(server), "vllm", "other-model")
        root = server.root_url
    assert (facts.window, facts.window_source) == (32768, f"vLLM /v1/models max_model_len at {root}")
    assert facts.vision is None and facts.template is None and facts.counted_by == "vLLM /tokenize"
    assert missing.window is None
    assert missing.window_source == f"vLLM at {root} serves no model 'other-model' (it serves Qwen/Qwen2.5-7B-Instruct, gpt-4o)"


def test_lmstudio_says_the_loaded_window_and_the_model_type():
    model = LocalModel("qwen2-vl-7b-instruct", n_ctx=8192, vision=True, loaded=True, trained_ctx=32768)
    with LoopbackServer(imitate="lmstudio", local_models=[model]) as server:
        facts = discover(client_of(server), "lmstudio", model.name)
    assert (facts.window, facts.vision, facts.vision_source) == (8192, True, "LM Studio /api/v0/models type 'vlm'")


def test_a_server_that_does_not_answer_is_said_so():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = ChatClient(base_url=f"http://127.0.0.1:{port}/v1", api_key="x", max_retries=0)
    facts = discover(client, "llamacpp", "m")
    assert not facts.answered and facts.window is None and facts.vision is None
    assert facts.window_source.startswith(f"llama.cpp at http://127.0.0.1:{port} did not answer (")
    assert facts.vision_source == f"the server does not say it takes images ({facts.window_source})"


def test_facts_are_asked_once_per_client():
    with LoopbackServer(imitate="lmstudio", local_models=[LocalModel("m", n_ctx=4096, loaded=True)]) as server:
        first, second = client_of(server), client_of(server)
        assert cached(first, "lmstudio", "m") is None
        facts = discover(first, "lmstudio", "m")
        assert discover(first, "lmstudio", "m") is facts and cached(first, "lmstudio", "m") is facts
        assert len(server.requests) == 1
        discover(second, "lmstudio", "m")  # another client asks for itself
        discover(first, "lmstudio", "m", refresh=True)
        assert len(server.requests) == 3


def test_the_servers_tokenizer_is_given_up_when_the_server_stops():
    server = LoopbackServer(imitate="llamacpp", local_models=[LocalModel("m", n_ctx=4096)]).start()
    facts = discover(client_of(server), "llamacpp", "m")
    assert facts.count_text is not None and facts.count_text("one") == 1
    server.stop()
    with pytest.raises(Exception, match="did not|refused|connect"):  # TokenCounter then counts by itself
        facts.count_text("two words")
    with pytest.raises(Exception, match="^the server stopped answering$"):  # given up: not asked again
        facts.count_text("three more words")


@pytest.mark.parametrize(("kind", "expected"), [
    ("ollama", [ServedModel("gemma3:4b"), ServedModel("qwen2.5:7b")]),
    ("lmstudio", [ServedModel("gemma3:4b", 4096, True), ServedModel("qwen2.5:7b", 8192, False)]),
])
def test_served_models(kind, expected):
    models = [LocalModel("qwen2.5:7b", n_ctx=8192), LocalModel("gemma3:4b", n_ctx=4096, template="gemma", vision=True)]
    with LoopbackServer(imitate=kind, local_models=models, models=[]) as server:
        assert served_models(client_of(server), kind) == expected


def test_vllm_serves_models_with_their_windows():
    with LoopbackServer(imitate="vllm", local_models=[LocalModel("m", n_ctx=4096)], models=[]) as server:
        assert served_models(client_of(server), "vllm") == [ServedModel("m", 4096)]


def test_a_server_that_does_not_list_models_is_one_line():
    with LoopbackServer(imitate="ollama", local_models=[], models=[], model_list=False) as server:
        root = server.root_url
        with pytest.raises(errors.EndpointConnectionError) as raised:
            served_models(client_of(server), "lmstudio")
    assert str(raised.value) == f"LM Studio at {root} did not answer (/api/v0/models answered 404)"
