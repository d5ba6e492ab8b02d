"""Budget trimming: worked example, whole turns, pinned system message, oversize question; the
system message counted when first needed, drafts bounded by their bytes, text cleaned on entry;
tool turns counted as the server counts them and kept or dropped whole (never an orphan)."""

from __future__ import annotations

import pytest

from jupyter_llmchat.core.conversation import Conversation, drop_oldest_turns
from jupyter_llmchat.core.errors import PromptTooLongError
from jupyter_llmchat.core.messages import ToolRequest
from jupyter_llmchat.core.tokens import REPLY_PRIMING_TOKENS, TokenCounter

COUNTER = TokenCounter("gpt-4o")


def sized(conversation: Conversation, role: str, tokens: int):
    """A message whose counted size (overhead included) is exactly ``tokens``."""
    overhead = 3 + COUNTER.count_text(role)
    message = conversation.make(role, " hello" * (tokens - overhead))
    assert message.tokens == tokens
    return message


def test_worked_example_keeps_only_the_newest_pair():
    # 4096-token model, max_tokens 2048 -> a 2048-token prompt budget.
    conversation = Conversation(COUNTER)
    for role, tokens in [("user", 1000), ("assistant", 1000), ("user", 1500), ("assistant", 500)]:
        conversation.append(sized(conversation, role, tokens))
    question = conversation.make("user", "And now?")
    window = conversation.window(question, 4096 - 2048)
    assert [m.tokens for m in window[:-1]] == [1500, 500]
    assert window[-1] is question
    assert conversation.prompt_tokens(window) == 1500 + 500 + question.tokens + REPLY_PRIMING_TOKENS


def test_turns_are_dropped_whole_so_history_never_starts_with_a_reply():
    conversation = Conversation(COUNTER)
    for role, tokens in [("user", 100), ("assistant", 900), ("user", 100), ("assistant", 100)]:
        conversation.append(sized(conversation, role, tokens))
    question = conversation.make("user", "q")
    # Room for 1000 of history: the old pair costs 1000 but the newest already took 200.
    window = conversation.window(question, 1000 + question.tokens + REPLY_PRIMING_TOKENS)
    assert [(m.role, m.tokens) for m in window[:-1]] == [("user", 100), ("assistant", 100)]


def test_system_message_is_pinned_and_counted():
    conversation = Conversation(COUNTER, system="You are terse.")
    for role, tokens in [("user", 500), ("assistant", 500)] * 3:
        conversation.append(sized(conversation, role, tokens))
    question = conversation.make("user", "q")
    budget = conversation.system_message.tokens + question.tokens + REPLY_PRIMING_TOKENS + 1000
    window = conversation.window(question, budget)
    assert window[0].role == "system" and window[0].text == "You are terse."
    assert [m.tokens for m in window[1:-1]] == [500, 500]


def test_orphan_reply_left_by_max_history_is_not_sent():
    conversation = Conversation(COUNTER, max_history=3)
    for role, text in [("user", "a"), ("assistant", "b"), ("user", "c"), ("assistant", "d")]:
        conversation.append(conversation.make(role, text))
    assert [m.text for m in conversation.messages] == ["b", "c", "d"]
    window = conversation.window(conversation.make("user", "e"), 10_000)
    assert [m.text for m in window] == ["c", "d", "e"]


def test_question_that_cannot_fit_raises_with_the_numbers():
    conversation = Conversation(COUNTER, system="sys")
    question = conversation.make("user", " hello" * 200)
    with pytest.raises(PromptTooLongError) as caught:
        conversation.window(question, 100)
    error = caught.value
    assert error.budget == 100
    assert error.needed == question.tokens + conversation.system_message.tokens + REPLY_PRIMING_TOKENS
    message = str(error)
    assert "\n" not in message
    assert f"{error.needed:,} prompt tokens" in message and "budget is 100" in message


def test_no_history_window_holds_system_and_question_only():
    conversation = Conversation(COUNTER, system="sys")
    conversation.append(conversation.make("user", "old"))
    conversation.append(conversation.make("assistant", "older answer"))
    question = conversation.make("user", "new")
    assert [m.text for m in conversation.window(question, 10_000, history=False)] == ["sys", "new"]


def test_listeners_hear_appends_clears_and_system_changes():
    conversation = Conversation(COUNTER)
    events = []
    conversation.listeners.append(lambda event, message: events.append((event, message and message.text)))
    conversation.append(conversation.make("user", "hi"))
    conversation.system = "be brief"
    conversation.clear()
    assert events == [("append", "hi"), ("system", "be brief"), ("clear", None)]


def test_recount_switches_encoding():
    conversation = Conversation(COUNTER)
    conversation.append(conversation.make("user", "naïve café — 東京"))
    cl100k = TokenCounter("gpt-4")
    conversation.recount(cl100k)
    assert conversation.messages[0].tokens == cl100k.count_message("user", "naïve café — 東京")


class CountingCounter(TokenCounter):
    """A TokenCounter that records what it counts exactly and can pretend its vocabulary is not loaded."""

    def __init__(self, *, ready: bool) -> None:
        super().__init__("gpt-4o")
        self.counted: list[str] = []
        self._pretend_ready = ready

    @property
    def ready(self) -> bool:
        return self._pretend_ready

    def count_message(self, role, text, **kwargs) -> int:
        self.counted.append(text)
        return super().count_message(role, text, **kwargs)


