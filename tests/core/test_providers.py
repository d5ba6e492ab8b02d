"""Provider prefixes through the real SDK against the loopback server: each provider's request goes to
its base URL (pointed at the loopback server by its override variable) with the key of its variable
and the model name without the prefix; local servers are asked for their window, template, tokenizer
and vision; prompts stay under a strict server window over 50 turns; images are refused before
sending to models known or found not to take them."""

from __future__ import annotations

import os
import socket

import pytest

from jupyter_llmchat.core import errors
from jupyter_llmchat.core.chatbot import Chatbot
from jupyter_llmchat.core.models import PROVIDER_RECORDS, add_model, remove_model
from jupyter_llmchat.core.providers import (
    Routes,
    available_models,
    build_client,
    describe,
    endpoint_rows,
    ollama_url,
    provider,
)
from jupyter_llmchat.core.reply import NullSink
from jupyter_llmchat.server import LoopbackServer
from jupyter_llmchat.server.local_servers import LocalModel

PIXEL = ("data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIA"
         "X8jx0gAAAABJRU5ErkJggg==")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    """No provider variable of this machine leaks in; every test sets what it uses."""
    names = {"OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_API_VERSION", "OLLAMA_CONTEXT_LENGTH"}
    for record in PROVIDER_RECORDS.values():
        names.add(record["base_url_env"])
        names.update(record.get("key_env", ()))
    for name in names:
        monkeypatch.delenv(name, raising=False)


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def chats(server: LoopbackServer) -> list:
    return [r for r in server.requests if r.path.endswith("/chat/completions")]


# -- each prefix's request ------------------------------------------------------------------------
HOSTED = [  # prefix, model as written, model as sent
    ("openai", "gpt-4o", "gpt-4o"),
    ("anthropic", "claude-sonnet-4-5", "claude-sonnet-4-5"),
    ("gemini", "gemini-2.5-flash", "gemini-2.5-flash"),
    ("google", "gemini-2.5-pro", "gemini-2.5-pro"),
    ("mistral", "mistral-small-latest", "mistral-small-latest"),
    ("deepseek", "deepseek-chat", "deepseek-chat"),
    ("groq", "llama-3.1-8b-instant", "llama-3.1-8b-instant"),
    ("openrouter", "anthropic/claude-sonnet-4.5", "anthropic/claude-sonnet-4.5"),
]


@pytest.mark.parametrize(("prefix", "model", "sent"), HOSTED)
def test_each_hosted_prefix_sends_to_its_url_with_its_key(monkeypatch, prefix, model, sent):
    chosen = provider(prefix)
    key = f"key-of-{chosen.name}-0000"
    with LoopbackServer(api_key=key, models=[sent]) as server:  # answers that key only
        monkeypatch.setenv(chosen.url_env, server.base_url)
        monkeypatch.setenv(chosen.key_env[0], key)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-openai-must-not-be-sent")  # (unless the provider is OpenAI)
        if prefix == "openai":
            monkeypatch.setenv("OPENAI_API_KEY", key)
        bot = Chatbot(f"{prefix}:{model}")
        reply = bot.ask("hi", sink=NullSink())
        logged = chats(server)
    assert [(r.method, r.path, r.status, r.body["model"]) for r in logged] == [
        ("POST", "/v1/chat/completions", 200, sent)]
    assert logged[0].headers["authorization"] == "Bearer ***"
    assert reply.status == "complete" and reply.request["provider"] == chosen.name
    assert reply.request["model"] == f"{prefix}:{model}"
    assert reply.cost is not None and reply.cost > 0  # priced from the provider's table


def test_a_second_key_variable_counts_too(monkeypatch):
    with LoopbackServer(api_key="google-key", models=["gemini-2.5-flash"]) as server:
        monkeypatch.setenv("LLMCHAT_GEMINI_BASE_URL", server.base_url)
        monkeypatch.setenv("GOOGLE_API_KEY", "google-key")
        assert Chatbot("gemini:gemini-2.5-flash").ask("hi", sink=NullSink()).status == "complete"


