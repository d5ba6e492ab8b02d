"""Providers in the magics: ``%%chat -m provider:model``, ``%chat models``, the provider rows of
``%chat config``, ``%config ChatMagics.models``; in an in-process IPython shell (quick) and in a real
kernel (nbclient), against the loopback server imitating providers and local servers."""

from __future__ import annotations

import socket

import pytest
from IPython.core.interactiveshell import InteractiveShell
from support.chat_shell import chat_shell
from support.kernel_notebook import run_cells
from traitlets import TraitError

from jupyter_llmchat.core import errors
from jupyter_llmchat.core.models import PROVIDER_RECORDS, model_info
from jupyter_llmchat.notebook.magics import current, load_ipython_extension, unload_ipython_extension
from jupyter_llmchat.server import LoopbackServer
from jupyter_llmchat.server.local_servers import LocalModel

PIXEL = ("data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIA"
         "X8jx0gAAAABJRU5ErkJggg==")


def provider_variables() -> list[str]:
    names = {"OPENAI_API_KEY", "OPENAI_BASE_URL", "LLMCHAT_MODEL", "JUPYTER_LLMCHAT_STORE", "OLLAMA_CONTEXT_LENGTH"}
    for record in PROVIDER_RECORDS.values():
        names.add(record["base_url_env"])
        names.update(record.get("key_env", ()))
    return sorted(names)


def closed_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}/v1"


@pytest.fixture
def shell(loopback, monkeypatch: pytest.MonkeyPatch):
    for name in provider_variables():
        monkeypatch.delenv(name, raising=False)
    for name in ("LLMCHAT_LMSTUDIO_BASE_URL", "LLMCHAT_LLAMACPP_BASE_URL", "LLMCHAT_VLLM_BASE_URL"):
        monkeypatch.setenv(name, closed_url())  # nothing of this machine answers
    monkeypatch.setenv("OLLAMA_HOST", closed_url().removesuffix("/v1"))
    shell = chat_shell(loopback.base_url)
    yield shell
    shell.run_line_magic("config", "ChatMagics.models = {}")  # the table forgets what the test added
    unload_ipython_extension(shell)
    dict.pop(shell.config, "ChatMagics", None)


def config_rows(shell, capsys) -> dict[str, list[str]]:
    capsys.readouterr()
    shell.run_line_magic("chat", "config")
    lines = capsys.readouterr().out.splitlines()
    starts = [lines[0].index(word) for word in ("value", "source", "environment variable")]
    return {line[:starts[0]].strip(): [line[a:b].strip() for a, b in zip(starts, [*starts[1:], None])]
            for line in lines[1:]}


def test_a_prefixed_model_in_a_cell_goes_to_its_provider(shell, loopback, monkeypatch) -> None:
    with LoopbackServer(api_key="groq-key", models=["llama-3.3-70b-versatile"]) as groq:
        monkeypatch.setenv("LLMCHAT_GROQ_BASE_URL", groq.base_url)
        monkeypatch.setenv("GROQ_API_KEY", "groq-key")
        loopback.queue(reply="from the endpoint")
        shell.run_cell_magic("chat", "", "first")
        groq.queue(reply="from groq")
        shell.run_cell_magic("chat", "-m groq:llama-3.3-70b-versatile", "second")
        assert shell.user_ns["_chat"] == "from groq"
        assert [r.body["model"] for r in groq.requests] == ["llama-3.3-70b-versatile"]
        assert [m["content"] for m in groq.requests[0].body["messages"]] == [
            "first", "from the endpoint", "second"]  # the session's history went with it
    assert [r.body["model"] for r in loopback.requests] == ["gpt-4o-mini"]


def one_line(error: BaseException) -> str:
    """What IPython shows for one of our errors (its _render_traceback_)."""
    return "\n".join(error._render_traceback_())


def test_a_prefixed_model_without_its_key_is_one_line(shell, monkeypatch) -> None:
    with pytest.raises(errors.MissingAPIKeyError) as raised:
        shell.run_cell_magic("chat", "-m anthropic:claude-sonnet-4-5", "hi")
    assert one_line(raised.value) == ("MissingAPIKeyError: no API key for Anthropic: set ANTHROPIC_API_KEY (or pass "
                                      "api_key= to a Chatbot whose model starts with anthropic:) (nothing was sent)")


