"""Exact token counts for chat prompts, offline.

Text is counted with the model's tiktoken encoding, built from the vocabulary files that the
``bpe-openai`` package ships (tiktoken itself would download them on first use, which fails
offline). Chat overhead follows OpenAI's cookbook: 3 tokens per message, 1 per ``name``, and 3
that prime the reply. If no encoding can be loaded at all, counts fall back to a documented
estimate, ceil(UTF-8 bytes / 4), and a warning says so once.

Local models are counted as their server counts them (``templates``): the chat template's
overheads instead of the cookbook's, text counted by the server's own tokenizer when it offers
one (``ModelInfo.count_text``: llama.cpp's and vLLM's /tokenize), else with our closest encoding
plus the template's safety margin, so a trimmed prompt never exceeds the server's window.

Loading a vocabulary costs 0.3-0.5 s, so a TokenCounter loads it on its first exact count, never
when it is made. Until then ``bound_message`` gives a free upper bound: a BPE token covers at
least one byte, so a text never has more tokens than UTF-8 bytes. A prompt whose bound fits the
budget needs no exact count before it is sent.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import math
import threading
import warnings
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from .models import DEFAULT_IMAGE_RULE, ImageTokenRule, ModelInfo, model_info
from .templates import ChatTemplate, template_named

if TYPE_CHECKING:
    import tiktoken

TOKENS_PER_MESSAGE = 3
TOKENS_PER_NAME = 1
REPLY_PRIMING_TOKENS = 3
# Tool calls and tool definitions (OpenAI does not publish how it renders them): a call costs its
# name and its arguments' JSON plus TOKENS_PER_TOOL_CALL; a tool message's tool_call_id is counted
# like a name; each definition costs the compact JSON of its "function" object plus TOKENS_PER_TOOL,
# and TOOLS_END once (the cookbook's gpt-4o figures). JSON punctuation makes this an over-count,
# the safe side for trimming; the loopback server counts the same way.
TOKENS_PER_TOOL_CALL = 3
TOKENS_PER_TOOL = 7
TOOLS_END = 12
ESTIMATE_BYTES_PER_TOKEN = 4
# A URL image's size is unknown before the provider fetches it: budget the largest tile grid
# a 2048x768 image can take after scaling, so trimming never under-counts.
UNKNOWN_IMAGE_SIZE = (2048, 768)


# Split patterns and special tokens of OpenAI's encodings, as tiktoken_ext.openai_public defines them.
_CL100K_PATTERN = (r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+"""
                   r"""|\s++$|\s*[\r\n]|\s+(?!\S)|\s""")
_O200K_PATTERN = "|".join([
    r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
    r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
    r"""\p{N}{1,3}""",
    r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
    r"""\s*[\r\n]+""",
    r"""\s+(?!\S)""",
    r"""\s+""",
])
_ENCODINGS = {
    "cl100k_base": (_CL100K_PATTERN, {"<|endoftext|>": 100257, "<|fim_prefix|>": 100258,
                                      "<|fim_middle|>": 100259, "<|fim_suffix|>": 100260,
                                      "<|endofprompt|>": 100276}),
    "o200k_base": (_O200K_PATTERN, {"<|endoftext|>": 199999, "<|endofprompt|>": 200018}),
}


_LOADED: dict[str, tiktoken.Encoding | None] = {}  # encoding name -> encoding (None: cannot be loaded)
_LOADING = threading.Lock()  # two threads asking at once load a vocabulary once


def get_encoding(name: str) -> tiktoken.Encoding | None:
    """The tiktoken encoding ``name`` (o200k_base, cl100k_base), or None if none can be loaded.
    Loaded once per process (0.3-0.5 s), on first use."""
    if name in _LOADED:
        return _LOADED[name]
    with _LOADING:
        if name not in _LOADED:
            _LOADED[name] = _load_encoding(name)
        return _LOADED[name]


def encoding_loaded(name: str) -> bool:
    """True when ``get_encoding(name)`` returns at once (loaded, or known to be unavailable)."""
    return name in _LOADED


