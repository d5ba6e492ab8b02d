"""Chatbot.embed through the real SDK against the loopback server: a list, a Series and a DataFrame
column in input order; identical texts sent once; a second call sends nothing (the server log as
witness); dimensions passed through and kept apart in the cache; batches within the limits; a
failed batch losing nothing paid for; usage and cost to the ledger listeners; bad input refused
before anything is sent; the progress bar (a 429 retried: tests/core/client/test_embeddings.py)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
from support.embedding_requests import MODEL, TEXTS, embedding_logs, expected, make_bot

from jupyter_llmchat.core.chatbot import Chatbot
from jupyter_llmchat.core.embedding import MAX_REQUEST_TOKENS, MemoryEmbeddingCache, _batches
from jupyter_llmchat.core.errors import AuthenticationError, ConfigurationError
from jupyter_llmchat.core.models import model_info
from jupyter_llmchat.core.tokens import get_encoding
from jupyter_llmchat.server import LoopbackServer
from jupyter_llmchat.store import Store


def test_a_list_comes_back_in_input_order_as_float32(loopback):
    vectors = make_bot(loopback).embed(TEXTS, progress=False)
    assert vectors.dtype == np.float32 and vectors.shape == (40, 1536)
    assert np.array_equal(vectors, expected(TEXTS))
    (logged,) = embedding_logs(loopback)
    assert logged.body == {"model": MODEL, "input": TEXTS, "encoding_format": "base64"}


def test_a_series_keeps_its_order_not_its_index(loopback):
    series = pd.Series(TEXTS[:5], index=[40, 3, 17, 0, 9])
    assert np.array_equal(make_bot(loopback).embed(series, progress=False), expected(TEXTS[:5]))


def test_a_dataframe_column_is_embedded_by_name_or_as_the_only_column(loopback):
    frame = pd.DataFrame({"id": range(5), "body": TEXTS[:5]})
    bot = make_bot(loopback)
    assert np.array_equal(bot.embed(frame, column="body", progress=False), expected(TEXTS[:5]))
    assert np.array_equal(bot.embed(frame["body"], progress=False), expected(TEXTS[:5]))
    assert np.array_equal(bot.embed(frame[["body"]], progress=False), expected(TEXTS[:5]))


def test_identical_texts_are_sent_once(loopback):
    texts = ["a", "b", "a", "c", "b", "a"]
    vectors = make_bot(loopback).embed(texts, progress=False)
    assert np.array_equal(vectors, expected(texts))
    assert [r.body["input"] for r in embedding_logs(loopback)] == [["a", "b", "c"]]


def test_a_second_call_sends_nothing_and_a_partly_new_one_only_the_new_texts(loopback):
    bot = make_bot(loopback)
    first = bot.embed(TEXTS, progress=False)
    again = bot.embed(list(reversed(TEXTS)), progress=False)
    assert np.array_equal(again, first[::-1])
    assert len(embedding_logs(loopback)) == 1
    bot.embed(["new one", TEXTS[0], "new two"], progress=False)
    assert [r.body["input"] for r in embedding_logs(loopback)][1:] == [["new one", "new two"]]


def test_dimensions_are_passed_through_and_cached_apart(loopback):
    bot = make_bot(loopback)
    short = bot.embed(TEXTS[:3], dimensions=64, progress=False)
    assert short.shape == (3, 64) and np.allclose(short, expected(TEXTS[:3], 64))
    full = bot.embed(TEXTS[:3], progress=False)
    assert full.shape == (3, 1536)
    assert bot.embed(TEXTS[:3], dimensions=64, progress=False).shape == (3, 64)
    assert [r.body.get("dimensions") for r in embedding_logs(loopback)] == [64, None]


def test_batches_follow_batch_size(loopback):
    make_bot(loopback).embed(TEXTS, batch_size=16, concurrency=2, progress=False)
    assert sorted(len(r.body["input"]) for r in embedding_logs(loopback)) == [8, 16, 16]
    sent = [text for r in embedding_logs(loopback) for text in r.body["input"]]
    assert sorted(sent) == sorted(TEXTS)


def test_batches_stay_under_the_request_token_limit() -> None:
    counts = {"a": 200_000, "b": 90_000, "c": 20_000, "d": 5}
    assert _batches(["a", "b", "c", "d"], counts, 2048) == [["a", "b"], ["c", "d"]]
    assert sum(counts[t] for t in ["a", "b"]) <= MAX_REQUEST_TOKENS
    assert _batches(["a", "b", "c", "d"], counts, 1) == [["a"], ["b"], ["c"], ["d"]]


def test_usage_and_cost_go_to_the_ledger_listeners_once_per_call(loopback):
    bot = make_bot(loopback)
    seen = []
    bot.reply_listeners.append(seen.append)
    bot.embed(TEXTS, batch_size=16, progress=False)
    tokens = sum(len(get_encoding("cl100k_base").encode(t)) for t in TEXTS)
    (reply,) = seen
    assert (reply.model, reply.text, reply.usage.prompt_tokens, reply.usage.completion_tokens) == (MODEL, "", tokens, 0)
    assert reply.cost == pytest.approx(tokens * 0.02 / 1e6) == model_info(MODEL).cost(tokens, 0)
    assert reply.request == {"model": MODEL, "endpoint": "embeddings", "texts": 40, "requests": 3, "dimensions": None}
    bot.embed(TEXTS, progress=False)
    assert len(seen) == 1  # nothing sent, nothing billed


def test_a_failed_batch_ends_the_call_but_what_was_paid_is_kept(loopback):
    bot = make_bot(loopback, max_retries=0)
    seen = []
    bot.reply_listeners.append(seen.append)
    loopback.queue()  # the first request is answered
    loopback.queue(fault="unauthorized")
    with pytest.raises(AuthenticationError):
        bot.embed(TEXTS, batch_size=10, concurrency=1, progress=False)
    first = embedding_logs(loopback)[0].body["input"]
    assert len(seen) == 1 and seen[0].request["texts"] == 10
    vectors = bot.embed(TEXTS, batch_size=10, concurrency=1, progress=False)
    assert np.array_equal(vectors, expected(TEXTS))
    resent = [text for r in embedding_logs(loopback)[2:] for text in r.body["input"]]
    assert sorted(resent) == sorted(set(TEXTS) - set(first))  # the paid-for batch was not asked again


def wait_for(condition, timeout: float = 60.0) -> None:
    """Poll ``condition`` until it holds (the server's log fills in on its own)."""
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)