def test_azure_prefix_sends_to_the_deployment(monkeypatch):
    with LoopbackServer(api_key="azure-key") as server:
        monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", server.root_url)
        monkeypatch.setenv("AZURE_OPENAI_API_KEY", "azure-key")
        monkeypatch.setenv("OPENAI_API_VERSION", "2024-10-21")
        reply = Chatbot("azure:gpt-4o").ask("hi", sink=NullSink())
        logged = chats(server)
    assert [(r.path, r.query, r.status) for r in logged] == [
        ("/openai/deployments/gpt-4o/chat/completions", "api-version=2024-10-21", 200)]
    assert logged[0].headers["api-key"] == "***"
    assert reply.request["provider"] == "azure" and reply.cost is not None


LOCAL = [  # prefix, how its base URL is overridden, the imitated server's model, its discovery requests
    ("ollama", "OLLAMA_HOST", LocalModel("llama3.2", n_ctx=8192, template="llama3.1"),
     [("POST", "/api/show"), ("GET", "/api/ps")]),
    ("lmstudio", "LLMCHAT_LMSTUDIO_BASE_URL", LocalModel("qwen2.5-7b-instruct", n_ctx=4096, loaded=True),
     [("GET", "/api/v0/models/qwen2.5-7b-instruct")]),
    ("llamacpp", "LLMCHAT_LLAMACPP_BASE_URL", LocalModel("llama-3.1-8b", n_ctx=4096, template="llama3.1"),
     [("GET", "/props"), ("POST", "/tokenize")]),
    ("vllm", "LLMCHAT_VLLM_BASE_URL", LocalModel("Qwen/Qwen2.5-7B-Instruct", n_ctx=32768),
     [("GET", "/v1/models"), ("POST", "/tokenize")]),
]


@pytest.mark.parametrize(("prefix", "variable", "model", "discovery"), LOCAL)
def test_each_local_prefix_asks_its_server_then_sends_to_it(monkeypatch, prefix, variable, model, discovery):
    with LoopbackServer(imitate=prefix, local_models=[model]) as server:
        url = f"127.0.0.1:{server.port}" if variable == "OLLAMA_HOST" else server.base_url
        monkeypatch.setenv(variable, url)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-openai-must-not-be-sent")
        bot = Chatbot(f"{prefix}:{model.name}")
        reply = bot.ask("hi", sink=NullSink())
        logged = server.requests
    asked = [(r.method, r.path) for r in logged if not r.path.endswith(("/chat/completions", "/tokenize"))]
    assert asked == [step for step in discovery if step[1] != "/tokenize"]
    sent = [r for r in logged if r.path == "/v1/chat/completions"]
    assert [(r.status, r.body["model"]) for r in sent] == [(200, model.name)]
    assert all(r.headers["authorization"] == "Bearer ***" for r in logged)
    assert reply.status == "complete" and reply.request["provider"] == prefix
    assert reply.cost == 0.0  # a local model costs nothing per token
    assert bot.info.context_window == model.n_ctx


def test_a_local_server_key_is_sent_when_its_variable_is_set(monkeypatch):
    with LoopbackServer(api_key="llama-key", imitate="llamacpp", local_models=[LocalModel("m", n_ctx=4096)]) as server:
        monkeypatch.setenv("LLMCHAT_LLAMACPP_BASE_URL", server.base_url)
        monkeypatch.setenv("LLAMA_API_KEY", "llama-key")
        reply = Chatbot("llamacpp:m").ask("hi", sink=NullSink())
        statuses = {r.path: r.status for r in server.requests}
    assert reply.status == "complete"
    assert statuses == {"/props": 200, "/tokenize": 200, "/v1/chat/completions": 200}


def test_a_hosted_provider_without_its_key_is_refused_before_anything_is_sent(loopback, monkeypatch):
    monkeypatch.setenv("LLMCHAT_GROQ_BASE_URL", loopback.base_url)
    bot = Chatbot("groq:llama-3.1-8b-instant")
    with pytest.raises(errors.MissingAPIKeyError) as raised:
        bot.ask("hi", sink=NullSink())
    assert str(raised.value) == ("no API key for Groq: set GROQ_API_KEY (or pass api_key= to a Chatbot whose "
                                 "model starts with groq:)")
    assert loopback.requests == [] and bot.history == []


