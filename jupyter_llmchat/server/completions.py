"""Chat Completions replies: plan the reply for a request, then encode it exactly as OpenAI does.

Pure (no sockets): ``plan_reply`` turns a request body and a ``Script`` into a ``Plan`` (text
deltas over tokens, finish reason, usage), and ``completion_body`` / ``ChunkEncoder`` produce the
wire format of the OpenAI Chat Completions API, non-streamed or as SSE chunks.
"""

from __future__ import annotations

import codecs
import json
import re
import time
import uuid
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from ..core.models import model_info
from .encoding import encoder, token_bytes
from .markdown import disclosure, generate_markdown
from .script import Script
from .structured import REFUSAL, json_reply
from .tools import DEFAULT_FRAGMENT, PlannedCall, completion_tokens, demo_results_text, planned_calls

SYSTEM_FINGERPRINT = "fp_loopback"
_ALTERNATIVES = [b" the", b" a", b",", b".", b" and", b"\n", b" of", b" to", b" is", b" in",
                 b" it", b" that", b" for", b" on", b" with", b" as", b" be", b" at", b" by", b" or"]


def message_text(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if part.get("type") == "text")
    return content or ""


def last_question(messages: list[dict[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            return message_text(message)
    return message_text(messages[-1])


@dataclass
class Plan:
    """A reply ready to send: deltas (text, token indices) over ``tokens``, plus usage."""

    model: str
    text: str
    tokens: list[bytes]
    deltas: list[tuple[str, range]]
    finish_reason: str
    prompt_tokens: int
    cached_tokens: int
    top_logprobs: int | None  # None: logprobs not requested
    refusal: bool = False  # the text is a refusal: sent in delta.refusal / message.refusal, no content
    tool_calls: list[PlannedCall] = field(default_factory=list)  # asked for after the text (server/tools.py)
    fragment: int = DEFAULT_FRAGMENT  # characters per streamed delta of a call's arguments
    call_tokens: int = 0  # completion tokens the calls cost
    id: str = field(default_factory=lambda: "chatcmpl-" + uuid.uuid4().hex[:24])
    created: int = field(default_factory=lambda: int(time.time()))

    @property
    def completion_tokens(self) -> int:
        return len(self.tokens) + self.call_tokens

    def usage(self) -> dict[str, Any]:
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                "total_tokens": self.prompt_tokens + self.completion_tokens,
                "prompt_tokens_details": {"cached_tokens": self.cached_tokens, "audio_tokens": 0},
                "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                              "accepted_prediction_tokens": 0,
                                              "rejected_prediction_tokens": 0}}

    def logprobs(self, indices: Iterable[int]) -> dict[str, Any] | None:
        if self.top_logprobs is None:
            return None
        return {"content": [_logprob(self.tokens[i], i, self.top_logprobs) for i in indices],
                "refusal": None}


def plan_reply(body: dict[str, Any], script: Script, *, prompt_tokens: int, cached_tokens: int,
               default_tokens: int) -> Plan:
    """Decide the reply text and cut it into deltas, honouring max_tokens and the script."""
    model = body["model"]
    encoding = model_info(model).encoding
    question = last_question(body["messages"])
    response_format = body.get("response_format")
    structured = json_reply(response_format, question, body["messages"], fault=script.fault) if isinstance(
        response_format, dict) else None
    calls = planned_calls(body, script)
    answered = demo_results_text(body["messages"]) if body.get("tools") and not calls else None
    if script.fault == "refusal":
        text = script.reply if script.reply is not None else REFUSAL
    elif script.reply is not None:
        text = script.reply
    elif calls and script.tokens is None:
        text = ""  # a call alone, as models mostly send them
    elif answered is not None and script.tokens is None:
        text = answered  # the offline demo, once its tools have answered
    elif script.tokens is not None:
        text = _generated(question, script.tokens, encoding, opening=False)
    elif structured is not None:
        text = structured
    else:
        text = _generated(question, default_tokens, encoding, opening=True)
    tokens = token_bytes(text, encoding)
    if script.tokens is not None:
        tokens = tokens[: script.tokens]  # exactly the requested count
    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    truncated = limit is not None and len(tokens) > limit
    if truncated:
        tokens = tokens[:limit]
    deltas = split_deltas(tokens)
    if truncated:
        calls = []  # cut before the calls were written
    finish = script.finish_reason or ("length" if truncated or script.fault == "length_cut" else
                                      "tool_calls" if calls else "stop")
    top = None
    if body.get("logprobs"):
        top = body.get("top_logprobs") or 0
    return Plan(model, "".join(text for text, _ in deltas), tokens, deltas, finish,
                prompt_tokens, cached_tokens, top, refusal=script.fault == "refusal", tool_calls=calls,
                fragment=script.fragment or DEFAULT_FRAGMENT, call_tokens=completion_tokens(model, calls))


@lru_cache(maxsize=64)
def _generated(question: str, tokens: int, encoding_name: str, *, opening: bool) -> str:
    encode = encoder(encoding_name)
    return generate_markdown(question, tokens, lambda text: len(encode(text)),
                             opening=disclosure(question) if opening else None)


def split_deltas(tokens: list[bytes]) -> list[tuple[str, range]]:
    """One delta per token, merging tokens whose bytes end mid-character so each delta is valid text."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    deltas: list[tuple[str, range]] = []
    start = 0
    for i, chunk in enumerate(tokens):
        text = decoder.decode(chunk)
        if text:
            deltas.append((text, range(start, i + 1)))
            start = i + 1
    if start < len(tokens):  # a cut in the middle of a character (max_tokens): show U+FFFD
        deltas.append((decoder.decode(b"", final=True), range(start, len(tokens))))
    return deltas


def _logprob(token: bytes, index: int, top: int) -> dict[str, Any]:
    def entry(raw: bytes, value: float) -> dict[str, Any]:
        return {"token": raw.decode("utf-8", errors="backslashreplace"), "logprob": value,
                "bytes": list(raw)}

    # Deterministic fake values: the chosen token is always the most likely one.
    chosen = -round((zlib.crc32(token + index.to_bytes(8, "little")) % 2000) / 1000, 4)
    alternatives = [raw for raw in _ALTERNATIVES if raw != token][: max(top - 1, 0)]
    tops = [entry(token, chosen)] if top else []
    tops += [entry(raw, round(chosen - 1.5 - k, 4)) for k, raw in enumerate(alternatives)]
    return {**entry(token, chosen), "top_logprobs": tops}


def completion_body(plan: Plan) -> bytes:
    """A non-streamed chat.completion object."""
    return _dumps({
        "id": plan.id, "object": "chat.completion", "created": plan.created, "model": plan.model,
        "system_fingerprint": SYSTEM_FINGERPRINT, "service_tier": "default",
        "choices": [{"index": 0, "message": _message(plan),
                     "logprobs": plan.logprobs(range(len(plan.tokens))),
                     "finish_reason": plan.finish_reason}],
        "usage": plan.usage(),
    }).encode()


def _message(plan: Plan) -> dict[str, Any]:
    """The whole answer's message: its text (or refusal), and the calls it asks for."""
    message: dict[str, Any] = {"role": "assistant", "content": None if plan.refusal else plan.text,
                               "refusal": plan.text if plan.refusal else None, "annotations": []}
    if plan.tool_calls:
        message["content"] = plan.text or None
        message["tool_calls"] = [{"id": call.id, "type": "function",
                                  "function": {"name": call.name, "arguments": call.arguments}}
                                 for call in plan.tool_calls]
    return message


class ChunkEncoder:
    """SSE events of a streamed reply, each ``data: {json}\\n\\n``, built from a shared prefix."""

    def __init__(self, plan: Plan, *, include_usage: bool) -> None:
        self.plan = plan
        self.include_usage = include_usage
        head = {"id": plan.id, "object": "chat.completion.chunk", "created": plan.created,
                "model": plan.model, "system_fingerprint": SYSTEM_FINGERPRINT, "service_tier": "default"}
        # compact JSON, as the API sends it
        self._head = "data: " + _dumps(head)[:-1] + ',"choices":[{"index":0,'
        self._tail = "}\n\n" if not include_usage else ',"usage":null}\n\n'

    def _event(self, delta: str, logprobs: str, finish: str) -> bytes:
        return (f'{self._head}"delta":{delta},"logprobs":{logprobs},"finish_reason":{finish}}}]'
                f"{self._tail}").encode()

    def first(self) -> bytes:
        return self._event('{"role":"assistant","content":"","refusal":null}', "null", "null")

    def content(self) -> list[bytes]:
        """One event per delta, precomputed so a full-speed stream is only socket writes: the text,
        then each tool call (its id and name first, then its arguments in fragments)."""
        plan = self.plan
        key = '{"refusal":' if plan.refusal else '{"content":'
        return [self._event(key + _dumps(text) + "}", _dumps(plan.logprobs(indices)), "null")
                for text, indices in plan.deltas] + self.call_events()

    def call_events(self) -> list[bytes]:
        events = []
        for index, call in enumerate(self.plan.tool_calls):
            opening = {"index": index, "id": call.id, "type": "function", "function": {"name": call.name,
                                                                                       "arguments": ""}}
            events.append(self._event(_dumps({"tool_calls": [opening]}), "null", "null"))
            events.extend(self._event(_dumps({"tool_calls": [{"index": index, "function": {"arguments": piece}}]}),
                                      "null", "null") for piece in call.fragments(self.plan.fragment))
        return events

    def sizes(self) -> list[int]:
        """Tokens each event of ``content`` carries, for pacing (a call's event: one)."""
        calls = sum(1 + len(call.fragments(self.plan.fragment)) for call in self.plan.tool_calls)
        return [len(indices) for _, indices in self.plan.deltas] + [1] * calls

    def content_in_utf16_halves(self, *, drop_first_low: bool = False) -> list[bytes]:
        """Like ``content``, but each character outside the BMP is cut into two events holding the
        JSON escapes of its UTF-16 halves, as a server that cuts text by UTF-16 code units sends it;
        ``drop_first_low``: the low half of the first such character never comes (a lone surrogate)."""
        events: list[bytes] = []
        dropped = not drop_first_low
        for text, _ in self.plan.deltas:
            for piece in re.split("([\U00010000-\U0010FFFF])", text):
                if not piece:
                    continue
                if len(piece) == 1 and ord(piece) > 0xFFFF:
                    halves = piece.encode("utf-16-le")
                    high, low = halves[:2].decode("utf-16-le", "surrogatepass"), halves[2:].decode(
                        "utf-16-le", "surrogatepass")
                    events.append(self._event('{"content":' + json.dumps(high) + "}", "null", "null"))
                    if dropped:
                        events.append(self._event('{"content":' + json.dumps(low) + "}", "null", "null"))
                    dropped = True
                else:
                    events.append(self._event('{"content":' + _dumps(piece) + "}", "null", "null"))
        return events

    def last(self) -> bytes:
        event = self._event("{}", "null", json.dumps(self.plan.finish_reason))
        if self.include_usage:
            usage = {"id": self.plan.id, "object": "chat.completion.chunk", "created": self.plan.created,
                     "model": self.plan.model, "system_fingerprint": SYSTEM_FINGERPRINT,
                     "service_tier": "default", "choices": [], "usage": self.plan.usage()}
            event += b"data: " + _dumps(usage).encode() + b"\n\n"
        return event + DONE_EVENT


DONE_EVENT = b"data: [DONE]\n\n"
MALFORMED_EVENT = b"data: {not json\n\n"
# What llama.cpp's server sends in a stream when the prompt exceeds its context (or an image cannot
# be read): an SSE "error" field, which OpenAI clients ignore, so they see a stream with nothing in it.
LLAMACPP_ERROR_EVENT = (b'error: {"code":400,"message":"the request exceeds the available context size, try '
                        b'increasing it","type":"exceed_context_size_error"}\n\n')
# What OpenAI sends when a stream fails server-side after it started.
ERROR_EVENT = (b'data: {"error":{"message":"The server had an error while processing your request. Sorry '
               b'about that!","type":"server_error","param":null,"code":null}}\n\n')
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
