"""The model's tokenizer for replies and cache prefixes, with a word-level stand-in if none loads."""

from __future__ import annotations

import re
import zlib
from collections.abc import Callable
from functools import cache

from ..core.tokens import get_encoding


@cache
def encoder(encoding_name: str) -> Callable[[str], list[int]]:
    """``encode(text) -> token ids`` for the tiktoken encoding ``encoding_name``."""
    encoding = get_encoding(encoding_name)
    if encoding is None:  # no vocabulary at all: words and spaces stand in for tokens
        return lambda text: [zlib.crc32(piece.encode()) for piece in _pieces(text)]
    return lambda text: encoding.encode(text, disallowed_special=())


def _pieces(text: str) -> list[str]:
    return re.findall(r"\s*\S+|\s+", text)


def token_bytes(text: str, encoding_name: str) -> list[bytes]:
    """The reply split into its tokens' bytes with the model's encoding."""
    encoding = get_encoding(encoding_name)
    if encoding is None:
        return [piece.encode() for piece in _pieces(text)]
    return encoding.decode_tokens_bytes(encoding.encode(text, disallowed_special=()))
