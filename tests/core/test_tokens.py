"""Exact counts offline, the cookbook's chat overhead, image costs, the estimate fallback, the
free byte bound that lets a prompt go out before any vocabulary is loaded, and tool definitions,
calls and results."""

from __future__ import annotations

import base64
import io
import subprocess
import sys

import pytest

from jupyter_llmchat.core import tokens
from jupyter_llmchat.core.models import model_info
from jupyter_llmchat.core.tokens import TokenCounter, count_prompt_tokens, image_tokens


def test_encodings_load_offline_from_bpe_openai():
    o200k = tokens._encoding_from_bpe_openai("o200k_base")
    cl100k = tokens._encoding_from_bpe_openai("cl100k_base")
    assert o200k.n_vocab == 200019 and cl100k.n_vocab == 100277
    # Known tokenizations (OpenAI's tokenizer): "hello world" is 2 tokens in both.
    assert o200k.encode("hello world") == [24912, 2375]
    assert cl100k.encode("hello world") == [15339, 1917]


@pytest.mark.parametrize("model,encoding", [("gpt-4o", "o200k_base"), ("gpt-4.1-mini", "o200k_base"),
                                            ("o3-mini", "o200k_base"), ("gpt-4", "cl100k_base"),
                                            ("gpt-3.5-turbo-0125", "cl100k_base")])
def test_model_families_use_their_encoding(model, encoding):
    counter = TokenCounter(model)
    assert counter.encoding.name == encoding
    assert counter.exact


def test_chat_overhead_follows_the_cookbook():
    counter = TokenCounter("gpt-4o")
    messages = [{"role": "system", "content": "You are terse."},
                {"role": "user", "content": "Hi", "name": "ada"}]
    expected = (3 + 1 + counter.count_text("You are terse.")) + (3 + 1 + 1 + 1 + counter.count_text("ada")) + 3
    assert count_prompt_tokens(messages, "gpt-4o") == expected


def test_special_token_text_is_counted_as_text():
    assert TokenCounter("gpt-4o").count_text("<|endoftext|>") > 1


def test_unknown_model_counts_are_marked_inexact():
    counter = TokenCounter("llama3.1:8b")
    assert counter.info.known is False and counter.exact is False
    assert counter.count_text("hello world") == 2  # o200k_base, the documented estimate


def test_estimate_when_no_encoding_can_be_loaded():
    counter = TokenCounter("gpt-4o")
    counter.encoding = None
    assert counter.count_text("a" * 9) == 3  # ceil(9 bytes / 4)


@pytest.mark.parametrize("size,detail,expected", [((1024, 1024), "high", 765), ((2048, 4096), "high", 1105),
                                                  ((4096, 8192), "low", 85), ((512, 512), "auto", 255)])
def test_gpt4o_image_tokens_match_openai_worked_examples(size, detail, expected):
    assert image_tokens(*size, detail, model_info("gpt-4o").image_tokens) == expected


def test_patch_models_and_mini_tile_costs():
    rule = model_info("gpt-4.1-mini").image_tokens
    assert image_tokens(1024, 1024, "high", rule) == 1659  # 1024 patches x 1.62
    assert tokens._patch_count(1800, 2400) == 1452
    assert image_tokens(1024, 1024, "high", model_info("gpt-4o-mini").image_tokens) == 2833 + 4 * 5667


def test_data_url_images_are_counted_from_their_pixels():
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (1024, 1024), "white").save(buffer, "PNG")
    url = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
    message = {"role": "user", "content": [{"type": "text", "text": "What is it?"},
                                           {"type": "image_url", "image_url": {"url": url, "detail": "high"}}]}
    counter = TokenCounter("gpt-4o")
    assert count_prompt_tokens([message], "gpt-4o") == 3 + 3 + 1 + counter.count_text("What is it?") + 765
    assert tokens.data_url_size("https://example.org/cat.png") == (None, None)


# -- no vocabulary on the way to the first text ------------------------------------------------

def test_a_counter_loads_its_vocabulary_on_the_first_count_not_when_made():
    script = ("from jupyter_llmchat.core import tokens\n"
              "counter = tokens.TokenCounter('gpt-4o')\n"
              "before = (counter.ready, tokens.encoding_loaded('o200k_base'))\n"
              "bound = counter.bound_message('user', 'hello world')\n"
              "after_bound = counter.ready\n"
              "exact = counter.count_message('user', 'hello world')\n"
              "print(before, after_bound, bound, exact, counter.ready, tokens.TokenCounter('gpt-4o-mini').ready)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True)
    # 3 per message + "user" (4 bytes; 1 token) + "hello world" (11 bytes; 2 tokens)
    assert done.stdout == "(False, False) False 18 6 True True\n"


@pytest.mark.parametrize("text", ["", "hello world", "naïve café — 東京", "😀🎉 emoji", "<|endoftext|> typed",
                                  "    indented\n\tcode()", "x" * 5000, "ab" * 3000])
def test_the_byte_bound_is_never_below_the_exact_count(text):
    counter = TokenCounter("gpt-4o")
    images = [(1024, 1024, "high"), (None, None, "auto")]
    assert counter.bound_message("user", text, name="ada", images=images) >= counter.count_message(
        "user", text, name="ada", images=images)
    cl100k = TokenCounter("gpt-4")
    assert cl100k.bound_message("assistant", text) >= cl100k.count_message("assistant", text)


def test_tool_definitions_calls_and_results_are_counted_and_bounded():
    counter = TokenCounter("gpt-4o")
    tools = [{"type": "function", "function": {"name": "get_weather", "description": "The weather now.",
                                               "parameters": {"type": "object", "properties": {
                                                   "city": {"type": "string"}}, "required": ["city"]}}}]
    function = ('{"name":"get_weather","description":"The weather now.","parameters":{"type":"object",'
                '"properties":{"city":{"type":"string"}},"required":["city"]}}')
    assert counter.count_tools(tools) == tokens.TOOLS_END + tokens.TOKENS_PER_TOOL + counter.count_text(function)
    assert counter.count_tools([]) == 0 and counter.bound_tools(tools) >= counter.count_tools(tools)
    messages = [{"role": "user", "content": "Weather?"},
                {"role": "assistant", "content": None, "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "get_weather",
                                                                     "arguments": '{"city": "Paris"}'}}]},
                {"role": "tool", "content": "sunny", "tool_call_id": "call_1"}]
    calls = 3 + counter.count_text("get_weather") + counter.count_text('{"city": "Paris"}')
    text = counter.count_text
    assert counter.count_api_messages(messages) == (  # the call's id is counted like a name: 1 + its text
        3 + (3 + text("user") + text("Weather?")) + (3 + text("assistant") + calls)
        + (3 + text("tool") + text("sunny") + 1 + text("call_1")))
    assert count_prompt_tokens(messages, "gpt-4o", tools) == counter.count_api_messages(messages) + \
        counter.count_tools(tools)
