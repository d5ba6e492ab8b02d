"""The tool loop through the real openai SDK against the loopback server: parallel calls whose
arguments stream in fragments, a raising tool, invalid calls, max_tool_rounds, consent (approve,
deny, nobody to ask), stop and interrupt while a tool runs or waits for approval, the events a
view sees, usage and cost over every round, what the history keeps, and trimming that never
sends a tool message without its call (the server rejects an orphan as OpenAI does)."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import threading
import time

import pytest
from support.asking import ask_in_thread
from support.loopback_client import chat_bodies
from support.recording import RecordingSink

from jupyter_llmchat.core import errors
from jupyter_llmchat.core.chatbot import Chatbot
from jupyter_llmchat.core.reply import NullSink, ToolCall, Usage
from jupyter_llmchat.core.tokens import count_prompt_tokens
from jupyter_llmchat.core.tool_loop import Approval, terminal_approver
from jupyter_llmchat.core.tools import Tool
from jupyter_llmchat.server import DISCLOSURE

KEY = "sk-test-tools-4f9a2c"


def make_bot(loopback, **kwargs) -> Chatbot:
    kwargs.setdefault("max_retries", 0)
    return Chatbot(kwargs.pop("model", "gpt-4o"), base_url=loopback.base_url, api_key=KEY, **kwargs)


def wait_for(condition, timeout: float = 20.0) -> None:
    """Poll ``condition`` until it holds: helper threads and the server's log catch up on their own."""
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.005)