def test_an_image_for_a_model_without_vision_is_one_line(shell, loopback, monkeypatch) -> None:
    monkeypatch.setenv("DEEPSEEK_API_KEY", "k")
    shell.user_ns["pixel"] = PIXEL
    with pytest.raises(errors.ImageError) as raised:
        shell.run_cell_magic("chat", "-m deepseek:deepseek-chat -i pixel", "what is this?")
    assert one_line(raised.value) == ('ImageError: deepseek:deepseek-chat does not take images: ask a vision model '
                                      '(e.g. model="gpt-4o-mini", "gpt-4o" or "gpt-4.1") or leave the images out '
                                      '(nothing was sent)')
    assert loopback.requests == []


def test_a_local_model_in_demo_mode_is_not_a_demo_reply(loopback, monkeypatch) -> None:
    for name in provider_variables():
        monkeypatch.delenv(name, raising=False)
    model = LocalModel("llama3.2", n_ctx=8192, template="llama3.1")
    with LoopbackServer(imitate="ollama", local_models=[model]) as ollama:
        monkeypatch.setenv("OLLAMA_HOST", f"127.0.0.1:{ollama.port}")
        shell = InteractiveShell.instance()
        load_ipython_extension(shell)
        try:
            shell.run_line_magic("config", "ChatMagics.footer = False")
            shell.run_line_magic("config", "ChatMagics.store = ':memory:'")
            replies: list = []
            bot = current().session()
            bot.reply_listeners.append(replies.append)
            ollama.queue(reply="a local answer")
            shell.run_cell_magic("chat", "-m ollama:llama3.2", "hi")
            assert current().demo_url is not None  # no key, no base URL: plain names go to the demo server
        finally:
            unload_ipython_extension(shell)
            dict.pop(shell.config, "ChatMagics", None)
    assert replies[-1].text == "a local answer" and replies[-1].demo is False


def test_config_shows_where_the_window_came_from(shell, capsys, monkeypatch) -> None:
    model = LocalModel("llama-3.1-8b", n_ctx=2048, template="llama3.1")
    with LoopbackServer(imitate="llamacpp", local_models=[model]) as server:
        monkeypatch.setenv("LLMCHAT_LLAMACPP_BASE_URL", server.base_url)
        shell.run_line_magic("chat", "model llamacpp:llama-3.1-8b")
        rows = config_rows(shell, capsys)
        root = server.root_url
    assert rows["provider"] == ["llama.cpp", "model prefix llamacpp:", ""]
    assert rows["provider endpoint"] == [f"{root}/v1", "env LLMCHAT_LLAMACPP_BASE_URL", "LLMCHAT_LLAMACPP_BASE_URL"]
    assert rows["context window"] == ["2,048", f"llama.cpp /props n_ctx at {root}", "LLMCHAT_CONTEXT_WINDOW"]
    assert rows["vision"] == ["no", "llama.cpp /props modalities", ""]
    assert rows["token counts"] == ["llama3.1 chat template, text by llama.cpp /tokenize", "the server's tokenizer",
                                    ""]


def test_config_says_when_the_server_did_not_answer(shell, capsys, monkeypatch) -> None:
    url = closed_url()
    monkeypatch.setenv("LLMCHAT_VLLM_BASE_URL", url)
    shell.run_line_magic("chat", "model vllm:my-model")
    window = config_rows(shell, capsys)["context window"]
    assert window[0] == "8,192"
    assert window[1].startswith(f"default 8,192 (vLLM at {url.removesuffix('/v1')} did not answer (")