def test_an_interrupted_call_keeps_what_arrived_and_the_same_call_asks_only_the_rest(tmp_path):
    path = tmp_path / "kept.sqlite3"
    script = ("import sys\n"
              "from jupyter_llmchat.core.chatbot import Chatbot\n"
              "from jupyter_llmchat.store import Store\n"
              "bot = Chatbot('gpt-4o-mini', base_url=sys.argv[1], api_key='k')\n"
              "Store(sys.argv[2]).attach(bot, 's')\n"
              f"texts = {TEXTS!r}\n"
              "try:\n"
              "    bot.embed(texts, batch_size=10, concurrency=1, progress=False)\n"
              "except KeyboardInterrupt:\n"
              "    print('interrupted')\n")
    with LoopbackServer() as server:  # its own: the cut request must not land in another test's log
        server.queue()  # the first request is answered at once
        server.queue(delay=60.0)  # the second is in flight when Ctrl-C comes
        child = subprocess.Popen([sys.executable, "-c", script, server.base_url, str(path)], stdout=subprocess.PIPE,
                                 text=True)
        try:
            wait_for(lambda: len(embedding_logs(server)) == 2)
            child.send_signal(signal.SIGINT)
            assert child.communicate(timeout=60)[0] == "interrupted\n" and child.returncode == 0
        finally:
            if child.poll() is None:
                child.kill()
        wait_for(lambda: embedding_logs(server)[1].outcome == "client_closed")
        assert [r.outcome for r in embedding_logs(server)] == ["complete", "client_closed"]  # cut, not left running
        answered = embedding_logs(server)[0].body["input"]
        with Store(path) as store:  # the same call again, as after a restart
            bot = Chatbot("gpt-4o-mini", base_url=server.base_url, api_key="k")
            store.attach(bot, "s")
            vectors = bot.embed(TEXTS, batch_size=10, concurrency=1, progress=False)
        assert np.array_equal(vectors, expected(TEXTS))
        asked_again = [text for r in embedding_logs(server)[2:] for text in r.body["input"]]
        assert sorted(asked_again) == sorted(set(TEXTS) - set(answered)) and len(answered) == 10


