"""Stream chunks read by their fields: text deltas, finish reason, usage, logprobs, model; chunks
that leave fields out (other servers) are read too. Chunks are the SDK's own types."""

from __future__ import annotations

from types import SimpleNamespace

from openai.types.chat import ChatCompletionChunk

from jupyter_llmchat.core.chunks import StreamResult, absorb, usage_of
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
        {"token": "Hi", "logprob": -0.1, "top_logprobs": [{"token": "Hi", "logprob": -0.1}]}])


def test_chunks_that_leave_fields_out_are_read():
    result = StreamResult()
    bare = SimpleNamespace(choices=[SimpleNamespace(delta=SimpleNamespace(content="x"))])
    assert absorb(bare, result) == "x" and result == StreamResult()
    assert absorb(SimpleNamespace(), result) is None


def test_usage_from_an_object_or_a_json_dict():
    assert usage_of(None) is None
    assert usage_of({"prompt_tokens": 5, "completion_tokens": 2}) == Usage(5, 2, 0)
    assert usage_of({"prompt_tokens": 5, "completion_tokens": 2, "prompt_tokens_details": None}) == Usage(5, 2)
