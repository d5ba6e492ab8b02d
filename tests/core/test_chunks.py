"""Stream chunks read by their fields: text deltas, finish reason, usage, logprobs, model, tool calls
put together from their fragments; chunks that leave fields out (other servers) are read too.
Chunks are the SDK's own types."""

from __future__ import annotations

from types import SimpleNamespace

from openai.types.chat import ChatCompletionChunk

from jupyter_llmchat.core.chunks import StreamResult, absorb, absorb_call, usage_of
from jupyter_llmchat.core.messages import ToolRequest
from jupyter_llmchat.core.reply import Usage


def chunk(**data) -> ChatCompletionChunk:
    base = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o", "choices": []}
    return ChatCompletionChunk.model_validate({**base, **data})


def test_text_finish_reason_usage_and_logprobs_are_read():
    result = StreamResult()
    texts = [absorb(c, result) for c in [
        chunk(choices=[{"index": 0, "delta": {"role": "assistant", "content": ""}}]),
        chunk(choices=[{"index": 0, "delta": {"content": "Hi"}, "logprobs": {"content": [
            {"token": "Hi", "logprob": -0.1, "bytes": [72, 105],
             "top_logprobs": [{"token": "Hi", "logprob": -0.1, "bytes": [72, 105]}]}]}}]),
        chunk(choices=[{"index": 0, "delta": {}, "finish_reason": "stop"}]),
        chunk(usage={"prompt_tokens": 12, "completion_tokens": 1, "total_tokens": 13,
                     "prompt_tokens_details": {"cached_tokens": 4}}),
    ]]
    assert texts == ["", "Hi", None, None]
    assert result == StreamResult(model="gpt-4o", finish_reason="stop", usage=Usage(12, 1, 4), logprobs=[
        {"token": "Hi", "logprob": -0.1, "top_logprobs": [{"token": "Hi", "logprob": -0.1}], "bytes": [72, 105]}])


def test_the_system_fingerprint_is_read_and_a_token_without_bytes_has_none():
    result = StreamResult()
    absorb(chunk(system_fingerprint="fp_44709d6fcb", choices=[{"index": 0, "delta": {"content": "é"}, "logprobs": {
        "content": [{"token": "é", "logprob": -0.5, "top_logprobs": []}]}}]), result)
    absorb(chunk(system_fingerprint=None, choices=[]), result)  # a chunk without one keeps the last
    assert result.system_fingerprint == "fp_44709d6fcb"
    assert result.logprobs == [{"token": "é", "logprob": -0.5, "top_logprobs": []}]


def test_chunks_that_leave_fields_out_are_read():
    result = StreamResult()
    bare = SimpleNamespace(choices=[SimpleNamespace(delta=SimpleNamespace(content="x"))])
    assert absorb(bare, result) == "x" and result == StreamResult()
    assert absorb(SimpleNamespace(), result) is None


def test_usage_from_an_object_or_a_json_dict():
    assert usage_of(None) is None
    assert usage_of({"prompt_tokens": 5, "completion_tokens": 2}) == Usage(5, 2, 0)
    assert usage_of({"prompt_tokens": 5, "completion_tokens": 2, "prompt_tokens_details": None}) == Usage(5, 2)


def test_tool_calls_are_put_together_from_interleaved_fragments():
    result = StreamResult()
    deltas = [
        {"role": "assistant", "content": None, "tool_calls": [
            {"index": 0, "id": "call_a", "type": "function", "function": {"name": "get_weather", "arguments": ""}}]},
        {"tool_calls": [{"index": 0, "function": {"arguments": '{"ci'}}]},
        {"tool_calls": [{"index": 1, "id": "call_b", "type": "function", "function": {"name": "add",
                                                                                      "arguments": '{"a":'}}]},
        {"tool_calls": [{"index": 0, "function": {"arguments": 'ty": "Paris"}'}}]},
        {"tool_calls": [{"index": 1, "function": {"arguments": " 1}"}}]},
    ]
    texts = [absorb(chunk(choices=[{"index": 0, "delta": delta}]), result) for delta in deltas]
    absorb(chunk(choices=[{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]), result)
    assert texts == [None] * 5 and result.finish_reason == "tool_calls"
    assert result.tool_calls == [ToolRequest("call_a", "get_weather", '{"city": "Paris"}'),
                                 ToolRequest("call_b", "add", '{"a": 1}')]


def test_tool_calls_of_whole_messages_and_of_servers_that_repeat_the_name_or_leave_out_the_index():
    result = StreamResult()
    absorb_call({"id": "call_1", "function": {"name": "f", "arguments": '{"x": 1}'}}, result, 0)
    absorb_call({"id": "call_2", "function": {"name": "g", "arguments": "{}"}}, result, 1)
    assert result.tool_calls == [ToolRequest("call_1", "f", '{"x": 1}'), ToolRequest("call_2", "g", "{}")]
    repeated = StreamResult()
    for piece in ('{"q"', ': "x"}'):
        absorb_call(SimpleNamespace(index=0, id="call_9", function=SimpleNamespace(name="search", arguments=piece)),
                    repeated)
    assert repeated.tool_calls == [ToolRequest("call_9", "search", '{"q": "x"}')]
    nameless = StreamResult()
    nameless.add_call_delta(0, None, "f", "{}")
    assert nameless.tool_calls == [ToolRequest("call_0", "f", "{}")]  # an id is made when none was sent