class ToolSink(RecordingSink):
    """A sink that is also a ToolObserver: records every event, in order, as text."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[str] = []

    def round_started(self, number: int) -> None:
        self.events.append(f"round {number}")

    def tool_started(self, call: ToolCall) -> None:
        self.events.append(f"start {call.name} {call.arguments} {call.outcome}")

    def tool_finished(self, call: ToolCall) -> None:
        self.events.append(f"end {call.name} {call.outcome} {call.result}")


def get_weather(city: str, unit: str = "c") -> str:
    """The weather now.

    Args:
        city: The city.
        unit: c or f.
    """
    return f"sunny in {city}, 21{unit}"


def add(a: int, b: int) -> int:
    """Add two whole numbers."""
    return a + b


# -- the loop ------------------------------------------------------------------------------------
def test_parallel_calls_streamed_in_fragments_run_and_their_results_go_back(loopback):
    loopback.queue(tool_calls=[{"name": "get_weather", "arguments": {"city": "Paris", "unit": None}},
                               {"name": "add", "arguments": {"a": 2, "b": "3"}}], fragment=1)
    loopback.queue(reply="Sunny; 5.")
    bot = make_bot(loopback, tools=[get_weather, add])
    sink = ToolSink()
    reply = bot.ask("Weather in Paris, and 2+3?", sink=sink)

    assert (reply.text, reply.status, reply.finish_reason, reply.rounds) == ("Sunny; 5.", "complete", "stop", 2)
    assert [(c.name, c.arguments, c.outcome, c.result, c.error, c.round) for c in reply.calls] == [
        ("get_weather", '{"city": "Paris", "unit": null}', "ok", "sunny in Paris, 21c", None, 1),
        ("add", '{"a": 2, "b": "3"}', "ok", "5", None, 1)]
    assert all(call.seconds is not None and call.seconds >= 0 for call in reply.calls)
    assert sink.events == [
        'start get_weather {"city": "Paris", "unit": null} pending', "end get_weather ok sunny in Paris, 21c",
        'start add {"a": 2, "b": "3"} pending', "end add ok 5", "round 2"]
    assert "".join(sink.deltas) == reply.text and sink.finished == [reply]

    first, second = chat_bodies(loopback)
    ids = [call.id for call in reply.calls]
    assert second["messages"] == first["messages"] + [
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": ids[0], "type": "function", "function": {"name": "get_weather",
                                                            "arguments": '{"city": "Paris", "unit": null}'}},
            {"id": ids[1], "type": "function", "function": {"name": "add", "arguments": '{"a": 2, "b": "3"}'}}]},
        {"role": "tool", "content": "sunny in Paris, 21c", "tool_call_id": ids[0]},
        {"role": "tool", "content": "5", "tool_call_id": ids[1]}]
    assert first["tools"] == second["tools"] and [t["function"]["name"] for t in first["tools"]] == ["get_weather",
                                                                                                     "add"]
    assert [(m.role, m.text, [c.name for c in m.tool_calls], m.tool_call_id) for m in bot.history] == [
        ("user", "Weather in Paris, and 2+3?", [], None), ("assistant", "", ["get_weather", "add"], None),
        ("tool", "sunny in Paris, 21c", [], ids[0]), ("tool", "5", [], ids[1]), ("assistant", "Sunny; 5.", [], None)]


def test_usage_and_cost_are_summed_over_every_round_and_counted_as_the_server_counts(loopback):
    loopback.queue(tool_calls=[{"name": "add", "arguments": {"a": 1, "b": 2}}])
    loopback.queue(reply="3.")
    bot = make_bot(loopback, tools=[add])
    reply = bot.ask("1+2?", sink=NullSink())
    first, second = chat_bodies(loopback)
    prompts = [count_prompt_tokens(body["messages"], "gpt-4o", body["tools"]) for body in (first, second)]
    assert reply.usage is not None and reply.usage.prompt_tokens == sum(prompts)
    assert reply.cost == pytest.approx(bot.info.cost(reply.usage.prompt_tokens, reply.usage.completion_tokens))
    # our own count of each message is the server's: the history's turn costs what the server counted
    question, asking, result, answer = bot.history
    assert prompts[1] - prompts[0] == asking.tokens + result.tokens
    assert Usage(1, 2, 0).plus(Usage(3, 4, 1, source="counted")) == Usage(4, 6, 1, source="counted")


def test_a_round_with_text_and_calls_then_the_answer_reads_as_one_text(loopback):
    loopback.queue(reply="Let me look.", tool_calls=[{"name": "add", "arguments": {"a": 1, "b": 1}}])
    loopback.queue(reply="It is 2.")
    bot = make_bot(loopback, tools=[add])
    sink = RecordingSink()
    reply = bot.ask("1+1?", sink=sink)
    assert reply.text == "Let me look.\n\nIt is 2." and "".join(sink.deltas) == reply.text
    assert [(m.role, m.text) for m in bot.history] == [("user", "1+1?"), ("assistant", "Let me look."),
                                                       ("tool", "2"), ("assistant", "It is 2.")]


def test_a_raising_tool_gives_the_model_its_one_line_error(loopback):
    def lookup(city: str) -> str:
        raise ValueError(f"no such city:\n{city}")

    loopback.queue(tool_calls=[{"name": "lookup", "arguments": {"city": "Atlantis"}}])
    loopback.queue(reply="It does not exist.")
    reply = make_bot(loopback, tools=[lookup]).ask("Where is Atlantis?", sink=NullSink())
    (call,) = reply.calls
    assert (call.outcome, call.error, call.result) == ("error", "ValueError: no such city: Atlantis",
                                                       "Error: ValueError: no such city: Atlantis")
    assert (reply.status, reply.text) == ("complete", "It does not exist.")
    assert chat_bodies(loopback)[1]["messages"][-1]["content"] == "Error: ValueError: no such city: Atlantis"


def test_invalid_calls_go_back_to_the_model_and_never_run(loopback):
    ran: list[tuple] = []

    def record(a: int, b: int) -> int:
        ran.append((a, b))
        return a + b

    loopback.queue(tool_calls=[{"name": "record", "arguments": '{"a": 1, "b": '},
                               {"name": "record", "arguments": {"a": "one", "b": 2}},
                               {"name": "erase", "arguments": {}},
                               {"name": "record", "arguments": {"a": 1, "b": 2}}])
    loopback.queue(reply="One worked.")
    reply = make_bot(loopback, tools=[record]).ask("Add", sink=NullSink())
    assert [(call.outcome, call.result) for call in reply.calls] == [
        ("invalid", "Error: the arguments of record are not valid JSON (Expecting value: line 1 column 15 (char 14)); "
                    "send one JSON object"),
        ("invalid", "Error: invalid arguments for record: a: Input should be a valid integer, unable to parse string "
                    "as an integer"),
        ("invalid", "Error: there is no tool named 'erase'; the tools are: record"),
        ("ok", "3")]
    assert ran == [(1, 2)] and reply.text == "One worked."


def test_max_tool_rounds_ends_the_answer_plainly_and_leaves_a_valid_history(loopback):
    loopback.queue(tool_calls=[{"name": "add", "arguments": {"a": 1, "b": 1}}], times=3)
    bot = make_bot(loopback, tools=[add], max_tool_rounds=2)
    sink = ToolSink()
    reply = bot.ask("Keep adding", sink=sink)
    assert (reply.status, reply.finish_reason, reply.rounds) == ("tool_calls", "tool_calls", 3)
    assert reply.notice == ("answer ended with tool calls that were not run (finish_reason=tool_calls): stopped "
                            "after 2 rounds of tool calls (max_tool_rounds=2); the model asked for more")
    assert [call.outcome for call in reply.calls] == ["ok", "ok", "skipped"]
    assert reply.calls[-1].result == "Not run: the limit of 2 tool rounds (max_tool_rounds) was reached."
    assert sink.events[-2:] == ['start add {"a": 1, "b": 1} pending',  # the views hear of the call not run too
                                "end add skipped Not run: the limit of 2 tool rounds (max_tool_rounds) was reached."]
    assert [m.role for m in bot.history] == ["user", "assistant", "tool", "assistant", "tool", "assistant", "tool"]
    loopback.queue(reply="fine")
    assert bot.ask("next", sink=NullSink()).text == "fine"  # the server took the history: it is valid
    assert len(chat_bodies(loopback)) == 4
    assert make_bot(loopback, tools=[add]).ask("x", max_tool_rounds=1, sink=NullSink()).rounds == 1


def test_tool_calls_when_no_tools_were_given_are_said_not_shown_as_an_empty_answer(loopback):
    loopback.queue(tool_calls=[{"name": "search", "arguments": {"q": "x"}}])
    bot = make_bot(loopback)
    reply = bot.ask("Find x", sink=NullSink())
    assert (reply.status, reply.text, reply.finish_reason) == ("tool_calls", "", "tool_calls")
    assert reply.notice == ("answer ended with tool calls that were not run (finish_reason=tool_calls): the model "
                            "asked for tools but none were given for this question")
    assert [(c.name, c.outcome) for c in reply.calls] == [("search", "skipped")]
    assert [(m.role, m.tool_calls, m.status) for m in bot.history] == [("user", (), "complete"),
                                                                       ("assistant", (), "tool_calls")]
    assert "tools" not in chat_bodies(loopback)[0]


# -- consent -------------------------------------------------------------------------------------
def test_a_confirm_tool_runs_only_when_approved(loopback):
    deleted: list[str] = []

    def delete(path: str) -> str:
        deleted.append(path)
        return f"deleted {path}"

    asked: list[Approval] = []

    def approve(approval: Approval) -> bool:
        asked.append(approval)
        return approval.arguments["path"] == "old.txt"

    loopback.queue(tool_calls=[{"name": "delete", "arguments": {"path": "old.txt"}},
                               {"name": "delete", "arguments": {"path": "thesis.tex"}}])
    loopback.queue(reply="Done.")
    bot = make_bot(loopback, tools=[Tool(delete, confirm=True)])
    reply = bot.ask("Clean up", approve=approve, sink=NullSink())
    assert deleted == ["old.txt"] and [a.call.name for a in asked] == ["delete", "delete"]
    assert [(c.outcome, c.approved, c.result, c.error) for c in reply.calls] == [
        ("ok", True, "deleted old.txt", None),
        ("declined", False, "The user declined this call; it was not run.", "the user declined")]
    assert chat_bodies(loopback)[1]["messages"][-1]["content"] == "The user declined this call; it was not run."


def test_the_sink_asks_when_no_approver_is_given_and_the_decorator_registers(loopback):
    class ApprovingSink(ToolSink):
        def approve_tool(self, approval: Approval) -> bool:
            self.events.append(f"approve? {approval.call.name}")
            return True

    bot = make_bot(loopback)

    @bot.tool(confirm=True)
    def send(to: str) -> str:
        """Send a note."""
        return f"sent to {to}"

    assert send("x") == "sent to x" and bot.tools.names == ["send"]  # still a plain function
    loopback.queue(tool_calls=[{"name": "send", "arguments": {"to": "ada"}}])
    loopback.queue(reply="Sent.")
    sink = ApprovingSink()
    bot.ask("Send it", sink=sink)
    assert sink.events == ['start send {"to": "ada"} pending', "approve? send", "end send ok sent to ada", "round 2"]


def test_with_nobody_to_ask_a_confirm_call_is_declined_and_the_model_told_why(loopback):
    ran: list[str] = []
    loopback.queue(tool_calls=[{"name": "wipe", "arguments": {}}])
    loopback.queue(reply="I could not.")

    def wipe() -> str:
        ran.append("wiped")
        return "wiped"

    reply = make_bot(loopback, tools=[Tool(wipe, confirm=True)]).ask("Wipe", sink=NullSink())  # pytest: no terminal
    (call,) = reply.calls
    assert ran == [] and call.outcome == "declined"
    assert call.result == ("Not run: it needs the user's approval and nobody could be asked (no approve= given and "
                           "no terminal).")


def test_the_terminal_approver_reads_a_yes(monkeypatch, capsys):
    import io

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    call = ToolCall("call_1", "wipe", '{"disk": "C"}')
    monkeypatch.setattr("sys.stdin", Terminal("y\n"))
    from jupyter_llmchat.core.stopping import StopToken

    assert terminal_approver(Approval(call, Tool(add), {}, StopToken())) is True
    assert capsys.readouterr().out == '\nAllow the model to call wipe({"disk": "C"})? [y/N] '
    monkeypatch.setattr("sys.stdin", Terminal("\n"))
    assert terminal_approver(Approval(call, Tool(add), {}, StopToken())) is False


# -- stop and interrupt ----------------------------------------------------------------------------
def test_stop_while_a_sync_tool_runs_returns_at_once_and_the_function_runs_on(loopback):
    started, release, finished = threading.Event(), threading.Event(), threading.Event()

    def slow(n: int) -> int:
        started.set()
        release.wait(60)
        finished.set()
        return n

    loopback.queue(tool_calls=[{"name": "slow", "arguments": {"n": 1}}, {"name": "add", "arguments": {"a": 1, "b": 1}}])
    bot = make_bot(loopback, tools=[slow, add])
    thread, outcome = ask_in_thread(bot, "Go", sink=NullSink())
    assert started.wait(20)
    bot.stop()
    thread.join(20)
    assert not thread.is_alive() and not finished.is_set()  # returned while the function still runs
    (reply,) = outcome
    assert reply.status == "interrupted" and reply.notice == "answer interrupted before any text"
    assert [(c.outcome, c.error) for c in reply.calls] == [
        ("stopped", "stopped by the user while it ran; the function runs on in the background, its result dropped"),
        ("skipped", "the user stopped the answer before this call ran")]
    assert [m.role for m in bot.history] == ["user", "assistant", "tool", "tool"]  # every call answered
    assert len(chat_bodies(loopback)) == 1  # no round after the stop
    release.set()
    assert finished.wait(20)
    loopback.queue(reply="ok")
    assert bot.ask("again", sink=NullSink()).text == "ok"  # the history is one the server takes


def test_stop_while_an_async_tool_runs_cancels_it(loopback):
    started, cancelled = threading.Event(), threading.Event()

    async def wait_long() -> str:
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return "done"

    loopback.queue(tool_calls=[{"name": "wait_long", "arguments": {}}])
    bot = make_bot(loopback, tools=[wait_long])
    thread, outcome = ask_in_thread(bot, "Go", sink=NullSink())
    assert started.wait(20)
    bot.stop()
    thread.join(20)
    assert cancelled.wait(20)
    (reply,) = outcome
    assert [(c.outcome, c.error) for c in reply.calls] == [("stopped", "stopped by the user while it ran; it was "
                                                                       "cancelled")]


def test_an_async_tool_returns_its_value(loopback):
    async def double(x: int) -> int:
        await asyncio.sleep(0)
        return 2 * x

    loopback.queue(tool_calls=[{"name": "double", "arguments": {"x": 21}}])
    loopback.queue(reply="42")
    assert [c.result for c in make_bot(loopback, tools=[double]).ask("x", sink=NullSink()).calls] == ["42"]


def test_stop_while_an_approval_waits(loopback):
    waiting = threading.Event()

    def approve(approval: Approval) -> bool:
        waiting.set()
        while not approval.wait(0.01):  # as buttons wait: until the user answers or the answer is stopped
            pass
        return True  # too late: a stopped answer runs nothing

    ran: list[str] = []

    def deploy() -> str:
        ran.append("deployed")
        return "deployed"

    loopback.queue(tool_calls=[{"name": "deploy", "arguments": {}}])
    bot = make_bot(loopback, tools=[Tool(deploy, confirm=True)])
    thread, outcome = ask_in_thread(bot, "Ship it", approve=approve, sink=NullSink())
    assert waiting.wait(20)
    bot.stop()
    thread.join(20)
    (reply,) = outcome
    assert ran == [] and reply.status == "interrupted"
    assert [(c.outcome, c.result) for c in reply.calls] == [
        ("stopped", "Stopped: the user stopped the answer while it waited for the user's approval.")]


def test_keyboard_interrupt_in_a_tool_or_an_approval_ends_the_answer_kept_valid(loopback):
    def interrupted() -> str:
        raise KeyboardInterrupt  # what Ctrl-C in the kernel looks like to the waiting thread

    def refuse(approval: Approval) -> bool:
        raise KeyboardInterrupt

    loopback.queue(tool_calls=[{"name": "interrupted", "arguments": {}}, {"name": "add", "arguments": {"a": 1, "b": 2}}])
    bot = make_bot(loopback, tools=[interrupted, add])
    reply = bot.ask("Go", sink=NullSink())
    assert reply.status == "interrupted" and [c.outcome for c in reply.calls] == ["stopped", "skipped"]
    loopback.queue(tool_calls=[{"name": "interrupted", "arguments": {}}])
    other = make_bot(loopback, tools=[Tool(interrupted, confirm=True)])
    reply = other.ask("Go", approve=refuse, sink=NullSink())
    assert [(c.outcome, c.error) for c in reply.calls] == [
        ("stopped", "stopped by the user while it waited for the user's approval")]
    loopback.queue(reply="ok")
    assert other.ask("again", sink=NullSink()).text == "ok"


# -- the history and the window ------------------------------------------------------------------------
def test_an_evicted_question_never_leaves_its_tool_messages_to_be_sent_alone(loopback):
    loopback.queue(tool_calls=[{"name": "add", "arguments": {"a": 1, "b": 1}}])
    loopback.queue(reply="2")
    bot = make_bot(loopback, tools=[add], max_history=3)
    bot.ask("1+1?", sink=NullSink())
    assert [m.role for m in bot.history] == ["assistant", "tool", "assistant"]  # the question was evicted
    loopback.queue(reply="fine")
    assert bot.ask("next", sink=NullSink()).text == "fine"
    assert chat_bodies(loopback)[-1]["messages"] == [{"role": "user", "content": "next"}]


def test_trimming_keeps_or_drops_tool_turns_whole(loopback):
    bot = make_bot(loopback, tools=[get_weather], context_window=2048, max_tokens=500)
    cities = ("Paris", "Lyon", "Nice", "Lille", "Brest", "Nantes")
    for city in cities:
        loopback.queue(reply="Checking. " * 30, tool_calls=[{"name": "get_weather", "arguments": {"city": city}}])
        loopback.queue(reply=f"It is sunny in {city}. " + "Really. " * 60)
        history = [message.to_api() for message in bot.history]
        bot.ask(f"Weather in {city}? " + "Please. " * 40, sink=NullSink())
    bodies = chat_bodies(loopback)
    assert len(bodies) == 12  # every request was taken: the server rejects an orphan tool message
    last = bodies[-2]["messages"]  # the first round of the last question: the history as trimmed
    kept = len(last) - 1
    assert kept % 4 == 0 and 0 < kept < len(history)  # whole turns of four messages, the oldest gone
    assert last[:-1] == history[-kept:] and last[0]["role"] == "user"


def test_a_big_tool_result_drops_older_turns_before_the_next_round(loopback):
    def dump() -> str:
        return "row " * 2500

    bot = make_bot(loopback, tools=[dump], context_window=4096, max_tokens=500)
    for n in range(3):
        loopback.queue(reply=f"answer {n} " + "words " * 400)
        bot.ask(f"question {n}", sink=NullSink())
    loopback.queue(tool_calls=[{"name": "dump", "arguments": {}}])
    loopback.queue(reply="A lot of rows.")
    reply = bot.ask("Dump it", sink=NullSink())
    first, second = chat_bodies(loopback)[-2:]
    assert reply.text == "A lot of rows." and len(first["messages"]) == 7  # three turns and the question
    # the next round keeps the newest whole turns that fit beside the result: two of the three
    assert second["messages"][:-2] == first["messages"][2:] and second["messages"][0]["content"] == "question 1"
    assert [m["role"] for m in second["messages"][-2:]] == ["assistant", "tool"]
    assert len(bot.history) == 6 + 4  # the history itself keeps everything


def test_results_too_big_for_any_window_fail_in_one_line_and_keep_what_was_done(loopback):
    def dump() -> str:
        return "row " * 4000

    loopback.queue(tool_calls=[{"name": "dump", "arguments": {}}])
    bot = make_bot(loopback, tools=[Tool(dump, max_result_chars=50_000)], context_window=4096, max_tokens=500)
    with pytest.raises(errors.PromptTooLongError, match=r"^the tool results of this question bring the prompt to "
                                                        r"[\d,]+ tokens, over the budget of 3,596: lower the tools' "
                                                        "max_result_chars, or ask for less at a time$"):
        bot.ask("Dump it", sink=NullSink())
    assert [m.role for m in bot.history] == ["user", "assistant", "tool"]
    assert len(chat_bodies(loopback)) == 1


# -- what is sent ----------------------------------------------------------------------------------
def test_strict_schemas_for_openai_models_plain_ones_for_local_models(loopback):
    loopback.queue(reply="a")
    loopback.queue(reply="b")
    make_bot(loopback, tools=[get_weather]).ask("x", sink=NullSink())
    make_bot(loopback, tools=[get_weather], model="loopback-demo").ask("x", sink=NullSink())
    strict, plain = (body["tools"][0]["function"] for body in chat_bodies(loopback))
    assert strict["strict"] is True and strict["parameters"]["required"] == ["city", "unit"]
    assert "strict" not in plain and plain["parameters"]["required"] == ["city"]
    assert plain["description"] == "The weather now."


def test_tools_for_one_question_join_the_bots_and_reply_request_names_them(loopback):
    loopback.queue(reply="a")
    bot = make_bot(loopback, tools=[add], temperature=0)
    reply = bot.ask("x", tools=[get_weather], sink=NullSink())
    assert [t["function"]["name"] for t in chat_bodies(loopback)[0]["tools"]] == ["add", "get_weather"]
    assert reply.request["tools"] == ["add", "get_weather"] and "tools" not in reply.request["params"]
    assert bot.tools.names == ["add"]
    with pytest.raises(errors.ConfigurationError, match="^max_tool_rounds must be a whole number >= 1, got 0$"):
        bot.ask("x", max_tool_rounds=0, sink=NullSink())


def test_the_tool_definitions_count_against_the_budget(loopback):
    def described(x: int) -> int:
        return x

    described.__doc__ = "A long description. " + "word " * 600
    bot = make_bot(loopback, tools=[described], context_window=600, max_tokens=100)
    with pytest.raises(errors.PromptTooLongError, match=r"^the question needs [\d,]+ prompt tokens \(tool definitions "
                                                        r"[\d,]+ \+ question \d+ \+ 3 reply priming\) but the budget "
                                                        "is 500"):
        bot.ask("hi", sink=NullSink())
    assert chat_bodies(loopback) == []


def test_the_offline_demo_runs_the_whole_loop(loopback):
    bot = make_bot(loopback, tools=[get_weather])
    reply = bot.ask('What is the weather in "Lyon"? Use get_weather.', sink=NullSink())
    assert [(c.name, json.loads(c.arguments), c.result) for c in reply.calls] == [
        ("get_weather", {"city": "Lyon", "unit": None}, "sunny in Lyon, 21c")]
    assert reply.text == f"{DISCLOSURE}\n\nThe tools answered:\n\n- `get_weather` returned: sunny in Lyon, 21c\n"
    assert reply.rounds == 2 and reply.status == "complete"


def test_ctrl_c_while_a_sync_tool_runs_returns_the_answer_at_once(loopback):
    """A real SIGINT in a real process: the ask returns, the call is marked, the history stays valid."""
    loopback.queue(tool_calls=[{"name": "slow", "arguments": {}}])
    script = ("import sys, time\n"
              "from jupyter_llmchat.core.chatbot import Chatbot\n"
              "from jupyter_llmchat.core.reply import NullSink\n"
              "def slow() -> str:\n"
              "    print('running', flush=True)\n"
              "    time.sleep(60)\n"
              "    return 'late'\n"
              "bot = Chatbot('gpt-4o', base_url=sys.argv[1], api_key='k', tools=[slow])\n"
              "reply = bot.ask('go', sink=NullSink())\n"
              "print(reply.status, [(c.outcome, c.error) for c in reply.calls], [m.role for m in bot.history],\n"
              "      flush=True)\n")
    child = subprocess.Popen([sys.executable, "-c", script, loopback.base_url], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline() == "running\n"
        child.send_signal(signal.SIGINT)
        out, _ = child.communicate(timeout=60)
    finally:
        child.kill()
    assert out == ("interrupted [('stopped', 'stopped by the user while it ran; the function runs on in the "
                   "background, its result dropped')] ['user', 'assistant', 'tool']\n")
