"""ChatClient through the real openai SDK against the loopback server: one retry policy (the
SDK's retries plus the drop-before-text loop, one budget), a given SDK client keeping its own
max_retries, one-line errors that name their cause (other servers' wordings too), nothing silently
empty, close() ending a stream at once in every phase (server log as witness), the first-byte
deadline, bugs not retried, the key and base-URL secrets kept secret."""

from __future__ import annotations

import logging
import re
import socket
import threading

import openai
import pytest
from support.loopback_client import chat_logs, wait_for

from jupyter_llmchat.core import errors
from jupyter_llmchat.core.chatbot import Chatbot
from jupyter_llmchat.core.client import ChatClient, ChatStream
from jupyter_llmchat.core.reply import NullSink
from jupyter_llmchat.server import LoopbackServer

KEY = "sk-test-DO-NOT-LEAK-4f9a2c"
QUESTION = [{"role": "user", "content": "hi"}]
DROPPED = "peer closed connection without sending complete message body (incomplete chunked read)"


@pytest.fixture
def unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def make_client(loopback, **kwargs) -> ChatClient:
    kwargs.setdefault("max_retries", 2)
    return ChatClient(base_url=loopback.base_url, api_key=KEY, **kwargs)


def make_sdk(loopback, max_retries: int) -> openai.OpenAI:
    return openai.OpenAI(base_url=loopback.base_url, api_key=KEY, max_retries=max_retries)


def read(stream: ChatStream) -> str:
    return "".join(stream)


def join_request_threads() -> None:
    """Wait until every helper thread of abandoned requests has ended (they end on their own)."""
    for thread in threading.enumerate():
        if thread.name in ("llmchat-request", "llmchat-prepare"):
            thread.join(30)


def retry_counts(loopback) -> list[str]:
    """The SDK numbers each attempt of one call: 0 for the first, 1 for its first retry, ..."""
    return [r.headers["x-stainless-retry-count"] for r in chat_logs(loopback)]


# -- one retry budget: the SDK's retries and the drop-before-text loop -----------------------

def test_a_rate_limit_is_retried_by_the_sdk_exactly_max_retries_times(loopback):
    client = make_client(loopback)
    loopback.queue(fault="rate_limit", retry_after=0.01, times=5)
    with pytest.raises(errors.RateLimitError) as caught:
        read(client.stream("gpt-4o", QUESTION, {}))
    assert str(caught.value) == (f"rate limited (429) after 2 retries at {loopback.base_url}; the server asks "
                                 "to wait 0.01 s: wait and ask again, or lower the request rate")
    assert retry_counts(loopback) == ["0", "1", "2"]  # one SDK call re-sent twice, nothing multiplied
    assert loopback.pending == 2


def test_a_server_error_is_retried_by_the_sdk_then_succeeds(loopback):
    client = make_client(loopback, max_retries=1)
    loopback.queue(fault="server_error")
    loopback.queue(reply="fine")
    stream = client.stream("gpt-4o", QUESTION, {})
    assert read(stream) == "fine"
    assert retry_counts(loopback) == ["0", "1"] and stream.result.retries == 1


def test_a_server_error_that_persists_ends_in_one_line(loopback):
    client = make_client(loopback, max_retries=1)
    loopback.queue(fault="server_error", times=3)
    with pytest.raises(errors.ServerError) as caught:
        read(client.stream("gpt-4o", QUESTION, {}))
    assert str(caught.value) == (f"server error (500) after 1 retry at {loopback.base_url}: The server had an "
                                 "error while processing your request. Sorry about that!; try again later")
    assert len(chat_logs(loopback)) == 2


def test_retry_after_is_honoured(loopback):
    loopback.queue(fault="rate_limit", retry_after=0.3)  # retry-after-ms: 300 (retry-after rounds up to 1)
    loopback.queue(reply="ok after retry")
    assert read(make_client(loopback).stream("gpt-4o", QUESTION, {})) == "ok after retry"
    first, second = (r.time for r in chat_logs(loopback))
    assert second - first >= 0.3  # waited as told (ordering, not a speed assertion)


def test_a_wait_longer_than_the_sdk_allows_is_reported_not_waited(loopback):
    loopback.queue(fault="rate_limit", retry_after=300)
    with pytest.raises(errors.RateLimitError) as caught:
        read(make_client(loopback).stream("gpt-4o", QUESTION, {}))
    assert str(caught.value) == (f"rate limited (429) at {loopback.base_url}; the server asks to wait 300 s: "
                                 "wait and ask again, or lower the request rate")
    assert len(chat_logs(loopback)) == 1


