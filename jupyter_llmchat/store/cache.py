"""The response cache: an identical request replays the stored answer at once, for free.

A request is identical when model, messages (images included) and every parameter match: the
key is the SHA-256 of their canonical JSON. Tools are part of it: their definitions (schemas
included) are the ``tools`` parameter, and a round after tool calls sends the calls and their
results as messages. A cached round that asked for tool calls keeps the calls (id, name,
arguments), never their results: replayed, the calls run again. Only deterministic requests (temperature 0) are
cached unless the user opts in with ``cache_random=True``: with temperature above 0, or unset
(the API's default is 1), asking again is a request for another answer.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from ..core.reply import Reply, ToolCall, Usage
from .cache_table import CacheTable
from .errors import StoreError

if TYPE_CHECKING:
    from .database import Database

KEY_VERSION = "jupyter_llmchat.cache/1"  # change when the request shape changes, to miss old keys


def request_key(request: dict[str, Any]) -> str:
    """SHA-256 hex of the request's canonical JSON (sorted keys, no spaces, UTF-8)."""
    canonical = json.dumps({"v": KEY_VERSION, "request": request}, sort_keys=True, ensure_ascii=False,
                           separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def deterministic(request: dict[str, Any]) -> bool:
    """True when the request asks for temperature 0, the only setting meant to repeat an answer."""
    temperature = (request.get("params") or {}).get("temperature")
    return isinstance(temperature, (int, float)) and temperature == 0


class ResponseCache(CacheTable):
    """Implements ``chatbot.ResponseCache`` on the ``cache`` table of a store's database."""

    table = "cache"

    def __init__(self, database: Database, *, cache_random: bool = False) -> None:
        super().__init__(database)
        self.cache_random = cache_random

    def cacheable(self, request: dict[str, Any]) -> bool:
        return self.cache_random or deterministic(request)

    def lookup(self, request: dict[str, Any]) -> Reply | None:
        """The stored Reply for this exact request, or None (also None when not cacheable)."""
        if not self.cacheable(request):
            return None
        key = request_key(request)
        try:
            rows = self.database.query("SELECT reply FROM cache WHERE key = ?", (key,))
            if not rows:
                return None
            with self.database.transaction() as db:  # hit counts tell the user what the cache saved
                db.execute("UPDATE cache SET hits = hits + 1 WHERE key = ?", (key,))
        except StoreError as error:
            self.database.warn_once("read the response cache", error)
            return None  # a miss: the question is sent as if there were no cache
        return _reply(json.loads(rows[0]["reply"]))

    def save(self, request: dict[str, Any], reply: Reply) -> None:
        """Keep ``reply`` for this request (a later identical request replays it)."""
        if not self.cacheable(request) or reply.from_cache:
            return
        data = {"text": reply.text, "model": reply.model, "status": reply.status,
                "finish_reason": reply.finish_reason,
                "usage": asdict(reply.usage) if reply.usage else None, "logprobs": reply.logprobs,
                "refusal": reply.refusal}
        if reply.calls:  # the calls the answer asked for, without what they returned
            data["calls"] = [{"id": call.id, "name": call.name, "arguments": call.arguments} for call in reply.calls]
        try:
            with self.database.transaction() as db:
                db.execute("INSERT OR REPLACE INTO cache (key, model, reply, created, hits) VALUES (?, ?, ?, ?, 0)",
                           (request_key(request), request.get("model", reply.model),
                            json.dumps(data, ensure_ascii=False), time.time()))
        except StoreError as error:
            self.database.warn_once("save the answer in the response cache", error)

    def __repr__(self) -> str:
        return f"ResponseCache({self.database.path!r}, cache_random={self.cache_random})"


def _reply(data: dict[str, Any]) -> Reply:
    usage = Usage(**data["usage"]) if data.get("usage") else None
    return Reply(text=data["text"], model=data["model"], status=data["status"],
                 finish_reason=data.get("finish_reason"), usage=usage, logprobs=data.get("logprobs"),
                 refusal=data.get("refusal"), from_cache=True, cost=0.0,
                 calls=[ToolCall(call["id"], call["name"], call["arguments"]) for call in data.get("calls") or ()])