def test_the_system_message_is_counted_when_first_needed_not_when_set():
    counter = CountingCounter(ready=False)
    conversation = Conversation(counter, system="You are terse.")
    assert counter.counted == [] and conversation.system == "You are terse."
    draft = conversation.system_draft()  # the vocabulary is not loaded: a byte bound, no count
    assert counter.counted == [] and draft.tokens == 3 + len("system") + len("You are terse.")
    exact = conversation.system_message
    assert counter.counted == ["You are terse."] and exact.tokens == COUNTER.count_message("system", "You are terse.")
    assert conversation.system_message is exact and conversation.system_draft() is exact  # counted once


def test_a_draft_bounds_the_count_without_counting():
    counter = CountingCounter(ready=False)
    conversation = Conversation(counter)
    draft = conversation.draft("user", "naïve café")
    assert counter.counted == [] and draft.tokens == 3 + 4 + len("naïve café".encode())
    assert draft.tokens >= conversation.make("user", "naïve café").tokens


def test_text_that_cannot_be_encoded_is_cleaned_when_a_message_is_made():
    conversation = Conversation(COUNTER, system="sys \udc80")
    assert conversation.system == "sys \ufffd"
    assert conversation.make("user", "split \ud83d\ude00 and lone \ud83d").text == "split 😀 and lone \ufffd"
    assert conversation.draft("user", "\ude00").text == "\ufffd"


def test_what_would_help_a_question_that_cannot_fit_is_the_callers_to_say():
    conversation = Conversation(COUNTER)
    question = conversation.make("user", " hello" * 200)
    with pytest.raises(PromptTooLongError) as caught:
        conversation.window(question, 100, fixes=lambda needed: f"shorten it by {needed - 100:,} tokens")
    assert str(caught.value).endswith(f"but the budget is 100; shorten it by {caught.value.needed - 100:,} tokens")


# -- tool turns -------------------------------------------------------------------------------------
def tool_turn(conversation: Conversation, question: str, result: str = "sunny" * 50) -> list:
    """A question whose answer called a tool: user, assistant (the call), tool (the result), assistant."""
    call = ToolRequest(f"call_{question}", "get_weather", '{"city": "Paris"}')
    return [conversation.make("user", question), conversation.make("assistant", "", tool_calls=[call]),
            conversation.make("tool", result, tool_call_id=call.id), conversation.make("assistant", "Sunny.")]


def test_tool_calls_and_results_are_counted_as_the_server_counts_them():
    conversation = Conversation(COUNTER)
    messages = tool_turn(conversation, "q")
    for message in messages:
        assert message.tokens == COUNTER.count_api_messages([message.to_api()]) - REPLY_PRIMING_TOKENS
    asking, result = messages[1], messages[2]
    assert asking.tokens == 3 + COUNTER.count_text("assistant") + 3 + COUNTER.count_text("get_weather") + \
        COUNTER.count_text('{"city": "Paris"}')
    assert result.tokens == 3 + COUNTER.count_text("tool") + COUNTER.count_text("sunny" * 50) + 1 + \
        COUNTER.count_text("call_q")
    assert COUNTER.bound_calls(asking.tool_calls) >= COUNTER.count_calls(asking.tool_calls)


def test_a_tool_turn_is_kept_or_dropped_whole():
    conversation = Conversation(COUNTER)
    old, new = tool_turn(conversation, "old"), tool_turn(conversation, "new")
    conversation.append_turn(old + new)
    question = conversation.make("user", "next")
    needed = question.tokens + REPLY_PRIMING_TOKENS
    whole_new = sum(m.tokens for m in new)
    assert conversation.window(question, needed + whole_new + sum(m.tokens for m in old)) == old + new + [question]
    assert conversation.window(question, needed + whole_new + sum(m.tokens for m in old) - 1) == new + [question]
    assert conversation.window(question, needed + whole_new - 1) == [question]  # never half a turn


def test_a_tool_turn_cut_by_max_history_is_not_sent_at_all():
    conversation = Conversation(COUNTER, max_history=5)
    conversation.append_turn(tool_turn(conversation, "old") + [conversation.make("user", "hi"),
                                                               conversation.make("assistant", "hello")])
    assert [m.role for m in conversation.messages] == ["assistant", "tool", "assistant", "user", "assistant"]
    window = conversation.window(conversation.make("user", "next"), 10_000)
    assert [m.text for m in window] == ["hi", "hello", "next"]  # no tool message without its call


def test_room_kept_for_tool_definitions_and_said_when_the_question_cannot_fit():
    conversation = Conversation(COUNTER)
    conversation.append_turn([conversation.make("user", "a"), conversation.make("assistant", "b")])
    question = conversation.make("user", "q")
    budget = 200 + question.tokens + REPLY_PRIMING_TOKENS
    assert len(conversation.window(question, budget)) == 3
    assert conversation.window(question, budget, reserved=195) == [question]  # the definitions took the room
    needed = 200 + question.tokens + REPLY_PRIMING_TOKENS
    with pytest.raises(PromptTooLongError) as caught:
        conversation.window(question, needed - 1, reserved=200)
    assert str(caught.value).startswith(
        f"the question needs {needed} prompt tokens (tool definitions 200 + question {question.tokens} + "
        f"{REPLY_PRIMING_TOKENS} reply priming) but the budget is {needed - 1}; ")


def test_dropping_the_oldest_turns_to_free_room():
    conversation = Conversation(COUNTER, system="sys")
    system = conversation.system_message
    first, second = tool_turn(conversation, "1"), tool_turn(conversation, "2")
    question = conversation.make("user", "q")
    window = [system, *first, *second, question]
    assert drop_oldest_turns(window, 1) == [system, *second, question]
    assert drop_oldest_turns(window, sum(m.tokens for m in first) + 1) == [system, question]
    assert drop_oldest_turns(window, sum(m.tokens for m in first + second) + 1) is None
    assert drop_oldest_turns([question], 1) is None