def test_a_stream_that_drops_before_any_text_is_sent_again(loopback):
    loopback.queue(reply="lost", fault="disconnect", after_tokens=0)
    loopback.queue(reply="second try")
    stream = make_client(loopback).stream("gpt-4o", QUESTION, {})
    assert read(stream) == "second try"
    assert [r.outcome for r in chat_logs(loopback)] == ["fault:disconnect", "complete"]
    assert stream.result.retries == 1


def test_drops_before_any_text_stop_at_max_retries(loopback):
    loopback.queue(reply="lost", fault="disconnect", after_tokens=0, times=5)
    with pytest.raises(errors.StreamError) as caught:
        read(make_client(loopback).stream("gpt-4o", QUESTION, {}))
    assert str(caught.value) == (f"the stream from {loopback.base_url} dropped before any text after 2 retries "
                                 f"({DROPPED}); ask again, or check the server")
    assert len(chat_logs(loopback)) == 3


@pytest.mark.parametrize("faults, error_class", [
    (["disconnect", "rate_limit", "disconnect"], errors.StreamError),
    (["rate_limit", "disconnect", "rate_limit"], errors.RateLimitError),
])
def test_drops_and_status_failures_share_one_budget(loopback, faults, error_class):
    for fault in faults:
        loopback.queue(reply="lost", fault=fault, retry_after=0.01, after_tokens=0)
    loopback.queue(reply="never sent", fault=faults[-1], retry_after=0.01, after_tokens=0, times=5)
    with pytest.raises(error_class, match=" after 2 retries "):
        read(make_client(loopback).stream("gpt-4o", QUESTION, {}))
    assert [r.outcome for r in chat_logs(loopback)] == [f"fault:{fault}" for fault in faults]


# -- a ready SDK client keeps its own max_retries ----------------------------------------------

@pytest.mark.parametrize("fault", ["rate_limit", "disconnect"])
def test_a_given_sdk_client_keeps_its_own_max_retries(loopback, fault):
    bot = Chatbot("gpt-4o", client=make_sdk(loopback, max_retries=3))
    assert bot.client.max_retries == 3 and bot.client.key_source == "client="
    loopback.queue(reply="lost", fault=fault, retry_after=0.01, after_tokens=0, times=10)
    with pytest.raises(errors.APIError, match=" after 3 retries "):
        bot.ask("a", sink=NullSink())
    assert len(chat_logs(loopback)) == 4  # 3 + 1, not our budget times the SDK's


def test_a_copy_with_other_retries_is_the_way_to_change_them(loopback):
    sdk = make_sdk(loopback, max_retries=3)
    client = ChatClient(client=sdk.with_options(max_retries=1))
    loopback.queue(fault="rate_limit", retry_after=0.01, times=5)
    with pytest.raises(errors.RateLimitError, match=" after 1 retry "):
        read(client.stream("gpt-4o", QUESTION, {}))
    assert retry_counts(loopback) == ["0", "1"] and sdk.max_retries == 3


def test_settings_beside_a_given_client_are_refused(loopback):
    sdk = make_sdk(loopback, max_retries=3)
    with pytest.raises(errors.ConfigurationError) as caught:
        ChatClient(client=sdk, max_retries=5)
    assert str(caught.value) == ("max_retries= cannot apply to a ready client=: set it on the client itself, "
                                 "e.g. openai.OpenAI(base_url=..., max_retries=2), or leave client= out")
    with pytest.raises(errors.ConfigurationError, match="^api_key=, timeout= cannot apply to a ready client=: "
                                                        "set them on the client itself"):
        Chatbot("gpt-4o", client=ChatClient(client=sdk), api_key=KEY, timeout=5.0)


@pytest.mark.parametrize("value", [-1, True, 2.5])
def test_max_retries_must_be_a_whole_number(value):
    with pytest.raises(errors.ConfigurationError, match=f"^max_retries must be a whole number >= 0, got {value}$"):
        ChatClient(base_url="http://127.0.0.1:9/v1", max_retries=value)


# -- what is not retried, and what the errors say ----------------------------------------------

