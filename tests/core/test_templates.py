"""Chat templates of local models: recognised from a server's template text or a model's name, and
overheads that cover what the real template adds (checked against the loopback server's rendering)."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from jupyter_llmchat.core.models import model_info
from jupyter_llmchat.core.templates import TEMPLATES, UNKNOWN, template_from_name, template_from_source, template_named
from jupyter_llmchat.core.tokens import TokenCounter
from jupyter_llmchat.server.local_servers import GO_TEMPLATES, JINJA_TEMPLATES, LocalModel, prompt_tokens


@pytest.mark.parametrize("name", sorted(JINJA_TEMPLATES))
def test_templates_are_recognised_in_what_the_servers_report(name):
    assert template_from_source(JINJA_TEMPLATES[name]).name == name  # llama.cpp /props, vLLM
    assert template_from_source(GO_TEMPLATES[name]).name == name  # Ollama /api/show


def test_a_template_without_known_markers_is_not_guessed():
    assert template_from_source("{{ messages }}") is None
    assert template_from_source(None) is None and template_from_source("") is None


@pytest.mark.parametrize(("model", "template"), [
    ("llama3.2", "llama3.1"), ("Meta-Llama-3.1-8B-Instruct", "llama3.1"), ("llama-3.3-70b", "llama3.1"),
    ("llama3:8b", "llama3"), ("Meta-Llama-3-8B-Instruct", "llama3"), ("qwen2.5-coder:7b", "chatml"),
    ("Qwen/Qwen3-8B", "chatml"), ("phi4", "chatml"), ("gemma3:4b", "gemma"), ("mistral-nemo", "mistral"),
    ("phi3:mini", "phi3"), ("some-model", None),
])
def test_templates_are_guessed_from_model_names(model, template):
    found = template_from_name(model)
    assert (found.name if found else None) == template


def test_template_names():
    assert template_named(None) is None
    assert template_named("unknown") is UNKNOWN
    assert template_named("chatml") is TEMPLATES["chatml"]
    assert TEMPLATES["llama3.1"].fixed == 28 + 4


def _conversation(rng: random.Random, turns: int, system: bool) -> list[dict[str, str]]:
    words = ["token", "window", "the", "llama", "Überraschung", "数据", "```python", "print(x)", "\n\n", "  ", "ok."]
    messages = [{"role": "system", "content": "You are terse. " * rng.randint(1, 5)}] if system else []
    for _ in range(turns):
        for role in ("user", "assistant"):
            messages.append({"role": role, "content": " ".join(rng.choice(words) for _ in range(rng.randint(1, 60)))})
    messages.append({"role": "user", "content": "and now?"})
    return messages


@pytest.mark.parametrize("template", sorted(JINJA_TEMPLATES))
@pytest.mark.parametrize("system", [False, True])
def test_our_count_is_never_below_the_servers(template, system):
    """Per-message overhead + reply priming + what the template adds once, with text counted by the
    server's own tokenizer (llama.cpp, vLLM) or by cl100k_base plus the margin (Ollama): never less
    than the server's count of the rendered template, and close to it."""
    rng = random.Random(f"{template}-{system}")
    base = replace(model_info("llamacpp:model"), template=template, text_margin=TEMPLATES[template].text_margin,
                   encoding="cl100k_base")
    ours_by_encoding = TokenCounter(base)
    from jupyter_llmchat.server.local_servers import text_tokens

    ours_by_server = TokenCounter(replace(base, text_margin=0.0, count_text=lambda text: len(text_tokens(text)),
                                          counted_by="server"))
    for turns in (0, 1, 5, 20):
        messages = _conversation(rng, turns, system)
        theirs = prompt_tokens(LocalModel("m", n_ctx=10**6, template=template), messages)
        by_server = ours_by_server.count_api_messages(messages)
        by_encoding = ours_by_encoding.count_api_messages(messages)
        assert theirs <= by_server <= theirs + 8 + 3 * len(messages), (turns, theirs, by_server)
        assert theirs <= by_encoding, (turns, theirs, by_encoding)


def test_openai_counting_is_unchanged_for_plain_models():
    counter = TokenCounter("gpt-4o")
    assert counter.template is None and counter.reply_priming == 3 and counter.exact
    assert counter.count_api_messages([{"role": "user", "content": "hi"}]) == 3 + 3 + 1 + 1