def _load_encoding(name: str) -> tiktoken.Encoding | None:
    import tiktoken

    try:
        return _encoding_from_bpe_openai(name)
    except Exception:
        pass
    try:
        return tiktoken.get_encoding(name)
    except Exception as error:
        warnings.warn(
            f"jupyter_llmchat: token counts are estimates (UTF-8 bytes / {ESTIMATE_BYTES_PER_TOKEN}): "
            f"tiktoken encoding {name!r} could not be loaded ({error.__class__.__name__}); "
            "install bpe-openai to count exactly offline",
            RuntimeWarning, stacklevel=3)
        return None


def _encoding_from_bpe_openai(name: str) -> tiktoken.Encoding:
    """Build the encoding from the vocabulary file the bpe-openai package ships (no download)."""
    import gzip
    import importlib.util
    from pathlib import Path

    import tiktoken

    # Locate the data folder without importing bpe_openai itself (its import costs ~1 s).
    spec = importlib.util.find_spec("bpe_openai")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("bpe-openai is not installed")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / f"{name}.tiktoken.gz"
    pattern, special = _ENCODINGS[name]
    ranks: dict[bytes, int] = {}
    with gzip.open(path, "rb") as vocab:
        for line in vocab:
            if line.strip():
                token, rank = line.split()
                ranks[base64.b64decode(token)] = int(rank)
    return tiktoken.Encoding(name, pat_str=pattern, mergeable_ranks=ranks, special_tokens=special)


