"""Chatbot.ask through the real openai SDK against the loopback server: text, usage, params,
trimming as sent, faults leaving history intact, the sink finished exactly once on every path,
interrupts keeping a marked partial answer. Retries and error wording: test_client.py."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import pytest
from support.recording import RecordingSink

from jupyter_llmchat.core import errors
from jupyter_llmchat.core.chatbot import Chatbot
from jupyter_llmchat.core.reply import NullSink

KEY = "sk-test-DO-NOT-LEAK-4f9a2c"


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


# -- faults (what each says and how it is retried: test_client.py) -----------------------------

@pytest.mark.parametrize("fault, error_class", [
    ("rate_limit", errors.RateLimitError),
    ("server_error", errors.ServerError),
    ("unauthorized", errors.AuthenticationError),
    ("context_length", errors.ContextLengthError),
    ("model_not_found", errors.ModelNotFoundError),
])
def test_faults_end_in_one_line_and_leave_history_intact(loopback, fault, error_class):
    bot = make_bot(loopback, max_retries=0)
    bot.ask("earlier", sink=NullSink())
    before = bot.history
    loopback.queue(fault=fault, times=5)
    sink = RecordingSink()
    with pytest.raises(error_class) as caught:
        bot.ask("this one fails", sink=sink)
    text = str(caught.value)
    assert "\n" not in text and KEY not in text
    assert bot.history == before
    assert sink.finished[0].status == "failed" and sink.finished[0].error == text
    assert sink.finished[0].notice == f"request failed: {text}"


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
    assert len(chat_bodies(loopback)) == 1  # text had arrived: never sent again


def test_drop_before_the_first_token_is_sent_again_and_recorded_once(loopback):
    loopback.queue(reply="lost", fault="disconnect", after_tokens=0)
    loopback.queue(reply="second try")
    bot = make_bot(loopback)
    sink = RecordingSink()
    assert bot.ask("a", sink=sink).text == "second try"
    assert "".join(sink.deltas) == "second try" and len(sink.finished) == 1
    assert [(m.role, m.text) for m in bot.history] == [("user", "a"), ("assistant", "second try")]


# -- the sink: finished exactly once, whatever happens ---------------------------------------

class FaultySink(RecordingSink):
    """A RecordingSink that also logs every call in order, and raises ``error`` in call number
    ``at`` of ``method`` (after recording it)."""

    def __init__(self, method: str | None = None, error: BaseException | None = None, at: int = 1) -> None:
        super().__init__()
        self.calls: list[str] = []
        self.method, self.error, self.at = method, error, at

    def _called(self, name: str) -> None:
        self.calls.append(name)
        if name == self.method and self.calls.count(name) == self.at and self.error is not None:
            raise self.error

    def start(self, model: str) -> None:
        super().start(model)
        self._called("start")

    def write(self, text: str) -> None:
        super().write(text)
        self._called("write")

    def finish(self, reply) -> None:
        super().finish(reply)
        self._called("finish")


REPLY = " one two three four five six"


class SinkBug(Exception):
    """What a broken sink raises: a bug, not the endpoint's failure."""


@pytest.mark.parametrize("fails_in, at, fault, status, raised, kept", [
    (None, 1, None, "complete", None, REPLY),
    (None, 1, "unauthorized", "failed", errors.AuthenticationError, None),
    (None, 1, "disconnect", "failed", errors.StreamError, " one two three"),
    ("write", 2, None, "interrupted", KeyboardInterrupt, " one two"),
    ("start", 1, None, "interrupted", KeyboardInterrupt, None),
    ("write", 2, None, "failed", SinkBug, " one two"),
    ("start", 1, None, "failed", SinkBug, None),
    ("finish", 1, None, "complete", SinkBug, REPLY),
])
def test_the_sink_is_finished_exactly_once_on_every_path(loopback, fails_in, at, fault, status, raised, kept):
    loopback.queue(reply=REPLY, fault=fault, after_tokens=3)
    bot = make_bot(loopback)
    heard = []
    bot.reply_listeners.append(heard.append)
    error = raised("the sink broke") if fails_in else None
    sink = FaultySink(fails_in, error, at=at)
    if raised in (None, KeyboardInterrupt):
        bot.ask("q", sink=sink)  # an interrupt ends quietly
    else:
        with pytest.raises(raised) as caught:
            bot.ask("q", sink=sink)
        if error is not None:
            assert caught.value is error  # a bug is raised as it is, never turned into a ChatError
    assert sink.calls[0] == "start" and sink.calls[-1] == "finish" and sink.calls.count("finish") == 1
    [reply] = sink.finished
    assert (reply.status, reply.text) == (status, "".join(sink.deltas))
    assert heard == [reply]  # the listeners (store, ledger) heard the turn whatever the sink did
    if raised is SinkBug and status == "failed":
        assert reply.error == "SinkBug: the sink broke"
    expected = [] if kept is None else [("user", "q", "complete"), ("assistant", kept, status)]
    assert [(m.role, m.text, m.status) for m in bot.history] == expected
    assert len(chat_bodies(loopback)) == (0 if fails_in == "start" else 1)  # a bug is never retried


def test_the_cached_replay_takes_the_same_path_to_the_sink(loopback):
    class MemoryCache:
        def __init__(self) -> None:
            self.saved: dict[str, object] = {}

        def lookup(self, request):
            return self.saved.get(repr(request))

        def save(self, request, reply) -> None:
            self.saved[repr(request)] = reply

    loopback.queue(reply=REPLY * 20, finish_reason="length")
    bot = make_bot(loopback, cache=MemoryCache())
    first = bot.ask("q", sink=NullSink(), history=False)
    sink = FaultySink("finish", SinkBug("the sink broke"))
    with pytest.raises(SinkBug):
        bot.ask("q", sink=sink, history=False)
    [replayed] = sink.finished
    assert sink.calls == ["start"] + ["write"] * len(sink.deltas) + ["finish"] and len(sink.deltas) > 1
    assert (replayed.text, replayed.status, replayed.from_cache, replayed.cost) == (first.text, "truncated", True, 0.0)
    assert len(chat_bodies(loopback)) == 1


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


def test_warm_up_imports_the_sdk_that_importing_the_chatbot_does_not():
    script = ("import sys\n"
              "from jupyter_llmchat.core.chatbot import Chatbot, warm_up\n"
              "before = 'openai' in sys.modules\n"
              "warm_up('gpt-4o')\n"
              "print(before, 'openai' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout == "False True\n"