@pytest.mark.parametrize("fault, message", [
    ("malformed", "the stream from {base_url} sent malformed data before any text (a chunk that is not JSON: "
                  "Expecting property name enclosed in double quotes at character 1): check that base_url= is an "
                  "OpenAI-compatible endpoint"),
    ("stream_error", "the stream from {base_url} reported an error before any text (The server had an error while "
                     "processing your request. Sorry about that!); ask again later"),
])
def test_a_broken_stream_before_any_text_is_one_readable_line_and_not_retried(loopback, fault, message):
    """Malformed data, or an error event, before any text."""
    loopback.queue(reply="lost", fault=fault, after_tokens=0)
    with pytest.raises(errors.StreamError) as caught:
        read(make_client(loopback).stream("gpt-4o", QUESTION, {}))
    assert str(caught.value) == message.format(base_url=loopback.base_url)
    assert len(chat_logs(loopback)) == 1


@pytest.mark.parametrize("fault, cause", [
    ("disconnect", DROPPED),
    ("malformed", "a chunk that is not JSON: Expecting property name enclosed in double quotes at character 1"),
    ("stream_error", "The server had an error while processing your request. Sorry about that!"),
])
def test_a_stream_that_breaks_after_text_names_the_cause_and_is_not_sent_again(loopback, fault, cause):
    loopback.queue(reply=" alpha beta gamma delta", fault=fault, after_tokens=2)
    stream = make_client(loopback).stream("gpt-4o", QUESTION, {})
    received: list[str] = []
    with pytest.raises(errors.StreamError) as caught:
        received.extend(stream)  # what arrived before the break stays in the list
    assert "".join(received) == " alpha beta"
    assert str(caught.value) == (f"the stream from {loopback.base_url} broke after the answer started ({cause}); "
                                 "the partial answer is kept, marked")
    assert len(chat_logs(loopback)) == 1


def test_a_bug_in_the_request_is_raised_as_it_is_and_never_sent(loopback):
    stream = make_client(loopback).stream("gpt-4o", QUESTION, {"temperature": object()})
    with pytest.raises(TypeError, match="^Object of type object is not JSON serializable$"):
        read(stream)
    assert chat_logs(loopback) == []


@pytest.mark.parametrize("fault, error_class, message", [
    ("unauthorized", errors.AuthenticationError,
     "authentication failed (401) at {url}: the API key was rejected or lacks access; set OPENAI_API_KEY, "
     "pass api_key=, or point OPENAI_BASE_URL (base_url=) at a local OpenAI-compatible server"),
    ("context_length", errors.ContextLengthError,
     "the endpoint says the prompt exceeds the model's context window ("),
    ("model_not_found", errors.ModelNotFoundError,
     "model 'gpt-4o' is not available at {url} (404): check the name (Chatbot.client.list_models() lists "
     "what it serves) or the Azure deployment"),
])
def test_requests_the_endpoint_refuses_are_one_line_and_not_retried(loopback, fault, error_class, message):
    loopback.queue(fault=fault, times=3)
    with pytest.raises(error_class) as caught:
        read(make_client(loopback).stream("gpt-4o", QUESTION, {}))
    text = str(caught.value)
    assert text.startswith(message.format(url=loopback.base_url)) and "\n" not in text and KEY not in text
    assert len(chat_logs(loopback)) == 1


def test_connection_refused_is_one_line(unused_port):
    client = ChatClient(base_url=f"http://127.0.0.1:{unused_port}/v1", api_key=KEY, max_retries=1)
    with pytest.raises(errors.EndpointConnectionError) as caught:
        read(client.stream("gpt-4o", QUESTION, {}))
    assert re.fullmatch(rf"could not reach http://127\.0\.0\.1:{unused_port}/v1 after 1 retry \(\[Errno \d+\] "
                        r"Connection refused\): check OPENAI_BASE_URL / base_url= and that the server is running",
                        str(caught.value))


def test_missing_key_names_the_fixes(monkeypatch):
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "AZURE_OPENAI_API_KEY", "AZURE_OPENAI_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    client = ChatClient()
    assert (client.configured(), client.key_source) == (False, "missing")
    with pytest.raises(errors.MissingAPIKeyError) as caught:
        read(client.stream("gpt-4o", QUESTION, {}))
    assert str(caught.value) == ("no API key and no base URL: set OPENAI_API_KEY, pass api_key=, or point "
                                 "OPENAI_BASE_URL (base_url=) at a local OpenAI-compatible server")


def test_list_models_lists_what_the_endpoint_serves():
    with LoopbackServer(api_key=KEY, models=["gpt-4o-mini", "gpt-4o"]) as server:
        assert ChatClient(base_url=server.base_url, api_key=KEY).list_models() == ["gpt-4o", "gpt-4o-mini"]
        with pytest.raises(errors.AuthenticationError, match=r"^authentication failed \(401\) at "):
            ChatClient(base_url=server.base_url, api_key="sk-wrong-key").list_models()