class TokenCounter:
    """Counts tokens for one model. Text counts are exact when its encoding is available; the
    encoding is loaded on the first count, not when the counter is made."""

    def __init__(self, model: str | ModelInfo) -> None:
        self.info = model if isinstance(model, ModelInfo) else model_info(model)
        self.template: ChatTemplate | None = template_named(self.info.template)
        self._encoding: tiktoken.Encoding | None = None
        self._resolved = False

    @property
    def encoding(self) -> tiktoken.Encoding | None:
        """The model's encoding, loaded now if it was not yet (None: counts are estimates)."""
        if not self._resolved:
            self._encoding = get_encoding(self.info.encoding)
            self._resolved = True
        return self._encoding

    @encoding.setter
    def encoding(self, encoding: tiktoken.Encoding | None) -> None:
        self._encoding, self._resolved = encoding, True

    @property
    def ready(self) -> bool:
        """True when counting costs no vocabulary load."""
        return self._resolved or encoding_loaded(self.info.encoding) or self.info.count_text is not None

    @property
    def exact(self) -> bool:
        """True when counts are the provider's own: OpenAI's encoding and rules, no margin."""
        return (self.encoding is not None and self.info.known and self.template is None
                and not self.info.text_margin)

    @property
    def reply_priming(self) -> int:
        """Tokens every prompt carries besides its messages: the reply priming, and what the chat
        template adds once (BOS, a system block)."""
        return REPLY_PRIMING_TOKENS if self.template is None else self.template.fixed

    def count_text(self, text: str) -> int:
        """Tokens of ``text`` alone: the server's tokenizer's count when it has one, else ours."""
        if self.info.count_text is not None and text:
            try:
                return self.info.count_text(text)
            except Exception:
                pass  # the server stopped answering: our own count (with the margin, see _message_text)
        if self.encoding is None:
            return math.ceil(len(text.encode("utf-8", "surrogatepass")) / ESTIMATE_BYTES_PER_TOKEN)
        # disallowed_special=() counts "<|endoftext|>" typed by a user as ordinary text, as the API does.
        return len(self.encoding.encode(text, disallowed_special=()))

    def count_message(self, role: str, text: str, *, name: str | None = None,
                      images: Iterable[tuple[int | None, int | None, str]] = ()) -> int:
        """Tokens one message adds to a prompt; ``images`` are (width, height, detail) triples."""
        if self.template is None:
            total = TOKENS_PER_MESSAGE + self.count_text(role) + self._message_text(text)
        else:  # the template's overhead includes the role
            total = self.template.per_message + self._message_text(text)
        if name:
            total += TOKENS_PER_NAME + self.count_text(name)
        for width, height, detail in images:
            total += image_tokens(width, height, detail, self.info.image_tokens)
        return total

    def bound_message(self, role: str, text: str, *, name: str | None = None,
                      images: Iterable[tuple[int | None, int | None, str]] = ()) -> int:
        """An upper bound of ``count_message`` that needs no vocabulary: UTF-8 bytes for tokens."""
        size = len(text.encode("utf-8", "surrogatepass"))
        if self.info.text_margin:
            size = math.ceil(size * (1 + self.info.text_margin))
        if self.template is None:
            total = TOKENS_PER_MESSAGE + len(role.encode()) + size
        else:  # +1: a SentencePiece tokenizer may add a word-start piece before the first byte
            total = self.template.per_message + size + 1
        if name:
            total += TOKENS_PER_NAME + len(name.encode("utf-8", "surrogatepass"))
        for width, height, detail in images:
            total += image_tokens(width, height, detail, self.info.image_tokens)
        return total

    def _message_text(self, text: str) -> int:
        """``count_text``, plus the template's safety margin unless the server's tokenizer counted."""
        count = self.count_text(text)
        margin = self.info.text_margin
        return math.ceil(count * (1 + margin)) if margin else count

    def count_calls(self, calls: Iterable[tuple[str, str, str]]) -> int:
        """Tokens the tool calls of an assistant message add: (id, name, arguments) triples."""
        return sum(TOKENS_PER_TOOL_CALL + self.count_text(name) + self.count_text(arguments)
                   for _, name, arguments in calls)

    def bound_calls(self, calls: Iterable[tuple[str, str, str]]) -> int:
        """An upper bound of ``count_calls`` that needs no vocabulary."""
        return sum(TOKENS_PER_TOOL_CALL + len(name.encode()) + len(arguments.encode("utf-8", "surrogatepass"))
                   for _, name, arguments in calls)

    def count_tools(self, tools: Sequence[dict[str, Any]]) -> int:
        """Prompt tokens the ``tools`` parameter (API-shaped tool definitions) adds."""
        if not tools:
            return 0
        return TOOLS_END + sum(TOKENS_PER_TOOL + self.count_text(_compact(tool.get("function", tool)))
                               for tool in tools)

    def bound_tools(self, tools: Sequence[dict[str, Any]]) -> int:
        """An upper bound of ``count_tools`` that needs no vocabulary."""
        if not tools:
            return 0
        return TOOLS_END + sum(TOKENS_PER_TOOL + len(_compact(tool.get("function", tool)).encode()) for tool in tools)

    def count_api_messages(self, messages: Sequence[dict[str, Any]]) -> int:
        """Prompt tokens for API-shaped messages, including the reply priming."""
        total = self.reply_priming
        for message in messages:
            text, images = _split_content(message.get("content"))
            name = message.get("name") or message.get("tool_call_id")
            total += self.count_message(message["role"], text, name=name, images=images)
            calls = message.get("tool_calls")
            if isinstance(calls, list):
                total += self.count_calls(_api_call(call) for call in calls)
        return total


def count_prompt_tokens(messages: Sequence[dict[str, Any]], model: str,
                        tools: Sequence[dict[str, Any]] | None = None) -> int:
    """Prompt tokens the endpoint will bill for ``messages`` (and ``tools``) sent to ``model``
    (cookbook rules)."""
    counter = TokenCounter(model)
    return counter.count_api_messages(messages) + counter.count_tools(tools or ())