@pytest.mark.parametrize(("items", "options", "message"), [
    (["ok", ""], {}, "embed: item 1 is empty: the Embeddings API rejects empty texts"),
    (pd.Series(["ok", None], dtype=object), {}, "embed: item 1 is not text (NoneType None): drop or fill missing values first"),
    (pd.Series(["ok", float("nan")]), {}, "embed: item 1 is not text (float nan): drop or fill missing values first"),
    ([1, 2], {}, "embed: item 0 is not text (int 1): drop or fill missing values first"),
    (42, {}, "embed takes a string, a list of strings, a Series or a DataFrame column, got int"),
    (pd.DataFrame({"a": ["x"], "b": ["y"]}), {},
     "embed: the DataFrame has 2 columns; name the one to embed with column= (e.g. column='a')"),
    (pd.DataFrame({"a": ["x"]}), {"column": "z"}, "embed: no column 'z' in the DataFrame (columns: a)"),
    (["x"], {"column": "a"}, "embed: column= applies to a DataFrame only"),
    (["x"], {"dimensions": 0}, "dimensions must be a whole number >= 1, got 0"),
    (["x"], {"batch_size": 4096}, "batch_size must be at most 2,048 (texts per request the API takes), got 4,096"),
    (["hello" + " hello" * 8191], {}, "embed: a text of 8,192 tokens is over text-embedding-3-small's 8,191-token "
                                      "limit (unique text 0: 'hello hello hello hello hello hello hell'…): shorten "
                                      "or split it"),
])
def test_bad_input_is_one_line_before_anything_is_sent(loopback, items, options, message):
    with pytest.raises(ConfigurationError) as caught:
        make_bot(loopback).embed(items, progress=False, **options)
    assert str(caught.value) == message
    assert embedding_logs(loopback) == []


def test_nothing_to_embed_is_an_empty_array(loopback):
    assert make_bot(loopback).embed([], progress=False).shape == (0, 0)
    assert make_bot(loopback).embed([], dimensions=8, progress=False).shape == (0, 8)
    assert embedding_logs(loopback) == []


def test_a_single_string_is_one_row(loopback):
    assert np.array_equal(make_bot(loopback).embed("just this", progress=False), expected(["just this"]))


def test_the_progress_bar_counts_texts_tokens_and_cost(loopback, capsys):
    make_bot(loopback).embed(TEXTS, batch_size=16)  # three requests: the bar shows by default
    err = capsys.readouterr().err
    last = err.replace("\r", "\n").strip().splitlines()[-1]
    tokens = sum(len(get_encoding("cl100k_base").encode(t)) for t in TEXTS)
    assert last.startswith("embed text-embedding-3-small: 100%|")
    assert f"| 40/40 rows, {tokens:,} tokens, $" in last
    make_bot(loopback).embed(TEXTS[:3])  # one request: no bar
    assert capsys.readouterr().err == ""


def test_the_memory_cache_keeps_the_most_recent_within_its_bytes() -> None:
    cache = MemoryEmbeddingCache(max_bytes=3 * 16)
    vector = np.zeros(4, dtype="<f4")  # 16 bytes
    cache.put_many(MODEL, None, {"a": vector, "b": vector, "c": vector})
    assert set(cache.get_many(MODEL, None, ["a"])) == {"a"}  # a is now the most recent
    cache.put_many(MODEL, None, {"d": vector})
    assert set(cache.get_many(MODEL, None, ["a", "b", "c", "d"])) == {"a", "c", "d"} and len(cache) == 3
    assert cache.get_many(MODEL, 8, ["a"]) == {}