# -- the key stays secret; Azure ---------------------------------------------------------------

def test_key_absent_from_reprs_and_logs(loopback, caplog):
    caplog.set_level(logging.DEBUG)
    bot = Chatbot("gpt-4o", base_url=loopback.base_url, api_key=KEY, max_retries=0)
    reply = bot.ask("a", sink=NullSink())
    loopback.queue(fault="unauthorized")
    with pytest.raises(errors.AuthenticationError) as caught:
        bot.ask("b", sink=NullSink())
    shown = [repr(bot), repr(bot.client), repr(bot.conversation), repr(reply), str(reply.request),
             str(caught.value), caplog.text]
    assert caplog.text  # the SDK and httpx did log at DEBUG
    for text in shown:
        assert KEY not in text
    assert repr(bot.client) == f"ChatClient(base_url={loopback.base_url!r}, key_source='api_key=')"


def test_azure_openai_through_the_sdks_azure_client(loopback):
    client = ChatClient(azure_endpoint=loopback.root_url, api_version="2024-10-21", azure_deployment="my-gpt4o",
                        api_key=KEY)
    loopback.queue(reply="from azure")
    assert read(client.stream("gpt-4o", QUESTION, {})) == "from azure"
    request = chat_logs(loopback)[-1]
    assert request.path == "/openai/deployments/my-gpt4o/chat/completions"
    assert request.query == "api-version=2024-10-21"
    assert request.headers.get("api-key") == "***"  # the log masks credentials
    assert isinstance(client.sdk, openai.AzureOpenAI) and client.sdk.max_retries == 3
    assert KEY not in repr(client) and client.key_source == "api_key="


# -- nothing silently empty ----------------------------------------------------------------------

def test_a_stream_with_no_text_and_no_finish_reason_is_an_error(loopback):
    loopback.queue(fault="empty_stream")  # llama.cpp, when the prompt exceeds its context
    with pytest.raises(errors.StreamError) as caught:
        read(make_client(loopback).stream("gpt-4o", QUESTION, {}))
    assert str(caught.value) == (
        f"the stream from {loopback.base_url} ended without any text or finish_reason: the server failed on the "
        "prompt (llama.cpp does this when the prompt exceeds its context or it cannot read an image); check the "
        "server's log, or set context_window= to its real window")
    assert len(chat_logs(loopback)) == 1  # not retried: it would fail the same way


def test_a_stream_that_ends_without_finish_reason_keeps_what_came_and_says_so(loopback):
    loopback.queue(reply=" alpha beta gamma", fault="no_finish", after_tokens=2)
    received: list[str] = []
    with pytest.raises(errors.StreamError) as caught:
        received.extend(make_client(loopback).stream("gpt-4o", QUESTION, {}))
    assert "".join(received) == " alpha beta"
    assert str(caught.value) == (f"the stream from {loopback.base_url} ended before the answer finished (no "
                                 "finish_reason); the partial answer is kept, marked")


def test_a_stream_without_done_that_said_how_it_ended_is_whole(loopback):
    loopback.queue(reply="all here", fault="no_done")
    stream = make_client(loopback).stream("gpt-4o", QUESTION, {})
    assert read(stream) == "all here" and stream.result.finish_reason == "stop"
    assert stream.result.usage.completion_tokens == 2


def test_a_web_page_is_named_not_read_as_an_empty_answer(loopback):
    loopback.queue(fault="html_page")
    with pytest.raises(errors.StreamError) as caught:
        read(make_client(loopback).stream("gpt-4o", QUESTION, {}))
    assert str(caught.value) == (
        f"{loopback.base_url} answered 200 with a web page (text/html), not a stream of completions: base_url= "
        "must be the API's root (often ending in /v1), not a website")


def test_a_whole_json_answer_from_a_server_that_ignored_stream_is_used(loopback):
    loopback.queue(reply="whole answer", fault="json_body")
    stream = make_client(loopback).stream("gpt-4o", QUESTION, {})
    assert list(stream) == ["whole answer"]
    assert (stream.result.finish_reason, stream.result.model, stream.result.usage.completion_tokens) == (
        "stop", "gpt-4o", 2)


