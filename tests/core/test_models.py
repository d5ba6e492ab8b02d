"""The model table: family lookup, defaults for unknown models, cost arithmetic, the answer's reserve."""

from __future__ import annotations

from dataclasses import replace

import pytest

from jupyter_llmchat.core.models import DEFAULT_CONTEXT_WINDOW, MODELS, answer_reserve, model_info


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