def _compact(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _api_call(call: Any) -> tuple[str, str, str]:
    """(id, name, arguments) of an API-shaped tool call; what is missing counts as empty."""
    function = call.get("function") if isinstance(call, dict) else None
    function = function if isinstance(function, dict) else {}
    name, arguments = function.get("name"), function.get("arguments")
    return "", name if isinstance(name, str) else "", arguments if isinstance(arguments, str) else ""


def image_tokens(width: int | None, height: int | None, detail: str,
                 rule: ImageTokenRule | None) -> int:
    """Tokens one image costs under ``rule``; detail "auto" is counted as "high" (the upper bound)."""
    if rule is None:
        rule = DEFAULT_IMAGE_RULE
    if rule.kind == "area":
        if width is None or height is None:
            return rule.max_tokens  # the most one image can cost
        w, h = scaled_for_area(width, height, rule)
        return min(math.ceil(w * h / rule.pixels_per_token), rule.max_tokens)
    if width is None or height is None:
        width, height = UNKNOWN_IMAGE_SIZE
    if rule.kind == "patch":
        return math.ceil(_patch_count(width, height) * rule.multiplier)
    if detail == "low":
        return rule.base
    w, h = scaled_for_high_detail(width, height)
    return rule.base + rule.per_tile * math.ceil(w / 512) * math.ceil(h / 512)


def scaled_for_area(width: int, height: int, rule: ImageTokenRule) -> tuple[int, int]:
    """The size an ``area`` model (Claude) shrinks an image to: the long side within ``rule.side``
    pixels and the area within ``rule.max_tokens`` tokens; never enlarged."""
    scale = min(1.0, rule.side / max(width, height),
                math.sqrt(rule.max_tokens * rule.pixels_per_token / (width * height)))
    if scale >= 1.0:
        return width, height
    return max(int(width * scale), 1), max(int(height * scale), 1)


def scaled_for_high_detail(width: int, height: int) -> tuple[int, int]:
    """The size OpenAI works on: fit in 2048x2048, then shortest side down to 768."""
    w, h = float(width), float(height)
    if max(w, h) > 2048:
        scale = 2048 / max(w, h)
        w, h = w * scale, h * scale
    if min(w, h) > 768:
        scale = 768 / min(w, h)
        w, h = w * scale, h * scale
    return int(w), int(h)


def scaled_for_patches(width: int, height: int, patch: int = 32, cap: int = 1536) -> tuple[int, int]:
    """The size patch models shrink an image to so it covers at most ``cap`` 32-px patches.

    OpenAI's rule: shrink by sqrt(32*32*cap / (w*h)), then a little more so that one side fills a
    whole number of patches. Rounding down never adds a patch, so the result costs what it claims.
    """
    if math.ceil(width / patch) * math.ceil(height / patch) <= cap:
        return width, height
    ratio = math.sqrt(patch * patch * cap / (width * height))
    ratio *= min(math.floor(width * ratio / patch) / (width * ratio / patch) if width * ratio >= patch else 1,
                 math.floor(height * ratio / patch) / (height * ratio / patch) if height * ratio >= patch else 1)
    return max(int(width * ratio + 1e-9), 1), max(int(height * ratio + 1e-9), 1)


def _patch_count(width: int, height: int, patch: int = 32, cap: int = 1536) -> int:
    """32-px patches covering the image, after the shrink OpenAI applies above ``cap`` patches."""
    w, h = scaled_for_patches(width, height, patch, cap)
    return min(math.ceil(w / patch) * math.ceil(h / patch), cap)


def _split_content(content: Any) -> tuple[str, list[tuple[int | None, int | None, str]]]:
    """Text and image sizes of a message's content (a string or a list of parts)."""
    if content is None:
        return "", []
    if isinstance(content, str):
        return content, []
    texts: list[str] = []
    images: list[tuple[int | None, int | None, str]] = []
    for part in content:
        if part.get("type") == "text":
            texts.append(part.get("text", ""))
        elif part.get("type") == "image_url":
            image = part.get("image_url") or {}
            width, height = data_url_size(image.get("url", ""))
            images.append((width, height, image.get("detail") or "auto"))
    return "".join(texts), images


def data_url_size(url: str) -> tuple[int | None, int | None]:
    """Pixel size of a base64 image data URL, or (None, None) for URLs and undecodable data."""
    if not url.startswith("data:") or ";base64," not in url:
        return None, None
    try:
        raw = base64.b64decode(url.split(",", 1)[1], validate=True)
        from PIL import Image

        with Image.open(io.BytesIO(raw)) as image:
            return image.size
    except (binascii.Error, ValueError, OSError, ImportError):
        return None, None
