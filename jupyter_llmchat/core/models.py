"""The model table: context windows, output limits, encodings, image-token rules and prices.

Figures are OpenAI's published ones (prices in USD per million tokens, standard tier, as of
2026). Dated snapshots ("gpt-4o-2024-08-06") resolve to their family by longest prefix. Models
not in the table (Ollama, vLLM, llama.cpp, LM Studio, ...) get ``DEFAULT_CONTEXT_WINDOW`` and an
o200k_base estimate; pass ``context_window=`` to the Chatbot to set the real window.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

DEFAULT_CONTEXT_WINDOW = 8192
DEFAULT_MAX_OUTPUT = 4096
DEFAULT_ANSWER_RESERVE = 4096  # tokens kept free for the answer when max_tokens is not set...
ANSWER_SHARE = 0.5  # ...but never more than this share of the window (a 4,096 window keeps 2,048)


@dataclass(frozen=True)
class ImageTokenRule:
    """How a model family charges for an image (OpenAI's vision pricing guide).

    ``tile``: base + per_tile * number of 512-px tiles after scaling (detail=low: base only).
    ``patch``: 32-px patches (capped at 1536) times ``multiplier``.
    """

    kind: str  # "tile" or "patch"
    base: int = 0
    per_tile: int = 0
    multiplier: float = 1.0


@dataclass(frozen=True)
class ModelInfo:
    name: str
    context_window: int
    max_output: int
    encoding: str  # tiktoken encoding name
    input_price: float | None = None  # USD per 1M prompt tokens
    cached_input_price: float | None = None  # USD per 1M cached prompt tokens (None: priced as input)
    output_price: float | None = None  # USD per 1M completion tokens
    vision: bool = False
    image_tokens: ImageTokenRule | None = None
    reasoning: bool = False  # o-series / gpt-5: take max_completion_tokens, not max_tokens
    known: bool = True  # False for models outside the table (counts are estimates)

    def cost(self, prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0) -> float | None:
        """USD for one request, cached prompt tokens priced as the provider prices them."""
        if self.input_price is None or self.output_price is None:
            return None
        cached_price = self.cached_input_price if self.cached_input_price is not None else self.input_price
        uncached = max(prompt_tokens - cached_tokens, 0)
        return (uncached * self.input_price + cached_tokens * cached_price
                + completion_tokens * self.output_price) / 1_000_000


_TILE_4O = ImageTokenRule("tile", base=85, per_tile=170)
# Vision models outside the table (local servers) are counted with gpt-4o's rule.
DEFAULT_IMAGE_RULE = _TILE_4O
_TILE_4O_MINI = ImageTokenRule("tile", base=2833, per_tile=5667)
_TILE_O = ImageTokenRule("tile", base=75, per_tile=150)
_TILE_5 = ImageTokenRule("tile", base=70, per_tile=140)


def _m(name: str, window: int, out: int, enc: str, price: tuple[float, float | None, float] | None,
       *, image: ImageTokenRule | None = None, reasoning: bool = False) -> ModelInfo:
    inp, cached, outp = price if price else (None, None, None)
    return ModelInfo(name, window, out, enc, inp, cached, outp, vision=image is not None,
                     image_tokens=image, reasoning=reasoning)


MODELS: dict[str, ModelInfo] = {m.name: m for m in [
    _m("gpt-5", 400_000, 128_000, "o200k_base", (1.25, 0.125, 10.0), image=_TILE_5, reasoning=True),
    _m("gpt-5-mini", 400_000, 128_000, "o200k_base", (0.25, 0.025, 2.0),
       image=ImageTokenRule("patch", multiplier=1.62), reasoning=True),
    _m("gpt-5-nano", 400_000, 128_000, "o200k_base", (0.05, 0.005, 0.40),
       image=ImageTokenRule("patch", multiplier=2.46), reasoning=True),
    _m("gpt-4.1", 1_047_576, 32_768, "o200k_base", (2.0, 0.50, 8.0), image=_TILE_4O),
    _m("gpt-4.1-mini", 1_047_576, 32_768, "o200k_base", (0.40, 0.10, 1.60),
       image=ImageTokenRule("patch", multiplier=1.62)),
    _m("gpt-4.1-nano", 1_047_576, 32_768, "o200k_base", (0.10, 0.025, 0.40),
       image=ImageTokenRule("patch", multiplier=2.46)),
    _m("gpt-4o", 128_000, 16_384, "o200k_base", (2.50, 1.25, 10.0), image=_TILE_4O),
    _m("gpt-4o-mini", 128_000, 16_384, "o200k_base", (0.15, 0.075, 0.60), image=_TILE_4O_MINI),
    _m("chatgpt-4o-latest", 128_000, 16_384, "o200k_base", (5.0, None, 15.0), image=_TILE_4O),
    _m("o1", 200_000, 100_000, "o200k_base", (15.0, 7.50, 60.0), image=_TILE_O, reasoning=True),
    _m("o3", 200_000, 100_000, "o200k_base", (2.0, 0.50, 8.0), image=_TILE_O, reasoning=True),
    _m("o3-mini", 200_000, 100_000, "o200k_base", (1.10, 0.55, 4.40), reasoning=True),
    _m("o4-mini", 200_000, 100_000, "o200k_base", (1.10, 0.275, 4.40),
       image=ImageTokenRule("patch", multiplier=1.72), reasoning=True),
    _m("gpt-4-turbo", 128_000, 4_096, "cl100k_base", (10.0, None, 30.0), image=_TILE_4O),
    _m("gpt-4", 8_192, 8_192, "cl100k_base", (30.0, None, 60.0)),
    _m("gpt-3.5-turbo", 16_385, 4_096, "cl100k_base", (0.50, None, 1.50)),
]}


def answer_reserve(info: ModelInfo, max_tokens: int | None = None) -> int:
    """Tokens of the window kept for the answer: ``max_tokens`` when set, else
    ``DEFAULT_ANSWER_RESERVE`` capped by the model's output limit and by ``ANSWER_SHARE`` of its window,
    so a small window (``context_window=4096``) still leaves room for the question."""
    if max_tokens is not None:
        return max_tokens
    return min(DEFAULT_ANSWER_RESERVE, info.max_output, int(info.context_window * ANSWER_SHARE))


def format_cost(usd: float | None) -> str:
    """USD as every view shows it: two significant digits below a cent ($0.0012), else cents
    ($1.23); "$0" for nothing and "unknown" when the price is unknown."""
    if usd is None:
        return "unknown"
    if usd <= 0:
        return "$0"
    digits = max(2, 1 - math.floor(math.log10(usd)))
    return f"${usd:,.{digits}f}"


def model_info(name: str, *, context_window: int | None = None) -> ModelInfo:
    """The table entry for ``name`` (exact, else longest family prefix), else the documented default.

    ``context_window`` overrides the window, for local models or deployments with another size.
    """
    info = MODELS.get(name)
    if info is None:
        family = max((key for key in MODELS if name.startswith(key + "-")), key=len, default=None)
        info = replace(MODELS[family], name=name) if family else ModelInfo(
            name, DEFAULT_CONTEXT_WINDOW, DEFAULT_MAX_OUTPUT, "o200k_base", known=False)
    if context_window is not None:
        info = replace(info, context_window=context_window)
    return info
