"""The response cache over the real SDK and loopback server: a hit replays byte-identical text
through the sink with no HTTP request; anything that differs misses; temperature > 0 is cached
only on request; partial answers are never cached; the cache outlives the Store object."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from support.recording import RecordingSink

from jupyter_llmchat.core.chatbot import Chatbot
from jupyter_llmchat.core.messages import ImageRef
from jupyter_llmchat.core.reply import NullSink
from jupyter_llmchat.store.cache import ResponseCache, deterministic, request_key
from jupyter_llmchat.store.store import Store

KEY = "sk-test-cache-1b2c"


def make_bot(loopback, **kwargs) -> Chatbot:
    return Chatbot(kwargs.pop("model", "gpt-4o-mini"), base_url=loopback.base_url, api_key=KEY,
                   max_retries=0, **kwargs)


def chat_requests(loopback) -> int:
    return sum(1 for request in loopback.requests if request.path.endswith("/chat/completions"))


@pytest.fixture
def store(tmp_path: Path):
    with Store(tmp_path / "store.sqlite3") as opened:
        yield opened


def test_a_hit_replays_byte_identical_text_with_no_http_request(store: Store, loopback):
    text = "# Plan\n\n1. **read** the `data`\n2. plot it: é ✓ 🚀\n\n```python\nprint({'a': 1})\n```\n"
    loopback.queue(reply=text)
    first = make_bot(loopback, temperature=0)
    store.attach(first, "one", cache=True)
    original = first.ask("Make a plan", sink=RecordingSink())
    assert chat_requests(loopback) == 1 and original.from_cache is False

    again = make_bot(loopback, temperature=0)  # the notebook re-run: same question, fresh bot
    store.attach(again, "two", cache=True)
    sink = RecordingSink()
    replayed = again.ask("Make a plan", sink=sink)
    assert chat_requests(loopback) == 1  # the loopback log saw no second request
    assert "".join(sink.deltas).encode() == text.encode() == replayed.text.encode()
    assert sink.started == ["gpt-4o-mini"] and sink.finished == [replayed]
    assert (replayed.from_cache, replayed.cost, replayed.status, replayed.finish_reason) == (
        True, 0.0, "complete", "stop")
    assert replayed.usage == original.usage  # the footer can show what the answer was
    assert [(m.role, m.text) for m in again.history] == [("user", "Make a plan"), ("assistant", text)]
    assert store.query("SELECT hits FROM cache") == [{"hits": 1}]


def test_the_cache_outlives_the_store_object(tmp_path: Path, loopback):
    path = tmp_path / "store.sqlite3"
    loopback.queue(reply="persisted answer")
    with Store(path, cache=True) as store:
        bot = make_bot(loopback, temperature=0)
        store.attach(bot, "s")
        bot.ask("q", sink=NullSink())
    with Store(path, cache=True) as store:  # a new kernel opening the same file
        bot = make_bot(loopback, temperature=0)
        store.attach(bot, "s")
        assert bot.ask("q", sink=NullSink()).text == "persisted answer"
    assert chat_requests(loopback) == 1


@pytest.mark.parametrize("change", ["question", "model", "param", "system", "image", "history"])
def test_anything_different_misses(store: Store, loopback, change: str):
    image = ImageRef("https://example.com/cat.png", detail="low", width=64, height=64)
    loopback.queue(reply="base", times=2)
    base = make_bot(loopback, temperature=0, system="S")
    store.attach(base, "base", cache=True)
    base.ask("q", history=False, sink=NullSink())
    kwargs = {"question": {"question": "q!"}, "model": {"model": "gpt-4.1-mini"}, "param": {"seed": 3},
              "system": {"system": "T"}, "image": {"images": [image]}, "history": {}}[change]
    other = make_bot(loopback, temperature=0, system="S")
    store.attach(other, "other", cache=True)
    if change == "history":
        other.conversation.append(other.conversation.make("user", "earlier"))
        other.conversation.append(other.conversation.make("assistant", "turn"))
    reply = other.ask(kwargs.pop("question", "q"), sink=NullSink(), **kwargs)
    assert reply.from_cache is False and chat_requests(loopback) == 2


def test_temperature_above_zero_or_unset_is_cached_only_on_request(store: Store, loopback):
    for temperature in (None, 0.7):
        loopback.reset()
        loopback.queue(reply="first", times=1)
        loopback.queue(reply="second", times=1)
        bot = make_bot(loopback, temperature=temperature)
        store.attach(bot, "warm", cache=True)
        answers = [bot.ask("tell me a joke", history=False, sink=NullSink()).text for _ in range(2)]
        assert answers == ["first", "second"] and chat_requests(loopback) == 2
    loopback.reset()
    loopback.queue(reply="only once")
    bot = make_bot(loopback, temperature=0.7)
    store.attach(bot, "opted", cache=True, cache_random=True)
    replies = [bot.ask("tell me a joke", history=False, sink=NullSink()) for _ in range(2)]
    assert [(r.text, r.from_cache) for r in replies] == [("only once", False), ("only once", True)]
    assert chat_requests(loopback) == 1


def test_partial_answers_are_never_cached(store: Store, loopback):
    loopback.queue(tokens=300)
    bot = make_bot(loopback, temperature=0)
    store.attach(bot, "cut", cache=True)
    interrupted = bot.ask("long story", history=False, sink=RecordingSink(interrupt_after=3))
    assert interrupted.status == "interrupted"
    loopback.queue(reply="whole story")
    assert bot.ask("long story", history=False, sink=NullSink()).text == "whole story"
    assert chat_requests(loopback) == 2 and len(bot.cache) == 1


def test_cache_is_off_unless_asked_for(store: Store, loopback):
    loopback.queue(reply="a", times=2)
    bot = make_bot(loopback, temperature=0)
    store.attach(bot, "plain")
    assert bot.cache is None
    for _ in range(2):
        bot.ask("same", history=False, sink=NullSink())
    assert chat_requests(loopback) == 2
    with Store(store.path, cache=True) as everywhere:  # the store-wide default
        other = make_bot(loopback, temperature=0)
        everywhere.attach(other, "x")
        assert isinstance(other.cache, ResponseCache)
        everywhere.attach(other, "x", cache=False)
        assert other.cache is None


def test_key_is_the_sha256_of_canonical_json_and_ignores_dict_order():
    request = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hé"}],
               "params": {"temperature": 0, "seed": 1}}
    shuffled = {"params": {"seed": 1, "temperature": 0}, "messages": request["messages"], "model": "gpt-4o"}
    canonical = ('{"request":{"messages":[{"content":"hé","role":"user"}],"model":"gpt-4o",'
                 '"params":{"seed":1,"temperature":0}},"v":"jupyter_llmchat.cache/1"}')
    assert request_key(request) == request_key(shuffled) == hashlib.sha256(canonical.encode()).hexdigest()
    assert json.loads(canonical)["request"] == request


def test_deterministic_means_temperature_zero():
    assert deterministic({"params": {"temperature": 0}}) and deterministic({"params": {"temperature": 0.0}})
    assert not deterministic({"params": {}}) and not deterministic({"params": {"temperature": 0.2}})
    assert not deterministic({"params": {"temperature": "0"}})


def test_clear_and_len(store: Store, loopback):
    loopback.queue(reply="x", times=2)
    bot = make_bot(loopback, temperature=0)
    store.attach(bot, "c", cache=True)
    bot.ask("1", history=False, sink=NullSink())
    bot.ask("2", history=False, sink=NullSink())
    assert len(bot.cache) == 2
    assert bot.cache.clear() == 2 and len(bot.cache) == 0


class Publisher:
    """Keeps what a notebook would show, by display id (the render module's DisplayPublisher)."""

    def __init__(self) -> None:
        self.shown: dict[str, dict[str, str]] = {}

    def show(self, display_id: str, data: dict[str, str], *, update: bool) -> None:
        self.shown[display_id] = data


def final_outputs(publisher: Publisher) -> list[str]:
    return [data.get("text/markdown", "") for data in publisher.shown.values() if data.get("text/markdown")]


def test_a_hit_renders_the_same_markdown_with_a_from_cache_footer(store: Store, loopback):
    from jupyter_llmchat.notebook.display import MarkdownDisplaySink

    text = "## Result\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\nDone.\n"
    loopback.queue(reply=text)
    bot = make_bot(loopback, temperature=0)
    store.attach(bot, "shown", cache=True)
    live, replay = Publisher(), Publisher()
    original = bot.ask("table please", history=False, sink=MarkdownDisplaySink(publisher=live))
    bot.ask("table please", history=False, sink=MarkdownDisplaySink(publisher=replay))
    assert chat_requests(loopback) == 1
    live_outputs, replay_outputs = final_outputs(live), final_outputs(replay)
    assert live_outputs[0] == replay_outputs[0] == text  # the same answer, shown the same way
    assert "from cache" not in live_outputs[-1] and "$" in live_outputs[-1]
    usage = original.usage
    assert replay_outputs[-1] == (f"<sub>gpt-4o-mini · {usage.prompt_tokens} in · {usage.completion_tokens} "
                                  "out tokens · from cache</sub>")


# -- tools ----------------------------------------------------------------------------------------
def lookup(city: str) -> str:
    """Where the city is."""
    LOOKED_UP.append(city)
    return f"{city} is in France"


LOOKED_UP: list[str] = []


def test_a_tool_answer_is_replayed_round_by_round_and_the_tools_run_again(store: Store, loopback):
    LOOKED_UP.clear()
    loopback.queue(tool_calls=[{"name": "lookup", "arguments": {"city": "Lyon"}}])
    loopback.queue(reply="Lyon is in France.")
    first = make_bot(loopback, temperature=0, tools=[lookup])
    store.attach(first, "first", cache=True)
    original = first.ask("Where is Lyon?", history=False, sink=NullSink())
    again = make_bot(loopback, temperature=0, tools=[lookup])
    store.attach(again, "again", cache=True)
    replayed = again.ask("Where is Lyon?", history=False, sink=NullSink())
    assert chat_requests(loopback) == 2 and len(store.response_cache()) == 2  # one entry per round
    assert (replayed.text, replayed.from_cache, replayed.rounds, replayed.cost) == ("Lyon is in France.", True, 2, 0.0)
    assert [(c.id, c.name, c.arguments, c.result) for c in replayed.calls] == [
        (c.id, c.name, c.arguments, c.result) for c in original.calls]
    assert LOOKED_UP == ["Lyon", "Lyon"]  # the cache replaces the model, never the tool: it ran again


def test_the_tool_schemas_are_part_of_the_key(store: Store, loopback):
    def lookup_v2(city: str, country: str = "FR") -> str:
        return city

    loopback.queue(reply="plain", times=3)
    for number, tools in enumerate(([lookup], [lookup_v2], [])):
        bot = make_bot(loopback, temperature=0, tools=tools)
        store.attach(bot, f"s{number}", cache=True)
        assert bot.ask("q", history=False, sink=NullSink()).from_cache is False
    assert chat_requests(loopback) == 3  # a changed schema, or no tools, is another request
    base = {"model": "m", "messages": [{"role": "user", "content": "q"}], "params": {"temperature": 0}}
    with_tools = {**base, "params": {"temperature": 0, "tools": [{"type": "function", "function": {"name": "f"}}]}}
    assert request_key(base) != request_key(with_tools)