def test_models_lists_the_endpoint_and_configured_providers(shell, capsys, monkeypatch) -> None:
    monkeypatch.setenv("DEEPSEEK_API_KEY", "k")
    models = [LocalModel("qwen2.5:7b", n_ctx=8192)]
    with LoopbackServer(imitate="ollama", local_models=models, models=[]) as ollama:
        monkeypatch.setenv("OLLAMA_HOST", f"127.0.0.1:{ollama.port}")
        capsys.readouterr()
        shell.run_line_magic("chat", "models")
        lines = capsys.readouterr().out.splitlines()
    rows = [line.split("  ")[0] for line in lines[1:] if line and not line.startswith(("LM Studio", "llama.cpp"))]
    assert lines[0].split() == ["model", "(-m)", "provider", "context", "window", "vision", "price", "in", "/", "out",
                                "per", "1M"]
    assert "gpt-4o-mini" in rows and "deepseek:deepseek-chat" in rows and "ollama:qwen2.5:7b" in rows
    assert next(line for line in lines if line.startswith("deepseek:deepseek-chat ")).split() == [
        "deepseek:deepseek-chat", "DeepSeek", "128,000", "no", "$0.28", "/", "$0.42"]
    assert lines[-1].startswith("LM Studio at http://127.0.0.1:") and " did not answer (" in lines[-1]


def test_config_models_adds_entries_and_refuses_bad_ones(shell, caplog) -> None:
    shell.run_line_magic("config", "ChatMagics.models = {'ollama:qwen2.5:7b': {'context_window': 32768, "
                                   "'vision': False, 'template': 'chatml'}}")
    info = model_info("ollama:qwen2.5:7b")
    assert (info.context_window, info.vision, info.template, info.window_source) == (32768, False, "chatml",
                                                                                    "add_model")
    shell.run_line_magic("config", "ChatMagics.models = {'x': {'window': 5}}")  # %config shows the one line
    assert [record.getMessage() for record in caplog.records] == [
        "model 'x': unknown setting 'window'; settings are context_window, max_output, input_price, output_price, "
        "cached_input_price, vision, reasoning, encoding, template"]
    with pytest.raises(TraitError, match="^model 'ollama:x' needs a context_window, e.g. "):
        current().models = {"ollama:x": {"vision": True}}
    assert model_info("ollama:qwen2.5:7b").context_window == 32768  # the refused value changed nothing
    shell.run_line_magic("config", "ChatMagics.models = {}")
    assert model_info("ollama:qwen2.5:7b").window_source == "default"


def test_in_a_real_kernel(loopback, tmp_path) -> None:
    model = LocalModel("qwen2.5:7b", n_ctx=4096)
    with LoopbackServer(imitate="ollama", local_models=[model]) as ollama:
        ollama.queue(reply="**local** answer")
        env = {"OPENAI_BASE_URL": loopback.base_url, "OLLAMA_HOST": f"127.0.0.1:{ollama.port}",
               "LLMCHAT_LMSTUDIO_BASE_URL": closed_url(), "LLMCHAT_LLAMACPP_BASE_URL": closed_url(),
               "LLMCHAT_VLLM_BASE_URL": closed_url()}
        run = run_cells(["%load_ext jupyter_llmchat\n%config ChatMagics.footer = False",
                         "%%chat -m ollama:qwen2.5:7b\nhi",
                         "%chat model ollama:qwen2.5:7b",
                         "%chat config",
                         "%chat models"],
                        env=env, cwd=tmp_path, drop_env=tuple(provider_variables()))
        asked = [(r.method, r.path) for r in ollama.requests]
        root = ollama.root_url
    assert run.displays(1, "text/markdown") == ["**local** answer"]
    assert asked[:3] == [("POST", "/api/show"), ("GET", "/api/ps"), ("POST", "/v1/chat/completions")]
    config = cells(run.displays(3, "text/markdown")[0])
    assert ["context window", "4,096", f"Ollama /api/show num_ctx at {root}", "LLMCHAT_CONTEXT_WINDOW"] in config
    models = cells(run.displays(4, "text/markdown")[0])
    assert ["ollama:qwen2.5:7b", "Ollama", "", "", ""] in models
    assert models[:2] == [["model (-m)", "provider", "context window", "vision", "price in / out per 1M"],
                          ["gpt-3.5-turbo", "endpoint", "16,385", "no", "$0.50 / $1.50"]]


def cells(markdown: str) -> list[list[str]]:
    """A Markdown table's cells, Markdown escapes undone (however the table escapes them)."""
    import re

    rows = [line for line in markdown.splitlines() if line.startswith("|") and not line.startswith("|---")]
    return [[re.sub(r"\\+(.)", r"\1", cell).strip() for cell in re.split(r"(?<!\\)\|", row)[1:-1]]
            for row in rows]
