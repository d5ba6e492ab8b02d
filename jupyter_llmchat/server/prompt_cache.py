"""Simulated OpenAI prompt caching: cached tokens are the longest prefix shared with an earlier prompt.

As OpenAI does it: only prompts of at least 1024 tokens, counted in 128-token steps, per model.
"""

from __future__ import annotations

import json
import threading
import zlib
from array import array
from collections import defaultdict, deque
from typing import Any

from ..core.models import model_info
from .encoding import encoder

CACHE_MIN_TOKENS = 1024  # OpenAI caches prompts of at least 1024 tokens ...
CACHE_INCREMENT = 128  # ... in 128-token steps of the common prefix


class PromptCache:
    """Simulates OpenAI prompt caching: the longest token prefix shared with an earlier prompt."""

    def __init__(self, keep: int = 16) -> None:
        self._lock = threading.Lock()
        # arrays, not lists: 8 bytes a token instead of ~36, for long-context benchmarks
        self._seen: dict[str, deque[array[int]]] = defaultdict(lambda: deque(maxlen=keep))

    def cached_tokens(self, model: str, messages: list[dict[str, Any]], prompt_tokens: int) -> int:
        """Cached tokens for this prompt (0 below 1024), and remember it for later requests."""
        sequence = _prompt_sequence(messages, model)
        with self._lock:
            seen = self._seen[model]
            common = max((_common_prefix(sequence, old) for old in seen), default=0)
            seen.append(sequence)
        if prompt_tokens < CACHE_MIN_TOKENS or common < CACHE_MIN_TOKENS:
            return 0
        return min(common - common % CACHE_INCREMENT, prompt_tokens)

    def clear(self) -> None:
        with self._lock:
            self._seen.clear()


def _prompt_sequence(messages: list[dict[str, Any]], model: str) -> array[int]:
    """The prompt as token ids, with the 3 per-message overhead tokens as negative markers."""
    encode = encoder(model_info(model).encoding)
    sequence: array[int] = array("q")
    for message in messages:
        sequence.extend((-1, -2, -3))
        sequence.extend(encode(str(message.get("role"))))
        content = message.get("content")
        for part in content if isinstance(content, list) else [{"type": "text", "text": content or ""}]:
            if part.get("type") == "text":
                sequence.extend(encode(part.get("text", "")))
            else:  # an image is one marker derived from its URL: equal images share a prefix
                sequence.append(-4 - zlib.crc32(json.dumps(part, sort_keys=True).encode()))
    return sequence


def _common_prefix(a: array[int], b: array[int]) -> int:
    n = min(len(a), len(b))
    if a[:n] == b[:n]:
        return n
    lo, hi = 0, n  # binary search on slice equality: C-speed compares instead of a Python loop
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo
