"""Chatbot.ask through the real openai SDK against the loopback server: text, usage, params,
trimming as sent, faults leaving history intact, interrupts keeping a marked partial answer."""

from __future__ import annotations

import threading
import time

import pytest
from support.recording import RecordingSink

from jupyter_llmchat.core import errors
from jupyter_llmchat.core.chatbot import Chatbot
from jupyter_llmchat.core.reply import NullSink

KEY = "sk-test-DO-NOT-LEAK-4f9a2c"


@pytest.fixture
def unused_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def make_bot(loopback, **kwargs) -> Chatbot:
    kwargs.setdefault("max_retries", 2)
    return Chatbot(kwargs.pop("model", "gpt-4o"), base_url=loopback.base_url, api_key=KEY, **kwargs)


def chat_bodies(loopback) -> list[dict]:
    return [r.body for r in loopback.requests if r.path.endswith("/chat/completions")]


def test_streamed_text_equals_the_server_reply_and_turn_is_recorded(loopback):
    text = "# Title\n\nSome **bold** text, a list:\n\n- one\n- two\n\n```python\nprint('hi')\n```\n"
    loopback.queue(reply=text)
    bot = make_bot(loopback, system="Be brief.")
    sink = RecordingSink()
    reply = bot.ask("Show me Markdown", sink=sink)
    assert reply.text == text and "".join(sink.deltas) == text and len(sink.deltas) > 5
    assert sink.started == ["gpt-4o"] and sink.finished == [reply]
    assert (reply.status, reply.finish_reason, reply.model) == ("complete", "stop", "gpt-4o")
    assert reply.time_to_first_token is not None and reply.total_time >= reply.time_to_first_token
    assert [(m.role, m.text, m.status) for m in bot.history] == [
        ("user", "Show me Markdown", "complete"), ("assistant", text, "complete")]
    body = chat_bodies(loopback)[-1]
    assert body["messages"] == [{"role": "system", "content": "Be brief."},
                                {"role": "user", "content": "Show me Markdown"}]
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}


def test_usage_matches_our_count_and_cost_uses_the_table(loopback):
    loopback.queue(reply="Four words in reply.")
    bot = make_bot(loopback, system="You are a careful assistant.")
    reply = bot.ask("How many tokens is this question?", sink=NullSink())
    assert reply.usage.prompt_tokens == reply.request["prompt_tokens_counted"]
    assert reply.usage.completion_tokens == bot.conversation.counter.count_text("Four words in reply.")
    assert reply.cost == pytest.approx(bot.info.cost(reply.usage.prompt_tokens, reply.usage.completion_tokens))


def test_cached_prompt_tokens_are_reported(loopback):
    bot = make_bot(loopback, system="Context: " + " lorem" * 1500)
    first = bot.ask("First question?", sink=NullSink())
    second = bot.ask("Second question?", sink=NullSink())
    assert first.usage.cached_tokens == 0
    # The server caches the longest shared prefix in 128-token steps, as OpenAI does.
    assert second.usage.cached_tokens >= 1024 and second.usage.cached_tokens % 128 == 0
    assert second.usage.cached_tokens <= second.usage.prompt_tokens
    info = bot.info
    expected = info.cost(second.usage.prompt_tokens, second.usage.completion_tokens, second.usage.cached_tokens)
    assert second.cost == pytest.approx(expected)


def test_history_goes_into_the_next_request_and_is_trimmed_to_budget(loopback):
    bot = make_bot(loopback, context_window=4096, max_tokens=2048)
    for n in range(6):
        loopback.queue(reply=" word" * 400)
        bot.ask(f"question {n}" + " filler" * 200, sink=NullSink())
    body = chat_bodies(loopback)[-1]
    sent = body["messages"]
    assert sent[-1]["content"].startswith("question 5")
    assert sent[0]["role"] == "user"  # whole turns only: never an orphan reply first
    assert body["max_tokens"] == 2048
    assert len(sent) < 11  # older turns were dropped
    assert bot.prepare("x").prompt_tokens <= 2048


def test_parameters_are_sent_and_overrides_last_one_question(loopback):
    bot = make_bot(loopback, temperature=0.2, top_p=0.9, seed=7, frequency_penalty=0.1,
                   presence_penalty=0.3, stop=["END"])
    bot.ask("a", sink=NullSink())
    bot.ask("b", sink=NullSink(), temperature=1.3, max_tokens=50, response_format={"type": "json_object"})
    bot.ask("c", sink=NullSink())
    first, second, third = chat_bodies(loopback)
    for key, value in {"temperature": 0.2, "top_p": 0.9, "seed": 7, "frequency_penalty": 0.1,
                           "presence_penalty": 0.3, "stop": ["END"]}.items():
        assert first[key] == value and third[key] == value
    assert (second["temperature"], second["max_tokens"], second["response_format"]) == (
        1.3, 50, {"type": "json_object"})
    assert "max_tokens" not in third and "response_format" not in third


