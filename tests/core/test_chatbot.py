"""Chatbot.ask through the real openai SDK against the loopback server: text, usage (reported or
counted locally), params checked and sent, trimming as sent, faults leaving history intact, the sink
finished exactly once on every path, stop ending an answer at any moment (the server log as
witness), text that cannot be encoded made encodable. Retries and error wording: test_client.py."""

from __future__ import annotations

import io
import random
import signal
import subprocess
import sys
import threading
import time

import pytest
from support.asking import ask_in_thread
from support.recording import RecordingSink

from jupyter_llmchat.core import errors
from jupyter_llmchat.core.chatbot import Chatbot
from jupyter_llmchat.core.reply import NullSink, PrintSink, Usage
from jupyter_llmchat.core.tokens import TokenCounter, count_prompt_tokens
from jupyter_llmchat.server import LoopbackServer

KEY = "sk-test-DO-NOT-LEAK-4f9a2c"


def make_bot(loopback, **kwargs) -> Chatbot:
    kwargs.setdefault("max_retries", 2)
    return Chatbot(kwargs.pop("model", "gpt-4o"), base_url=loopback.base_url, api_key=KEY, **kwargs)


def chat_bodies(loopback) -> list[dict]:
    return [r.body for r in loopback.requests if r.path.endswith("/chat/completions")]


def chat_logs(loopback) -> list:
    return [r for r in loopback.requests if r.path.endswith("/chat/completions")]


def wait_for(condition, timeout: float = 20.0) -> None:
    """Poll ``condition`` until it holds: the server's log and helper threads finish on their own."""
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.005)


def holding_headers(loopback) -> bool:
    """The last chat request took its ``slow_first_byte`` script: the server holds back its headers.
    (A request is logged, outcome None, as soon as its body is read, before it takes a script, so
    "not the fault" alone would also hold for a request the server has not looked at yet.)"""
    logs = chat_logs(loopback)
    return bool(logs) and logs[-1].outcome == "fault:slow_first_byte"


def join_helper_threads() -> None:
    """Wait until the helper threads of abandoned work (prepare, requests) have ended on their own."""
    for thread in threading.enumerate():
        if thread.name in ("llmchat-request", "llmchat-prepare", "llmchat-count"):
            thread.join(30)


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


@pytest.mark.parametrize("settings, message", [
    ({"max_tokens": 0}, "max_tokens must be a whole number >= 1, got 0"),
    ({"temperature": 2.5}, "temperature must be between 0 and 2, got 2.5"),
    ({"top_p": -0.5}, "top_p must be between 0 and 1, got -0.5"),
    ({"frequency_penalty": 2.1}, "frequency_penalty must be between -2 and 2, got 2.1"),
    ({"presence_penalty": -3}, "presence_penalty must be between -2 and 2, got -3"),
    ({"max_retries": -1}, "max_retries must be a whole number >= 0, got -1"),
    ({"timeout": 0}, "timeout must be a number of seconds > 0, got 0"),
    ({"first_byte_timeout": -5}, "first_byte_timeout must be a number of seconds > 0, got -5"),
    ({"context_window": 0}, "context_window must be a whole number >= 1, got 0"),
    ({"prompt_token_limit": 2.5}, "prompt_token_limit must be a whole number >= 1, got 2.5"),
    ({"max_history": 0}, "max_history must be a whole number >= 1, got 0"),
])
def test_settings_are_checked_as_the_magics_check_them(loopback, settings, message):
    with pytest.raises(errors.ConfigurationError) as caught:
        make_bot(loopback, **settings)
    assert str(caught.value) == message
    per_question = {k: v for k, v in settings.items() if k in ("max_tokens", "temperature", "top_p",
                                                                "frequency_penalty", "presence_penalty")}
    if per_question:
        sink = RecordingSink()
        with pytest.raises(errors.ConfigurationError, match=f"^{message.replace('.', '[.]')}$"):
            make_bot(loopback).ask("a", sink=sink, **per_question)
        assert sink.started == []  # refused before anything started
    assert chat_bodies(loopback) == []


def test_logprobs_are_returned_per_token(loopback):
    loopback.queue(reply="Yes, indeed.")
    reply = make_bot(loopback).ask("a", sink=NullSink(), logprobs=True, top_logprobs=2)
    assert "".join(item["token"] for item in reply.logprobs) == "Yes, indeed."
    assert all(len(item["top_logprobs"]) == 2 for item in reply.logprobs)
    assert chat_bodies(loopback)[-1]["top_logprobs"] == 2