@pytest.mark.parametrize("fault, joined", [("split_surrogates", "smile 😀 and 🎉"),
                                           ("lone_surrogate", "smile \ufffd and 🎉")])
def test_utf16_halves_in_the_stream_become_characters(loopback, fault, joined):
    loopback.queue(reply="smile 😀 and 🎉", fault=fault)
    text = read(make_client(loopback).stream("gpt-4o", QUESTION, {}))
    assert text == joined and text.encode("utf-8")  # encodable: no lone surrogate left


# -- other servers' words ---------------------------------------------------------------------

@pytest.mark.parametrize("fault, error_class, message", [
    ("context_length_litellm", errors.ContextLengthError,
     "the endpoint says the prompt exceeds the model's context window (litellm.ContextWindowExceededError: "
     "litellm.BadRequestError: ContextWindowExceededError: OpenAIException - This model's maximum context length is "
     "128000 tokens. However, your messages resulted in 128001 tokens. Please reduce the length of the messages.); "
     "set context_window=128000 (the window the server names) so trimming keeps the prompt inside it, or lower "
     "max_tokens"),
    ("context_length_llamacpp", errors.ContextLengthError,
     "the endpoint says the prompt exceeds the model's context window (the request exceeds the available context "
     "size, try increasing it); set context_window=128000 (the window the server names) so trimming keeps the "
     "prompt inside it, or lower max_tokens"),
    ("context_length_vllm", errors.ContextLengthError,
     "the endpoint says the prompt exceeds the model's context window (This model's maximum context length is "
     "128000 tokens. However, you requested 128001 tokens (128001 in the messages, 0 in the completion). Please "
     "reduce the length of the messages or completion.); set context_window=128000 (the window the server names) "
     "so trimming keeps the prompt inside it, or lower max_tokens"),
    ("model_not_found_ollama", errors.ModelNotFoundError,
     "model 'gpt-4o' is not available at {url} (404: model \"gpt-4o\" not found, try pulling it first); pull it "
     "on the server first (ollama pull gpt-4o): check the name (Chatbot.client.list_models() lists what it "
     "serves) or the Azure deployment"),
])
def test_other_servers_errors_are_explained_by_status_and_words(loopback, fault, error_class, message):
    loopback.queue(fault=fault)
    with pytest.raises(error_class) as caught:
        read(make_client(loopback).stream("gpt-4o", QUESTION, {}))
    assert str(caught.value) == message.format(url=loopback.base_url)
    assert len(chat_logs(loopback)) == 1


def test_list_models_without_a_model_list_says_so_in_one_line():
    with LoopbackServer(model_list=False) as server:
        with pytest.raises(errors.BadRequestError) as caught:
            ChatClient(base_url=server.base_url, api_key=KEY, max_retries=0).list_models()
        assert str(caught.value) == (f"{server.base_url} does not list its models (GET /models answered 404): ask "
                                     "with the model name its documentation gives")


# -- close() ends the stream at once, whatever it is doing ----------------------------------------

def test_close_while_waiting_for_headers_hangs_up_at_once(loopback):
    loopback.queue(fault="slow_first_byte", delay=30.0)
    stream = make_client(loopback).stream("gpt-4o", QUESTION, {})
    def holding() -> bool:  # the server took its script and holds the headers (logged with outcome None before)
        return bool(chat_logs(loopback)) and chat_logs(loopback)[-1].outcome == "fault:slow_first_byte"

    wait_until_sent = threading.Thread(target=lambda: (wait_for(holding), stream.close()))
    wait_until_sent.start()
    assert read(stream) == "" and stream.stopped
    wait_until_sent.join()
    wait_for(lambda: not holding())
    assert [r.outcome for r in chat_logs(loopback)] == ["client_closed"]  # the server saw the hang-up


def test_close_during_the_sdks_retry_sleep_sends_nothing_more(loopback):
    loopback.queue(fault="rate_limit", retry_after=0.5)  # the SDK sleeps 0.5 s in its own loop
    loopback.queue(reply="never asked for")
    stream = make_client(loopback).stream("gpt-4o", QUESTION, {})
    def answered() -> bool:  # the 429 went out: the SDK reads it, then sleeps before its retry
        return bool(chat_logs(loopback)) and chat_logs(loopback)[-1].status == 429

    closer = threading.Thread(target=lambda: (wait_for(answered), stream.close()))
    closer.start()
    assert read(stream) == "" and stream.stopped
    closer.join()
    join_request_threads()  # the abandoned SDK call wakes from its sleep and is refused
    # One request, answered 429; the retry never went out. (Not its outcome: a 429 is logged as its
    # headers go out, and the close may cut its body, which the log then calls "client_closed".)
    assert [r.status for r in chat_logs(loopback)] == [429] and loopback.pending == 1