def test_reasoning_models_get_max_completion_tokens(loopback):
    bot = make_bot(loopback, model="o3-mini", max_tokens=100)
    bot.ask("a", sink=NullSink())
    body = chat_bodies(loopback)[-1]
    assert body["max_completion_tokens"] == 100 and "max_tokens" not in body
    # The answer's reserve is max_tokens whatever name the API gives it.
    assert bot.prepare("b").budget == bot.info.context_window - 100


def test_unknown_parameter_is_a_one_line_error_before_sending(loopback):
    bot = make_bot(loopback)
    with pytest.raises(errors.ConfigurationError, match="^unknown parameter temprature; known: "):
        bot.ask("a", sink=NullSink(), temprature=0.5)
    assert chat_bodies(loopback) == [] and bot.history == []


def test_logprobs_are_returned_per_token(loopback):
    loopback.queue(reply="Yes, indeed.")
    reply = make_bot(loopback).ask("a", sink=NullSink(), logprobs=True, top_logprobs=2)
    assert "".join(item["token"] for item in reply.logprobs) == "Yes, indeed."
    assert all(len(item["top_logprobs"]) == 2 for item in reply.logprobs)
    assert chat_bodies(loopback)[-1]["top_logprobs"] == 2


@pytest.mark.parametrize("finish,status,words", [("length", "truncated", "max_tokens"),
                                                 ("content_filter", "filtered", "content filter")])
def test_truncated_and_filtered_answers_are_told(loopback, finish, status, words):
    loopback.queue(reply="Partial answer", finish_reason=finish)
    bot = make_bot(loopback)
    reply = bot.ask("a", sink=NullSink())
    assert (reply.status, reply.finish_reason) == (status, finish)
    assert words in reply.notice
    assert bot.history[-1].status == status


def test_length_from_max_tokens(loopback):
    loopback.queue(reply=" word" * 50)
    reply = make_bot(loopback).ask("a", sink=NullSink(), max_tokens=10)
    assert reply.status == "truncated" and reply.usage.completion_tokens == 10


def test_no_history_question_neither_reads_nor_writes(loopback):
    bot = make_bot(loopback)
    bot.ask("remember me", sink=NullSink())
    before = bot.history
    bot.ask("one-off", sink=NullSink(), history=False)
    assert bot.history == before
    assert chat_bodies(loopback)[-1]["messages"] == [{"role": "user", "content": "one-off"}]


def test_question_too_long_raises_before_anything_is_sent(loopback):
    bot = make_bot(loopback, context_window=1000, max_tokens=500)
    with pytest.raises(errors.PromptTooLongError, match=r"budget is 500"):
        bot.ask(" word" * 600, sink=NullSink())
    assert chat_bodies(loopback) == []


def test_prompt_token_limit_caps_the_window(loopback):
    bot = make_bot(loopback, prompt_token_limit=300)
    for n in range(4):
        loopback.queue(reply=" word" * 100)
        bot.ask(f"q{n}", sink=NullSink())
    assert bot.prepare("next").prompt_tokens <= 300
    assert bot.budget() == 300


# -- faults ----------------------------------------------------------------------------------

def test_rate_limit_is_retried_honouring_retry_after(loopback):
    loopback.queue(fault="rate_limit", retry_after=0.2)
    loopback.queue(reply="ok after retry")
    bot = make_bot(loopback)
    reply = bot.ask("a", sink=NullSink())
    assert reply.text == "ok after retry" and len(chat_bodies(loopback)) == 2
    times = [r.time for r in loopback.requests if r.path.endswith("/chat/completions")]
    assert times[1] - times[0] >= 0.2  # waited as told (ordering, not a speed assertion)


def test_server_error_then_success_is_retried(loopback):
    loopback.queue(fault="server_error")
    loopback.queue(reply="fine")
    assert make_bot(loopback).ask("a", sink=NullSink()).text == "fine"


@pytest.mark.parametrize("fault,error_class,message", [
    ("rate_limit", errors.RateLimitError, "rate limited (429) after 2 retries at "),
    ("server_error", errors.ServerError, "server error (500) after 2 retries at "),
    ("unauthorized", errors.AuthenticationError, "authentication failed (401) at "),
    ("context_length", errors.ContextLengthError, "the endpoint says the prompt exceeds"),
    ("model_not_found", errors.ModelNotFoundError, "model 'gpt-4o' is not available at "),
])
def test_faults_end_in_one_line_and_leave_history_intact(loopback, fault, error_class, message):
    bot = make_bot(loopback)
    bot.ask("earlier", sink=NullSink())
    before = bot.history
    loopback.queue(fault=fault, retry_after=0.01, times=5)
    sink = RecordingSink()
    with pytest.raises(error_class) as caught:
        bot.ask("this one fails", sink=sink)
    text = str(caught.value)
    assert message in text and "\n" not in text and KEY not in text
    assert bot.history == before
    assert sink.finished[0].status == "failed" and sink.finished[0].error == text


def test_auth_error_names_every_fix(loopback):
    loopback.queue(fault="unauthorized")
    with pytest.raises(errors.AuthenticationError) as caught:
        make_bot(loopback).ask("a", sink=NullSink())
    assert "set OPENAI_API_KEY, pass api_key=, or point OPENAI_BASE_URL" in str(caught.value)