def test_api_key_and_base_url_given_with_a_prefixed_model_are_its_providers(monkeypatch):
    with LoopbackServer(api_key="given-key", models=["deepseek-chat"]) as server:
        bot = Chatbot("deepseek:deepseek-chat", api_key="given-key", base_url=server.base_url)
        assert bot.ask("hi", sink=NullSink()).status == "complete"
        assert [r.status for r in chats(server)] == [200]


def test_a_ready_client_given_with_a_prefixed_model_is_used():
    import openai

    with LoopbackServer(models=["llama-3.1-8b-instant", "gpt-4o-mini"]) as server:
        bot = Chatbot("groq:llama-3.1-8b-instant", client=openai.OpenAI(base_url=server.base_url, api_key="x"))
        assert bot.ask("hi", sink=NullSink()).status == "complete"  # no GROQ_API_KEY needed: the given client
        bot.ask("and?", model="gpt-4o-mini", sink=NullSink())  # a plain name: the bot's client too
        assert [r.body["model"] for r in chats(server)] == ["llama-3.1-8b-instant", "gpt-4o-mini"]


def test_a_shared_chat_client_stays_the_client_of_plain_names(loopback, monkeypatch):
    """The magics give their ChatClient to every session, whatever its model: a prefixed model still
    goes to its provider, and other sessions' plain names still go to that client."""
    from jupyter_llmchat.core.client import ChatClient

    shared = ChatClient(base_url=loopback.base_url, api_key="x")
    with LoopbackServer(imitate="vllm", local_models=[LocalModel("m", n_ctx=4096)]) as vllm:
        monkeypatch.setenv("LLMCHAT_VLLM_BASE_URL", vllm.base_url)
        local = Chatbot("vllm:m", client=shared)
        assert local.ask("hi", sink=NullSink()).status == "complete"
        assert [r.body["model"] for r in chats(vllm)] == ["m"]
    Chatbot("gpt-4o", client=shared).ask("hi", sink=NullSink())
    assert [r.path for r in loopback.requests] == ["/v1/chat/completions"]


def test_a_plain_name_keeps_its_meaning(loopback):
    with LoopbackServer(models=["mistral:7b", "llama3.1:8b"]) as server:
        bot = Chatbot("mistral:7b", base_url=server.base_url)  # an Ollama tag, not Mistral's API
        bot.ask("hi", sink=NullSink())
        bot.ask("and?", model="llama3.1:8b", sink=NullSink())
        assert [r.body["model"] for r in chats(server)] == ["mistral:7b", "llama3.1:8b"]
        assert [r.path for r in server.requests] == ["/v1/chat/completions"] * 2  # no server was asked anything


def test_one_question_to_another_provider_goes_there_and_stays_in_the_history(loopback, monkeypatch):
    with LoopbackServer(api_key="groq-key", models=["llama-3.1-8b-instant"]) as groq:
        monkeypatch.setenv("LLMCHAT_GROQ_BASE_URL", groq.base_url)
        monkeypatch.setenv("GROQ_API_KEY", "groq-key")
        bot = Chatbot("gpt-4o", base_url=loopback.base_url, api_key="sk-plain")
        bot.ask("first", sink=NullSink())
        reply = bot.ask("second", model="groq:llama-3.1-8b-instant", sink=NullSink())
        assert [r.body["model"] for r in chats(groq)] == ["llama-3.1-8b-instant"]
        assert [m["content"] for m in chats(groq)[0].body["messages"]][:1] == ["first"]
    assert [r.body["model"] for r in chats(loopback)] == ["gpt-4o"]
    assert reply.request["provider"] == "groq" and len(bot.history) == 4


@pytest.mark.parametrize(("host", "url"), [
    ("127.0.0.1:11500", "http://127.0.0.1:11500/v1"), ("gpu-box", "http://gpu-box:11434/v1"),
    ("0.0.0.0", "http://0.0.0.0:11434/v1"), ("https://ollama.example.com", "https://ollama.example.com:443/v1"),
    ("http://10.0.0.2:8000/", "http://10.0.0.2:8000/v1"), ("[::1]:11434", "http://[::1]:11434/v1"),
])
def test_ollama_host_is_read_as_ollama_reads_it(host, url):
    assert ollama_url(host) == url