def test_close_with_a_given_sdk_client_still_ends_the_iteration_at_once(loopback):
    client = ChatClient(client=make_sdk(loopback, max_retries=0))
    loopback.queue(fault="slow_first_byte", delay=2.0)
    stream = client.stream("gpt-4o", QUESTION, {})
    closer = threading.Thread(target=lambda: (wait_for(lambda: chat_logs(loopback)), stream.close()))
    closer.start()
    assert read(stream) == "" and stream.stopped  # the SDK's own wait is left to finish on its own
    closer.join()


def test_a_server_that_never_answers_meets_the_first_byte_deadline(loopback):
    loopback.queue(fault="slow_first_byte", delay=30.0)
    client = make_client(loopback, first_byte_timeout=0.2)
    with pytest.raises(errors.EndpointConnectionError) as caught:
        read(client.stream("gpt-4o", QUESTION, {}))
    assert str(caught.value) == (
        f"no response from {loopback.base_url} within 0.2 s (first_byte_timeout): the server may be down, overloaded "
        "or still loading the model; check it, or raise first_byte_timeout=")
    wait_for(lambda: chat_logs(loopback) and chat_logs(loopback)[-1].outcome not in (None, "fault:slow_first_byte"))
    assert chat_logs(loopback)[-1].outcome == "client_closed"


def test_the_first_byte_deadline_defaults_to_a_minute_and_is_checked():
    assert ChatClient(base_url="http://127.0.0.1:9/v1").first_byte_timeout == 60.0
    with pytest.raises(errors.ConfigurationError, match=r"^first_byte_timeout must be a number of seconds > 0, got 0$"):
        ChatClient(base_url="http://127.0.0.1:9/v1", first_byte_timeout=0)
    with pytest.raises(errors.ConfigurationError, match=r"^timeout must be a number of seconds > 0, got -1$"):
        ChatClient(base_url="http://127.0.0.1:9/v1", timeout=-1)
    given = Chatbot("gpt-4o", client=openai.OpenAI(base_url="http://127.0.0.1:9/v1", api_key=KEY),
                    first_byte_timeout=5)  # our own wait: it applies to a given SDK client too
    assert given.client.first_byte_timeout == 5
    with pytest.raises(errors.ConfigurationError, match=r"^first_byte_timeout= cannot apply to a ready client=: "):
        Chatbot("gpt-4o", client=given.client, first_byte_timeout=5)  # a ChatClient owns its settings


# -- secrets in the base URL ---------------------------------------------------------------------

def test_secrets_in_the_base_url_never_show(loopback, unused_port, caplog):
    caplog.set_level(logging.DEBUG)
    secret_url = loopback.base_url.replace("http://", "http://ada:pa55-w0rd-9@") + "?api-key=qs-s3cret-77&v=1"
    client = ChatClient(base_url=secret_url, api_key=KEY, max_retries=0)
    shown = f"http://***@127.0.0.1:{loopback.port}/v1?api-key=***&v=1"
    assert client.base_url == shown
    assert repr(client) == f"ChatClient(base_url={shown!r}, key_source='api_key=')"
    assert read(client.stream("gpt-4o", QUESTION, {})) != ""
    assert chat_logs(loopback)[-1].query == "api-key=qs-s3cret-77&v=1"  # sent, as the query of every request
    loopback.queue(fault="server_error")
    with pytest.raises(errors.ServerError) as caught:
        read(client.stream("gpt-4o", QUESTION, {}))
    assert str(caught.value).startswith(f"server error (500) at {shown}: ")
    down = ChatClient(base_url=f"http://ada:pa55-w0rd-9@127.0.0.1:{unused_port}/v1", api_key=KEY, max_retries=0)
    with pytest.raises(errors.EndpointConnectionError) as refused:
        read(down.stream("gpt-4o", QUESTION, {}))
    assert str(refused.value).startswith(f"could not reach http://***@127.0.0.1:{unused_port}/v1 (")
    everything = " ".join([str(caught.value), str(refused.value), repr(down), caplog.text])
    assert "httpx2" in caplog.text or "HTTP Request" in caplog.text  # the HTTP libraries did log
    for secret in ("pa55-w0rd-9", "qs-s3cret-77", KEY):
        assert secret not in everything
