"""The loopback server's tokenizer (server/encoding.py): the model's tiktoken ids and token bytes,
special-token text read as ordinary text, and the word-level stand-in when no vocabulary loads."""

from __future__ import annotations

import warnings
import zlib

from jupyter_llmchat.core.tokens import get_encoding
from jupyter_llmchat.server.encoding import encoder, token_bytes

UNLOADABLE = "no-such-encoding-loopback-tests"  # tiktoken knows no such name: the stand-in is used


def stand_in() -> None:
    """Load (once per process) the encoding that cannot load, without its RuntimeWarning in the report."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        get_encoding(UNLOADABLE)


def test_encoder_gives_the_encodings_token_ids_and_is_made_once_per_encoding():
    text = "Grüße 👋🏽 — streaming, please."
    encode = encoder("o200k_base")
    assert encode(text) == get_encoding("o200k_base").encode(text)
    assert encoder("o200k_base") is encode
    assert encoder("cl100k_base")(text) == get_encoding("cl100k_base").encode(text)
    assert encode(text) != encoder("cl100k_base")(text)


def test_special_token_text_in_a_prompt_is_counted_as_ordinary_text():
    assert encoder("o200k_base")("<|endoftext|>") == [27, 91, 419, 1440, 919, 91, 29]
    assert token_bytes("<|endoftext|>", "o200k_base") == [b"<", b"|", b"end", b"of", b"text", b"|", b">"]


def test_token_bytes_split_the_reply_as_the_model_does_even_inside_a_character():
    pieces = token_bytes("Grüße 👋🏽", "o200k_base")
    assert pieces == [b"Gr", b"\xc3\xbc", b"\xc3\x9fe", b" \xf0\x9f\x91", b"\x8b", b"\xf0\x9f\x8f", b"\xbd"]
    assert b"".join(pieces) == "Grüße 👋🏽".encode()
    assert len(pieces) == len(encoder("o200k_base")("Grüße 👋🏽"))
    assert token_bytes("", "o200k_base") == []


def test_without_a_vocabulary_words_with_their_leading_spaces_stand_in_for_tokens():
    stand_in()
    text = "Hello  world\n! Hello"
    assert token_bytes(text, UNLOADABLE) == [b"Hello", b"  world", b"\n!", b" Hello"]
    assert token_bytes("trailing  ", UNLOADABLE) == [b"trailing", b"  "]
    ids = encoder(UNLOADABLE)(text)
    assert ids == [zlib.crc32(piece) for piece in (b"Hello", b"  world", b"\n!", b" Hello")]
    assert encoder(UNLOADABLE)("Hello") == ids[:1]  # equal words, equal ids: prompt prefixes still match