# -- windows from the servers ---------------------------------------------------------------------
def local_bot(monkeypatch, server: LoopbackServer, name: str, **kwargs) -> Chatbot:
    prefix = server._state.local.kind  # the imitated server
    variable = provider(prefix).url_env
    monkeypatch.setenv(variable, f"127.0.0.1:{server.port}" if variable == "OLLAMA_HOST" else server.base_url)
    return Chatbot(f"{prefix}:{name}", **kwargs)


@pytest.mark.parametrize(("kind", "model", "window", "source"), [
    ("ollama", LocalModel("qwen2.5:7b", n_ctx=16384), 16384, "Ollama /api/show num_ctx at {root}"),
    ("ollama", LocalModel("qwen2.5:7b", n_ctx=6144, num_ctx_param=False, loaded=True), 6144,
     "Ollama /api/ps context_length (loaded now) at {root}"),
    ("ollama", LocalModel("qwen2.5:7b", n_ctx=4096, num_ctx_param=False, trained_ctx=32768), 4096,
     "Ollama loads it with num_ctx 4,096 (not loaded now; no num_ctx in /api/show, trained for 32,768) at {root}"),
    ("llamacpp", LocalModel("llama-3.1-8b", n_ctx=2048, template="llama3.1"), 2048, "llama.cpp /props n_ctx at {root}"),
    ("vllm", LocalModel("meta-llama/Llama-3.1-8B-Instruct", n_ctx=12288, template="llama3.1"), 12288,
     "vLLM /v1/models max_model_len at {root}"),
    ("lmstudio", LocalModel("gemma-3-4b", n_ctx=8192, template="gemma", loaded=True), 8192,
     "LM Studio /api/v0/models loaded_context_length at {root}"),
    ("lmstudio", LocalModel("gemma-3-4b", n_ctx=4096, template="gemma", trained_ctx=131072), 4096,
     "LM Studio loads it with 4,096 tokens unless set (not loaded now, trained for 131,072) at {root}"),
])
def test_the_window_comes_from_the_server_and_says_where(monkeypatch, kind, model, window, source):
    with LoopbackServer(imitate=kind, local_models=[model]) as server:
        bot = local_bot(monkeypatch, server, model.name)
        assert bot.info.window_source == "default"  # nothing asked yet
        request = bot.prepare("hi")
        asked = [r.path for r in server.requests if r.path != "/tokenize"]  # (/tokenize counts each question)
        bot.prepare("again")
        assert [r.path for r in server.requests if r.path != "/tokenize"] == asked  # asked once per client
        root = server.root_url
    assert request.info.context_window == window == bot.info.context_window
    assert request.info.window_source == source.format(root=root)
    assert request.budget == window - min(4096, window // 2)


def test_ollama_context_length_variable_is_its_default(monkeypatch):
    monkeypatch.setenv("OLLAMA_CONTEXT_LENGTH", "8192")
    model = LocalModel("qwen2.5:7b", n_ctx=8192, num_ctx_param=False, trained_ctx=32768)
    with LoopbackServer(imitate="ollama", local_models=[model]) as server:
        assert local_bot(monkeypatch, server, model.name).prepare("hi").info.context_window == 8192


def test_a_window_set_by_the_user_wins(monkeypatch):
    model = LocalModel("llama-3.1-8b", n_ctx=2048, template="llama3.1")
    with LoopbackServer(imitate="llamacpp", local_models=[model]) as server:
        info = local_bot(monkeypatch, server, model.name, context_window=1024).prepare("hi").info
        assert (info.context_window, info.window_source) == (1024, "context_window=")
        add_model("llamacpp:llama-3.1-8b", context_window=1536)
        try:
            info = local_bot(monkeypatch, server, model.name).prepare("hi").info
        finally:
            remove_model("llamacpp:llama-3.1-8b")
        assert (info.context_window, info.window_source) == (1536, "add_model")


def test_a_server_that_does_not_answer_is_said_so_and_the_default_is_used(monkeypatch):
    port = closed_port()
    monkeypatch.setenv("LLMCHAT_VLLM_BASE_URL", f"http://127.0.0.1:{port}/v1")
    info = Chatbot("vllm:my-model").routes.route("vllm:my-model", Chatbot("gpt-4o").client).info
    assert info.context_window == 8192
    assert info.window_source.startswith(f"default 8,192 (vLLM at http://127.0.0.1:{port} did not answer (")
    assert info.vision is False


def test_config_rows_say_where_each_number_comes_from(monkeypatch):
    model = LocalModel("llama-3.1-8b", n_ctx=2048, template="llama3.1")
    with LoopbackServer(imitate="llamacpp", local_models=[model]) as server:
        bot = local_bot(monkeypatch, server, model.name)
        rows = list(describe(bot.model, bot.client, bot.routes))
        root = server.root_url
    assert rows == [
        ("provider", "llama.cpp", "model prefix llamacpp:", ""),
        ("provider endpoint", f"{root}/v1", "env LLMCHAT_LLAMACPP_BASE_URL", "LLMCHAT_LLAMACPP_BASE_URL"),
        ("provider key", "not needed", "", "LLAMA_API_KEY"),
        ("context window", "2,048", f"llama.cpp /props n_ctx at {root}", "LLMCHAT_CONTEXT_WINDOW"),
        ("vision", "no", "llama.cpp /props modalities", ""),
        ("token counts", "llama3.1 chat template, text by llama.cpp /tokenize", "the server's tokenizer", ""),
    ]
    plain = list(describe("gpt-4o", bot.client, bot.routes))
    assert plain == [("context window", "128,000", "model table (OpenAI, 2026-11-29)", "LLMCHAT_CONTEXT_WINDOW"),
                     ("vision", "yes", "model table", ""), ("token counts", "o200k_base", "exact", "")]
    groq = list(describe("groq:llama-3.1-8b-instant", bot.client, bot.routes))
    assert groq[0] == ("provider", "Groq", "model prefix groq:", "")
    assert groq[1] == ("provider key", "not set", "", "GROQ_API_KEY")  # no endpoint row: no client without a key
    assert groq[-1] == ("token counts", "cl100k_base + 10% margin", "estimate", "")


# -- prompts never exceed a strict server's window -------------------------------------------------
QUESTION_WORDS = ("why does the kernel restart when the dataframe is large", "explain", "```python\nx = 1\n```",
                  "Überraschung", "数据", "tokens", "and")


def fifty_turns(bot: Chatbot, server: LoopbackServer) -> list:
    replies = []
    for turn in range(50):
        words = (QUESTION_WORDS * 40)[turn % 7: turn % 7 + 5 + (turn * 37) % 140]
        server.default_tokens = 40 + (turn * 53) % 160
        replies.append(bot.ask(" ".join(words), sink=NullSink()))
    return replies


@pytest.mark.parametrize(("kind", "model", "max_tokens"), [
    # llama.cpp rejects a prompt over n_ctx: max_tokens=16 leaves almost no slack for a wrong count
    ("llamacpp", LocalModel("Meta-Llama-3.1-8B-Instruct", n_ctx=2048, template="llama3.1"), 16),  # its tokenizer
    # vLLM rejects a prompt that leaves no room for max_tokens
    ("vllm", LocalModel("Qwen/Qwen2.5-7B-Instruct", n_ctx=2048, template="chatml"), 256),  # name's template
    ("ollama", LocalModel("qwen2.5:7b", n_ctx=2048, template="chatml"), 16),  # cl100k_base + margin
    ("lmstudio", LocalModel("gemma-3-4b-it", n_ctx=2048, template="gemma", loaded=True), 16),  # name's template
])
def test_fifty_turns_never_exceed_a_strict_server_window(monkeypatch, kind, model, max_tokens):
    with LoopbackServer(imitate=kind, local_models=[model]) as server:
        bot = local_bot(monkeypatch, server, model.name, max_tokens=max_tokens)
        replies = fifty_turns(bot, server)
        sent = [r for r in server.requests if r.path == "/v1/chat/completions"]
    assert [r.status for r in sent] == [200] * 50  # the server never rejected a prompt
    assert all(reply.status in ("complete", "truncated") for reply in replies)
    counted = [reply.usage.prompt_tokens for reply in replies]  # the server's own counts
    assert max(counted) <= 2048 - max_tokens
    assert max(counted) > 2048 - max_tokens - 400  # trimming kept the window well used
    assert len(sent[-1].body["messages"]) < 2 * 50  # old turns were left out


def test_without_the_template_overhead_the_strict_server_rejects_a_prompt(monkeypatch):
    """The control: the same conversation counted by OpenAI's rules (a plain name, the window set by
    hand) runs into llama.cpp's limit, as llama.cpp counted 2,025 where we counted 1,995."""
    model = LocalModel("Meta-Llama-3.1-8B-Instruct", n_ctx=2048, template="llama3.1")
    with LoopbackServer(imitate="llamacpp", local_models=[model]) as server:
        bot = Chatbot(model.name, base_url=server.base_url, context_window=2048, max_tokens=16, max_retries=0)
        with pytest.raises(errors.ChatError) as raised:
            fifty_turns(bot, server)
        rejected = [r for r in server.requests if r.status == 400]
    assert len(rejected) == 1 and "exceeds the available context size" in str(raised.value)


# -- vision -----------------------------------------------------------------------------------------
def test_a_model_known_not_to_take_images_is_refused_before_sending(loopback, monkeypatch):
    monkeypatch.setenv("LLMCHAT_GROQ_BASE_URL", loopback.base_url)
    monkeypatch.setenv("GROQ_API_KEY", "k")
    bot = Chatbot("groq:llama-3.1-8b-instant")
    with pytest.raises(errors.ImageError) as raised:
        bot.ask("what is this?", images=[PIXEL], sink=NullSink())
    assert str(raised.value) == ('groq:llama-3.1-8b-instant does not take images: ask a vision model (e.g. '
                                 'model="gpt-4o-mini", "gpt-4o" or "gpt-4.1") or leave the images out')
    assert loopback.requests == []


@pytest.mark.parametrize(("kind", "model", "said"), [
    ("ollama", LocalModel("llama3.2", n_ctx=4096, template="llama3.1"), "Ollama /api/show capabilities"),
    ("llamacpp", LocalModel("llama-3.1-8b", n_ctx=4096, template="llama3.1"), "llama.cpp /props modalities"),
    ("lmstudio", LocalModel("qwen2.5-7b", n_ctx=4096), "LM Studio /api/v0/models type 'llm'"),
])
def test_a_local_model_found_not_to_take_images_is_refused(monkeypatch, kind, model, said):
    with LoopbackServer(imitate=kind, local_models=[model]) as server:
        bot = local_bot(monkeypatch, server, model.name)
        with pytest.raises(errors.ImageError) as raised:
            bot.ask("what is this?", images=[PIXEL], sink=NullSink())
        assert not [r for r in server.requests if r.path.endswith("/chat/completions")]
    assert str(raised.value) == (f'{kind}:{model.name} does not take images ({said}): ask a vision model (e.g. '
                                 'model="gpt-4o-mini", "gpt-4o" or "gpt-4.1") or leave the images out')


@pytest.mark.parametrize(("kind", "model"), [
    ("ollama", LocalModel("gemma3:4b", n_ctx=8192, template="gemma", vision=True)),
    ("llamacpp", LocalModel("gemma-3-4b", n_ctx=8192, template="gemma", vision=True)),
    ("lmstudio", LocalModel("gemma-3-4b", n_ctx=8192, template="gemma", vision=True, loaded=True)),
])
def test_a_local_model_whose_server_says_it_sees_gets_the_image(monkeypatch, kind, model):
    with LoopbackServer(imitate=kind, local_models=[model]) as server:
        reply = local_bot(monkeypatch, server, model.name).ask("what is this?", images=[PIXEL], sink=NullSink())
        sent = [r for r in server.requests if r.path.endswith("/chat/completions")]
    assert reply.status == "complete" and sent[0].body["messages"][-1]["content"][1]["type"] == "image_url"


def test_an_unknown_local_model_gets_images_only_when_the_user_says_so(monkeypatch):
    model = LocalModel("Qwen/Qwen2.5-VL-7B-Instruct", n_ctx=8192, vision=True)
    with LoopbackServer(imitate="vllm", local_models=[model]) as server:
        bot = local_bot(monkeypatch, server, model.name)
        with pytest.raises(errors.ImageError) as raised:
            bot.ask("what is this?", images=[PIXEL], sink=NullSink())
        assert str(raised.value) == (
            "vllm:Qwen/Qwen2.5-VL-7B-Instruct may not take images: the server does not say it takes images (vLLM "
            "does not report it); pass vision=True if it does, or leave the images out")
        assert not chats(server)
        reply = local_bot(monkeypatch, server, model.name, vision=True).ask("and now?", images=[PIXEL],
                                                                           sink=NullSink())
        assert reply.status == "complete" and len(chats(server)) == 1


# -- what is there ------------------------------------------------------------------------------------
def test_available_models_lists_configured_providers_and_answering_servers(monkeypatch):
    monkeypatch.setenv("DEEPSEEK_API_KEY", "k")
    for variable in ("LLMCHAT_LMSTUDIO_BASE_URL", "LLMCHAT_LLAMACPP_BASE_URL", "LLMCHAT_VLLM_BASE_URL"):
        monkeypatch.setenv(variable, f"http://127.0.0.1:{closed_port()}/v1")
    models = [LocalModel("qwen2.5:7b", n_ctx=8192), LocalModel("gemma3:4b", n_ctx=8192, template="gemma",
                                                                 vision=True)]
    with LoopbackServer(imitate="ollama", local_models=models) as ollama:
        monkeypatch.setenv("OLLAMA_HOST", f"127.0.0.1:{ollama.port}")
        rows, notes = available_models(build_client(provider("openai"), api_key="x", base_url=ollama.base_url))
    assert [(row.name, row.provider, row.window, row.vision, row.price) for row in rows] == [
        ("deepseek:deepseek-chat", "DeepSeek", 128000, False, "$0.28 / $0.42"),
        ("deepseek:deepseek-reasoner", "DeepSeek", 128000, False, "$0.28 / $0.42"),
        ("ollama:gemma3:4b", "Ollama", None, None, ""),
        ("ollama:qwen2.5:7b", "Ollama", None, None, ""),
    ]
    assert [note.split(" at ")[0] for note in notes] == ["LM Studio", "llama.cpp", "vLLM"]
    assert all(" did not answer (" in note for note in notes)


def test_quiet_defaults_leave_out_local_servers_nobody_pointed_us_at(monkeypatch):
    """The panel's menu asks with quiet_defaults: a local server at its default address that does
    not answer is not running (no news); one whose address variable is set is reported."""
    for name, record in PROVIDER_RECORDS.items():
        if record.get("local"):  # each default address a port where nothing listens, not this machine's servers
            default = f"http://127.0.0.1:{closed_port()}" + ("" if name == "ollama" else "/v1")
            monkeypatch.setitem(record, "base_url", default)
            monkeypatch.delenv(record["base_url_env"], raising=False)
    monkeypatch.setenv("LLMCHAT_VLLM_BASE_URL", f"http://127.0.0.1:{closed_port()}/v1")
    home = build_client(provider("openai"), api_key="x", base_url="http://127.0.0.1:9/v1")
    _, quiet = available_models(home, quiet_defaults=True)
    _, every = available_models(home)
    assert [note.split(" at ")[0] for note in quiet] == ["vLLM"]
    assert sorted(note.split(" at ")[0] for note in every) == ["LM Studio", "Ollama", "llama.cpp", "vLLM"]


def test_endpoint_rows_say_what_the_table_knows():
    rows = endpoint_rows(["gpt-4o-mini", "my-local-model"])
    assert [(r.name, r.window, r.vision, r.price) for r in rows] == [
        ("gpt-4o-mini", 128000, True, "$0.15 / $0.60"), ("my-local-model", None, None, "")]


def test_routes_reuse_one_client_per_provider(monkeypatch):
    monkeypatch.setenv("GROQ_API_KEY", "k")
    routes, home = Routes(), Chatbot("gpt-4o", api_key="x").client
    first = routes.route("groq:llama-3.1-8b-instant", home).client
    assert routes.route("groq:llama-3.3-70b-versatile", home).client is first
    assert routes.route("gpt-4o", home).client is home
    assert first.base_url == "https://api.groq.com/openai/v1"
    assert os.environ.get("OPENAI_API_KEY") is None