@pytest.mark.parametrize("fault", ["disconnect", "malformed"])
def test_broken_stream_keeps_partial_text_marked(loopback, fault):
    loopback.queue(reply=" alpha beta gamma delta epsilon zeta eta theta", fault=fault, after_tokens=3)
    bot = make_bot(loopback)
    sink = RecordingSink()
    with pytest.raises(errors.StreamError) as caught:
        bot.ask("a", sink=sink)
    assert "\n" not in str(caught.value)
    partial = "".join(sink.deltas)
    assert partial == " alpha beta gamma"
    assert [(m.role, m.text, m.status) for m in bot.history] == [("user", "a", "complete"),
                                                                 ("assistant", partial, "failed")]


def test_disconnect_before_first_token_is_retried(loopback):
    loopback.queue(reply="lost", fault="disconnect", after_tokens=0)
    loopback.queue(reply="second try")
    assert make_bot(loopback).ask("a", sink=NullSink()).text == "second try"


def test_connection_refused_is_one_line(unused_port):
    bot = Chatbot("gpt-4o", base_url=f"http://127.0.0.1:{unused_port}/v1", api_key=KEY, max_retries=1)
    with pytest.raises(errors.EndpointConnectionError) as caught:
        bot.ask("a", sink=NullSink())
    assert str(caught.value).startswith(f"could not reach http://127.0.0.1:{unused_port}/v1 after 1 retry")
    assert bot.history == []


def test_missing_key_names_the_fixes(monkeypatch):
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "AZURE_OPENAI_API_KEY", "AZURE_OPENAI_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(errors.MissingAPIKeyError, match="^no API key and no base URL: set OPENAI_API_KEY, "
                                                          "pass api_key=, or point OPENAI_BASE_URL"):
        Chatbot("gpt-4o").ask("a", sink=NullSink())


# -- interrupts ------------------------------------------------------------------------------

def test_keyboard_interrupt_keeps_a_marked_partial_answer_and_ends_quietly(loopback):
    loopback.queue(tokens=400, rate=200)
    bot = make_bot(loopback)
    sink = RecordingSink(interrupt_after=5)
    reply = bot.ask("long one", sink=sink)  # no exception: ends quietly
    assert reply.status == "interrupted" and reply.text == "".join(sink.deltas)
    assert reply.notice == "answer interrupted: partial text kept"
    assert bot.history[-1].status == "interrupted" and bot.history[-1].text == reply.text
    # The next question still works on the same client.
    loopback.queue(reply="next")
    assert bot.ask("go on", sink=NullSink()).text == "next"


def test_stop_from_another_thread_ends_the_stream(loopback):
    loopback.queue(tokens=2000, rate=100)
    bot = make_bot(loopback)
    sink = RecordingSink()
    timer = threading.Timer(0.5, bot.stop)
    timer.start()
    started = time.perf_counter()
    reply = bot.ask("slow", sink=sink)
    timer.join()
    assert reply.status == "interrupted" and len(reply.text) > 0
    assert time.perf_counter() - started < 10  # would take ~20 s if the stream were not closed
    assert bot.history[-1].status == "interrupted"


def test_stop_before_the_first_token_leaves_history_as_it_was(loopback):
    loopback.queue(fault="slow_first_byte", delay=3.0)
    bot = make_bot(loopback)
    threading.Timer(0.3, bot.stop).start()
    reply = bot.ask("slow start", sink=NullSink())
    assert reply.status == "interrupted" and reply.text == "" and bot.history == []


# -- the key stays secret --------------------------------------------------------------------

def test_key_absent_from_reprs_and_logs(loopback, caplog):
    import logging

    caplog.set_level(logging.DEBUG)
    bot = make_bot(loopback)
    reply = bot.ask("a", sink=NullSink())
    loopback.queue(fault="unauthorized")
    with pytest.raises(errors.AuthenticationError) as caught:
        bot.ask("b", sink=NullSink())
    shown = [repr(bot), repr(bot.client), repr(bot.conversation), repr(reply), str(reply.request),
             str(caught.value), caplog.text]
    assert caplog.text  # the SDK and httpx did log at DEBUG
    for text in shown:
        assert KEY not in text
    assert "key_source='api_key='" in repr(bot.client)


def test_azure_openai_through_the_sdks_azure_client(loopback):
    bot = Chatbot("gpt-4o", azure_endpoint=loopback.root_url, api_version="2024-10-21",
                  azure_deployment="my-gpt4o", api_key=KEY)
    loopback.queue(reply="from azure")
    assert bot.ask("hi", sink=NullSink()).text == "from azure"
    request = [r for r in loopback.requests if "chat/completions" in r.path][-1]
    assert request.path.startswith("/openai/deployments/my-gpt4o/chat/completions")
    assert request.query == "api-version=2024-10-21"
    assert request.headers.get("api-key") == "***"  # the log masks credentials
    assert KEY not in repr(bot) and bot.client.key_source == "api_key="