@pytest.mark.parametrize("finish,status,words", [("length", "truncated", "output limit"),
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
    out = io.StringIO()
    reply = make_bot(loopback).ask("a", sink=PrintSink(out), max_tokens=10)
    assert reply.status == "truncated" and reply.usage.completion_tokens == 10
    assert reply.notice == "answer truncated: it reached max_tokens=10 (finish_reason=length)"
    assert out.getvalue() == " word" * 10 + "\n[answer truncated: it reached max_tokens=10 (finish_reason=length)]\n"


def test_length_without_max_tokens_names_the_models_or_servers_limit(loopback):
    loopback.queue(reply="Partial answer", finish_reason="length")  # the server's own cap cut it
    out = io.StringIO()
    reply = make_bot(loopback).ask("a", sink=PrintSink(out))
    assert "max_tokens" not in chat_bodies(loopback)[-1] and reply.status == "truncated"
    notice = ("answer truncated: it reached the model's or the server's output limit; max_tokens was not set "
              "(finish_reason=length)")
    assert reply.notice == notice and out.getvalue() == f"Partial answer\n[{notice}]\n"
    # max_tokens set, but the answer was cut short of it (the server's window filled first)
    loopback.queue(reply="Partial answer", finish_reason="length")
    reply = make_bot(loopback, model="o3-mini").ask("a", sink=NullSink(), max_tokens=100)
    assert chat_bodies(loopback)[-1]["max_completion_tokens"] == 100 and reply.usage.completion_tokens < 100
    assert reply.notice == ("answer truncated: it reached the model's or the server's output limit before "
                            "max_tokens=100 (finish_reason=length)")


def test_ask_without_a_sink_prints_plain_text_outside_a_notebook(loopback, capsys):
    loopback.queue(reply="Hello there", finish_reason="length")
    reply = make_bot(loopback).ask("hi")
    assert capsys.readouterr().out == f"Hello there\n[{reply.notice}]\n" and reply.status == "truncated"


def test_overrides_apply_to_one_question_and_system_false_sends_none(loopback):
    bot = make_bot(loopback, system="Be brief.")
    bot.ask("a", sink=NullSink(), system=False, temperature=0.5, model="gpt-4o-mini")
    assert [m["role"] for m in chat_bodies(loopback)[-1]["messages"]] == ["user"]
    assert (chat_bodies(loopback)[-1]["model"], chat_bodies(loopback)[-1]["temperature"]) == ("gpt-4o-mini", 0.5)
    bot.ask("b", sink=NullSink(), history=False)  # no earlier turns, but the system message applies
    assert chat_bodies(loopback)[-1]["messages"] == [{"role": "system", "content": "Be brief."},
                                                     {"role": "user", "content": "b"}]
    assert chat_bodies(loopback)[-1]["model"] == "gpt-4o" and "temperature" not in chat_bodies(loopback)[-1]
    with pytest.raises(errors.ConfigurationError, match=r"^unknown parameter temprature; known: temperature"):
        bot.ask("c", sink=NullSink(), temprature=1)
    assert len(chat_bodies(loopback)) == 2  # checked before anything was sent


def test_no_history_question_neither_reads_nor_writes(loopback):
    bot = make_bot(loopback)
    bot.ask("remember me", sink=NullSink())
    before = bot.history
    bot.ask("one-off", sink=NullSink(), history=False)
    assert bot.history == before
    assert chat_bodies(loopback)[-1]["messages"] == [{"role": "user", "content": "one-off"}]


def test_question_too_long_raises_before_anything_is_sent(loopback):
    bot = make_bot(loopback, context_window=1000, max_tokens=500)
    with pytest.raises(errors.PromptTooLongError, match=r"budget is 500") as caught:
        bot.ask(" word" * 600, sink=NullSink())
    assert chat_bodies(loopback) == []
    # Only what would help is said: here, keeping less of the window for the answer.
    assert str(caught.value).endswith(f"but the budget is 500; shorten it, or set max_tokens="
                                      f"{1000 - caught.value.needed} or less to keep less of the 1,000-token window "
                                      "for the answer (max_tokens is 500)")
    capped = make_bot(loopback, prompt_token_limit=300)
    with pytest.raises(errors.PromptTooLongError) as caught:
        capped.prepare(" word" * 600)
    assert str(caught.value).endswith("but the budget is 300; shorten it, or raise prompt_token_limit (now 300)")


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
    loopback.queue(tokens=2000, rate=100)  # 20 s of answer
    bot = make_bot(loopback)
    sink = RecordingSink()
    thread, outcome = ask_in_thread(bot, "slow", sink=sink)
    wait_for(lambda: sink.deltas)  # streaming
    bot.stop()
    thread.join(30)
    [reply] = outcome
    assert reply.status == "interrupted" and reply.text and reply.text == "".join(sink.deltas)
    assert sink.finished == [reply] and bot.history[-1].status == "interrupted"
    # The stream was closed, not read to its end: the server saw the client hang up mid-answer
    # (a stream left open would have run on to "complete").
    wait_for(lambda: chat_logs(loopback)[-1].outcome == "client_closed")
    assert [r.outcome for r in chat_logs(loopback)] == ["client_closed"]
    assert reply.usage is not None and reply.usage.completion_tokens < 2000


def test_stop_before_the_first_token_leaves_history_as_it_was(loopback):
    loopback.queue(fault="slow_first_byte", delay=3.0)
    bot = make_bot(loopback)
    threading.Timer(0.3, bot.stop).start()
    reply = bot.ask("slow start", sink=NullSink())
    assert reply.status == "interrupted" and reply.text == "" and bot.history == []


# -- stop means stop, at every moment ------------------------------------------------------------

def test_a_stop_right_after_ask_begins_is_never_lost():
    # A server of its own: a request cut while it is being sent may reach a server after this test.
    with LoopbackServer() as server:
        server.queue(fault="slow_first_byte", delay=30.0, times=20)
        bot = make_bot(server)
        for trial in range(20):
            sink = RecordingSink()
            thread, outcome = ask_in_thread(bot, f"q{trial}", sink=sink)
            wait_for(lambda: bot.busy)  # ask() has begun
            time.sleep(random.uniform(0, 0.005))
            bot.stop()
            thread.join(30)
            [reply] = outcome
            assert (reply.status, reply.text, sink.finished) == ("interrupted", "", [reply])
        assert bot.history == [] and not bot.busy
        join_helper_threads()


def slow_figure():
    """A matplotlib figure holding an artist that takes until ``release`` is set to draw: a stop
    lands while the image is being prepared. Returns (figure, rendering, release)."""
    from matplotlib.artist import Artist
    from matplotlib.figure import Figure

    rendering, release = threading.Event(), threading.Event()

    class SlowArtist(Artist):
        def draw(self, renderer) -> None:
            rendering.set()
            release.wait(30)

    figure = Figure(figsize=(1, 1))
    figure.add_artist(SlowArtist())
    return figure, rendering, release


def test_stop_while_images_are_prepared_sends_nothing(loopback):
    bot = make_bot(loopback)
    figure, rendering, release = slow_figure()
    sink = RecordingSink()
    thread, outcome = ask_in_thread(bot, "what is plotted?", images=[figure], sink=sink)
    assert rendering.wait(30)
    bot.stop()
    thread.join(30)
    [reply] = outcome
    assert not release.is_set()  # ask returned while the figure was still being drawn
    assert (reply.status, reply.text, reply.notice) == ("interrupted", "", "answer interrupted before any text")
    assert sink.started == ["gpt-4o"] and sink.finished == [reply]
    release.set()
    join_helper_threads()
    assert chat_logs(loopback) == [] and bot.history == []  # no request ever reached the server


def test_stop_while_waiting_for_headers_hangs_up(loopback):
    loopback.queue(fault="slow_first_byte", delay=30.0)
    bot = make_bot(loopback)
    thread, outcome = ask_in_thread(bot, "slow start", sink=NullSink())
    wait_for(lambda: holding_headers(loopback))  # the request reached the server, which waits
    bot.stop()
    thread.join(30)
    assert outcome[0].status == "interrupted" and bot.history == []
    wait_for(lambda: not holding_headers(loopback))  # the server noticed the hang-up
    assert [r.outcome for r in chat_logs(loopback)] == ["client_closed"]


def test_stop_during_a_retry_wait_is_interrupted_and_sends_nothing_more(loopback):
    loopback.queue(fault="rate_limit", retry_after=0.5)  # the SDK sleeps in its own retry loop
    loopback.queue(reply="the retry that must not happen")
    bot = make_bot(loopback)
    thread, outcome = ask_in_thread(bot, "q", sink=NullSink())
    wait_for(lambda: chat_logs(loopback) and chat_logs(loopback)[-1].status == 429)
    bot.stop()
    thread.join(30)
    [reply] = outcome
    assert (reply.status, reply.text, bot.history) == ("interrupted", "", [])  # not "complete" with no text
    join_helper_threads()
    # One request, answered 429; the retry never went out. (Its outcome may read "client_closed": the
    # 429 is logged when its headers go out, and the stop can cut the body being written.)
    assert [r.status for r in chat_logs(loopback)] == [429] and loopback.pending == 1


def test_one_stop_ends_every_answer_in_flight(loopback):
    loopback.queue(tokens=3000, rate=100, times=2)
    bot = make_bot(loopback)
    sinks = [RecordingSink(), RecordingSink()]
    asks = [ask_in_thread(bot, f"long {n}", sink=sink) for n, sink in enumerate(sinks)]
    wait_for(lambda: all(sink.deltas for sink in sinks))  # both are streaming
    bot.stop()
    for thread, _ in asks:
        thread.join(30)
    replies = [outcome[0] for _, outcome in asks]
    assert [reply.status for reply in replies] == ["interrupted", "interrupted"]
    assert all(reply.text == "".join(sink.deltas) and reply.text for reply, sink in zip(replies, sinks))
    wait_for(lambda: all(r.outcome == "client_closed" for r in chat_logs(loopback)))
    assert [r.outcome for r in chat_logs(loopback)] == ["client_closed", "client_closed"]
    assert sorted(m.status for m in bot.history) == ["complete", "complete", "interrupted", "interrupted"]


def test_ctrl_c_in_the_main_thread_interrupts_a_wait_for_headers(loopback):
    loopback.queue(fault="slow_first_byte", delay=60.0)
    script = ("import sys\n"
              "from jupyter_llmchat.core.chatbot import Chatbot\n"
              "from jupyter_llmchat.core.reply import NullSink\n"
              "bot = Chatbot('gpt-4o', base_url=sys.argv[1], api_key='k')\n"
              "reply = bot.ask('wait for me', sink=NullSink())\n"
              "print(reply.status, repr(reply.text), len(bot.history))\n")
    child = subprocess.Popen([sys.executable, "-c", script, loopback.base_url], stdout=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: holding_headers(loopback), timeout=120)
        child.send_signal(signal.SIGINT)
        assert child.communicate(timeout=60)[0] == "interrupted '' 0\n" and child.returncode == 0
    finally:
        if child.poll() is None:
            child.kill()
    wait_for(lambda: not holding_headers(loopback))
    assert chat_logs(loopback)[-1].outcome == "client_closed"


def test_a_server_that_never_answers_fails_after_first_byte_timeout(loopback):
    loopback.queue(fault="slow_first_byte", delay=30.0)
    bot = make_bot(loopback, first_byte_timeout=0.2)
    sink = RecordingSink()
    with pytest.raises(errors.EndpointConnectionError, match=r"^no response from .* within 0.2 s \(first_byte_timeout\)"):
        bot.ask("anyone?", sink=sink)
    assert sink.finished[0].status == "failed" and bot.history == []
    wait_for(lambda: chat_logs(loopback) and chat_logs(loopback)[-1].outcome == "client_closed")  # settled


# -- nothing silently empty ------------------------------------------------------------------------

@pytest.mark.parametrize("fault", ["empty_stream", "html_page"])
def test_an_answer_with_nothing_in_it_is_an_error_and_the_history_stays_usable(loopback, fault):
    bot = make_bot(loopback)
    bot.ask("earlier", sink=NullSink())
    before = bot.history
    loopback.queue(fault=fault)
    sink = RecordingSink()
    with pytest.raises(errors.StreamError) as caught:
        bot.ask("this one", sink=sink)
    assert sink.finished[0].status == "failed" and sink.finished[0].error == str(caught.value)
    assert bot.history == before
    loopback.queue(reply="works again")
    assert bot.ask("next", sink=NullSink()).text == "works again"


def test_an_answer_cut_without_finish_reason_is_kept_marked(loopback):
    loopback.queue(reply=" alpha beta gamma", fault="no_finish", after_tokens=2)
    bot = make_bot(loopback)
    with pytest.raises(errors.StreamError, match="ended before the answer finished"):
        bot.ask("q", sink=NullSink())
    assert [(m.role, m.text, m.status) for m in bot.history] == [("user", "q", "complete"),
                                                                 ("assistant", " alpha beta", "failed")]


def test_without_reported_usage_footers_and_ledger_get_our_exact_counts(loopback):
    loopback.queue(reply="Counted by us, exactly.", fault="no_usage")
    bot = make_bot(loopback, system="Be brief.")
    heard = []
    bot.reply_listeners.append(heard.append)
    reply = bot.ask("How many tokens?", sink=NullSink())
    sent = chat_bodies(loopback)[-1]["messages"]
    expected = Usage(count_prompt_tokens(sent, "gpt-4o"), TokenCounter("gpt-4o").count_text("Counted by us, exactly."),
                     0, source="counted")
    assert reply.usage == expected and reply.usage.counted_locally and heard == [reply]
    assert reply.cost == pytest.approx(bot.info.cost(expected.prompt_tokens, expected.completion_tokens))
    assert reply.request["prompt_tokens_counted"] == expected.prompt_tokens
    assert bot.history[-1].usage == expected
    loopback.queue(reply="reported")
    assert bot.ask("again", sink=NullSink()).usage.source == "reported"


# -- text that cannot be encoded -----------------------------------------------------------------------

def test_lone_and_split_surrogates_never_escape_ask(loopback):
    loopback.queue(reply="pair 😀 then 🎉", fault="lone_surrogate")
    bot = make_bot(loopback)
    reply = bot.ask("a lone \ud83d half and a pair \ud83d\ude00", sink=NullSink())
    assert reply.text == "pair \ufffd then 🎉" and reply.status == "complete"
    assert chat_bodies(loopback)[-1]["messages"][-1]["content"] == "a lone \ufffd half and a pair 😀"
    assert [m.text for m in bot.history] == ["a lone \ufffd half and a pair 😀", "pair \ufffd then 🎉"]


# -- a small window, and the first text without a vocabulary ------------------------------------------

def test_a_small_context_window_without_max_tokens_keeps_half_for_the_question(loopback):
    bot = make_bot(loopback, model="llama3.1:8b", context_window=4096)
    assert bot.budget() == 2048
    loopback.queue(reply="fine")
    assert bot.ask("a question of a few tokens", sink=NullSink(), model="gpt-4o").text == "fine"
    with pytest.raises(errors.PromptTooLongError) as caught:
        bot.prepare("word " * 2500)
    needed = caught.value.needed
    assert str(caught.value).endswith(
        f"but the budget is 2,048; shorten it, or set max_tokens={4096 - needed} or less to keep less of the "
        "4,096-token window for the answer (2,048 are kept for the answer)")
    with pytest.raises(errors.PromptTooLongError) as caught:
        bot.prepare("word " * 5000)
    assert str(caught.value).endswith("but the budget is 2,048; shorten it, or set context_window= if the "
                                      "model's real window is larger than 4,096")


def test_a_prompt_that_obviously_fits_is_sent_before_it_is_counted(loopback):
    script = ("import sys\n"
              "from jupyter_llmchat.core import tokens\n"
              "from jupyter_llmchat.core.chatbot import Chatbot\n"
              "bot = Chatbot('gpt-4o', base_url=sys.argv[1], api_key='k', system='Be brief.')\n"
              "request = bot.prepare('What is a context window?')\n"
              "bound = (request.counted, request.prompt_tokens, tokens.encoding_loaded('o200k_base'))\n"
              "request.count_now()\n"
              "exact = bot.prepare('What is a context window?')\n"
              "print(bound, request.counted, request.prompt_tokens, exact.counted, exact.prompt_tokens,\n"
              "      request.messages == exact.messages)\n")
    done = subprocess.run([sys.executable, "-c", script, loopback.base_url], capture_output=True, text=True,
                          timeout=120, check=True)
    exact = count_prompt_tokens([{"role": "system", "content": "Be brief."},
                                 {"role": "user", "content": "What is a context window?"}], "gpt-4o")
    bound = 3 + (3 + 6 + 9) + (3 + 4 + 25)  # priming + bytes of role and text + 3 per message
    assert done.stdout == f"(False, {bound}, False) True {exact} True {exact} True\n"


def test_warm_up_imports_the_sdk_that_importing_the_chatbot_does_not():
    script = ("import sys\n"
              "from jupyter_llmchat.core.chatbot import Chatbot, warm_up\n"
              "before = 'openai' in sys.modules\n"
              "warm_up('gpt-4o')\n"
              "print(before, 'openai' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout == "False True\n"
