"""The model table: family lookup, defaults for unknown models, cost arithmetic, the answer's reserve."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest

from jupyter_llmchat.core.errors import ConfigurationError
from jupyter_llmchat.core.models import (
    _TABLES,
    DEFAULT_CONTEXT_WINDOW,
    MODELS,
    PROVIDER_RECORDS,
    TABLE_UPDATED,
    add_model,
    add_models,
    answer_reserve,
    model_info,
    remove_model,
    split_model,
)


def test_dated_snapshots_resolve_to_their_family():
    assert model_info("gpt-4o-mini-2024-07-18").input_price == MODELS["gpt-4o-mini"].input_price
    assert model_info("gpt-4o-2024-08-06").context_window == 128_000
    assert model_info("gpt-4-0613").encoding == "cl100k_base"
    assert model_info("gpt-4o-2024-08-06").name == "gpt-4o-2024-08-06"


def test_unknown_models_get_the_documented_default_which_can_be_set():
    info = model_info("llama3.1:8b")
    assert (info.context_window, info.known, info.input_price) == (DEFAULT_CONTEXT_WINDOW, False, None)
    assert model_info("llama3.1:8b", context_window=131_072).context_window == 131_072
    assert info.cost(1000, 1000) is None


def test_cost_prices_cached_input_as_the_provider_does():
    # gpt-4o: $2.50 in, $1.25 cached in, $10 out per 1M tokens.
    cost = model_info("gpt-4o").cost(prompt_tokens=10_000, completion_tokens=2_000, cached_tokens=4_000)
    assert cost == pytest.approx((6_000 * 2.50 + 4_000 * 1.25 + 2_000 * 10.0) / 1e6)
    # gpt-4 has no cached price: cached tokens cost full input price.
    assert model_info("gpt-4").cost(1000, 0, 1000) == pytest.approx(0.03)


def test_reasoning_models_are_flagged():
    assert model_info("o3-mini").reasoning and model_info("gpt-5-mini").reasoning
    assert not model_info("gpt-4o").reasoning


def test_every_entry_is_consistent():
    for name, info in MODELS.items():
        assert info.name == name
        embedding = name.startswith("text-embedding-")  # embedding models write no tokens
        assert 0 < info.max_output <= info.context_window or (embedding and info.max_output == 0)
        assert info.encoding in ("o200k_base", "cl100k_base")
        assert info.vision == (info.image_tokens is not None)


@pytest.mark.parametrize("window, max_output, max_tokens, reserve", [
    (128_000, 16_384, None, 4096),  # the default reserve
    (8192, 4096, None, 4096),  # half of 8,192 is 4,096: as before
    (4096, 4096, None, 2048),  # a small window keeps half for the question
    (2048, 4096, None, 1024),
    (128_000, 2048, None, 2048),  # never more than the model can write
    (4096, 4096, 3000, 3000),  # max_tokens, when set, is what is kept
])
def test_the_answer_reserve_is_a_share_of_a_small_window(window, max_output, max_tokens, reserve):
    info = replace(model_info("llama3.1:8b", context_window=window), max_output=max_output)
    assert answer_reserve(info, max_tokens) == reserve


# -- the data file, providers, prefixes ------------------------------------------------------------
def test_the_data_file_says_where_its_figures_come_from_and_when():
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", TABLE_UPDATED)
    for name, record in PROVIDER_RECORDS.items():
        assert record["label"] and record["source"] and record["base_url_env"], name
        assert isinstance(record.get("key_env", []), list)
        assert record.get("local") or record.get("key_env"), name  # a hosted API needs a key


def test_every_provider_entry_is_consistent():
    for provider, table in _TABLES.items():
        for name, info in table.items():
            chat = info.max_output > 0 or "embedding" in name  # embedding models write no tokens
            assert chat and info.max_output <= info.context_window, (provider, name)
            assert info.encoding in ("o200k_base", "cl100k_base")
            assert info.input_price is not None and info.output_price is not None and info.input_price >= 0
            assert info.window_source == f"model table ({PROVIDER_RECORDS[provider]['label']}, {TABLE_UPDATED})"
            if info.image_tokens is not None:
                assert info.vision


@pytest.mark.parametrize(("name", "split"), [
    ("gpt-4o", (None, "gpt-4o")),
    ("anthropic:claude-sonnet-4-5", ("anthropic", "claude-sonnet-4-5")),
    ("Google:gemini-2.5-pro", ("gemini", "gemini-2.5-pro")),
    ("ollama:qwen2.5-coder:7b", ("ollama", "qwen2.5-coder:7b")),
    ("openrouter:meta-llama/llama-3.3-70b-instruct", ("openrouter", "meta-llama/llama-3.3-70b-instruct")),
    ("mistral:7b", (None, "mistral:7b")),  # Ollama tags of a model named mistral
    ("mistral:latest", (None, "mistral:latest")),
    ("mistral:instruct", (None, "mistral:instruct")),
    ("mistral:mistral-large-latest", ("mistral", "mistral-large-latest")),
    ("llama3.1:8b", (None, "llama3.1:8b")),
    ("nosuch:model", (None, "nosuch:model")),
    ("groq:", (None, "groq:")),
])
def test_split_model(name, split):
    assert split_model(name) == split


@pytest.mark.parametrize(("name", "window", "price", "provider"), [
    ("anthropic:claude-sonnet-4-5-20250929", 200_000, 3.0, "anthropic"),  # a dated snapshot
    ("claude-haiku-4-5", 200_000, 1.0, None),  # a plain name through a proxy still gets Claude's figures
    ("openrouter:anthropic/claude-sonnet-4.5", 200_000, 3.0, "openrouter"),  # the vendor's table
    ("openrouter:openai/gpt-4o-mini", 128_000, 0.15, "openrouter"),
    ("azure:gpt-4o", 128_000, 2.50, "azure"),  # the deployment's model, OpenAI's table
    ("groq:llama-3.1-8b-instant", 131_072, 0.05, "groq"),
    ("mistral:mistral-large-latest", 131_072, 2.0, "mistral"),
    ("deepseek:deepseek-reasoner", 128_000, 0.28, "deepseek"),
])
def test_prefixed_and_plain_names_find_their_providers_entry(name, window, price, provider):
    info = model_info(name)
    assert (info.context_window, info.input_price, info.provider, info.known, info.name) == (
        window, price, provider, True, name)


def test_a_local_model_is_free_and_counted_with_its_template():
    info = model_info("ollama:qwen2.5:7b")
    assert (info.local, info.template, info.encoding, info.text_margin) == ("ollama", "chatml", "cl100k_base", 0.05)
    assert (info.vision, info.known, info.cost(1000, 1000)) == (None, False, 0.0)
    unknown = model_info("llamacpp:my-finetune")
    assert (unknown.template, unknown.text_margin) == ("unknown", 0.3)


def test_long_prompts_are_priced_at_the_long_rate():
    info = model_info("gemini:gemini-2.5-pro")
    assert info.cost(200_000, 1000) == pytest.approx((200_000 * 1.25 + 1000 * 10.0) / 1e6)
    assert info.cost(200_001, 1000) == pytest.approx((200_001 * 2.50 + 1000 * 15.0) / 1e6)


def test_add_model_adds_and_corrects_entries():
    try:
        info = add_model("ollama:qwen2.5-coder:7b", context_window=32768, vision=False, template="chatml")
        assert (info.context_window, info.vision, info.template, info.known, info.window_source) == (
            32768, False, "chatml", True, "add_model")
        assert info.cost(10, 10) == 0.0  # no prices given: a local model stays free
        fixed = add_model("groq:llama-3.1-8b-instant", context_window=131_072, input_price=0.06, output_price=0.09)
        assert (fixed.input_price, fixed.output_price, fixed.provider) == (0.06, 0.09, "groq")
        assert model_info("groq:llama-3.1-8b-instant").input_price == 0.06
        plain = add_model("my-proxy-model", context_window=65_536, max_output=8192, vision=True)
        assert (plain.context_window, plain.max_output, plain.vision, plain.provider) == (65_536, 8192, True, None)
    finally:
        assert remove_model("ollama:qwen2.5-coder:7b") and remove_model("groq:llama-3.1-8b-instant")
        assert remove_model("my-proxy-model") and not remove_model("my-proxy-model")
    assert model_info("groq:llama-3.1-8b-instant").input_price == 0.05


@pytest.mark.parametrize(("settings", "message"), [
    ({"context_window": 0}, "model 'm': context_window must be a whole number >= 1, got 0"),
    ({"context_window": 100, "max_output": 200}, "model 'm': max_output (200) is larger than context_window (100)"),
    ({"context_window": 100, "input_price": -1}, "model 'm': input_price must be USD per 1M tokens (a number >= 0), "
                                                  "got -1"),
    ({"context_window": 100, "vision": "yes"}, "model 'm': vision must be True or False, got 'yes'"),
    ({"context_window": 100, "encoding": "p50k_base"}, "model 'm': encoding must be one of o200k_base, cl100k_base, "
                                                        "got 'p50k_base'"),
    ({"context_window": 100, "template": "alpaca"}, "model 'm': template must be one of chatml, llama3, llama3.1, "
                                                     "gemma, mistral, phi3, got 'alpaca'"),
    ({"vision": True}, "model 'm' needs a context_window, e.g. {'context_window': 32768}"),
    ({"context_window": 100, "price": 1}, "model 'm': unknown setting 'price'; settings are context_window, "
                                          "max_output, input_price, output_price, cached_input_price, vision, "
                                          "reasoning, encoding, template"),
])
def test_bad_entries_are_one_line_and_add_nothing(settings, message):
    with pytest.raises(ConfigurationError) as raised:
        add_models({"ok": {"context_window": 10}, "m": settings})
    assert str(raised.value) == message
    assert model_info("ok").known is False  # all checked before any is added
