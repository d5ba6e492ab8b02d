"""The model table: context windows, output limits, encodings, vision, image-token rules and prices.

The figures live in one data file, ``data/models.json``, per provider, with the pages they come
from and the date they were read (``TABLE_UPDATED``); edit it to update them. Prices are USD per
million tokens, standard tier. Dated snapshots ("gpt-4o-2024-08-06", "claude-sonnet-4-5-20250929")
resolve to their family by longest prefix.

A name may carry a provider prefix (``"anthropic:claude-sonnet-4-5"``, ``"ollama:llama3.2"``;
``split_model``); a plain name keeps its old meaning (the configured endpoint) and is looked up in
OpenAI's table first, then in the other providers' (a LiteLLM proxy serving "claude-sonnet-4-5"
still gets Claude's window and prices). Models in no table get ``DEFAULT_CONTEXT_WINDOW``; local
servers say their real window (see ``providers``), and ``context_window=`` sets it by hand.
``add_model`` adds or corrects an entry for this process (``%config ChatMagics.models`` too).
"""

from __future__ import annotations

import json
import math
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from importlib import resources
from typing import Any

from .errors import ConfigurationError
from .templates import UNKNOWN, template_from_name, template_named

DEFAULT_CONTEXT_WINDOW = 8192
DEFAULT_MAX_OUTPUT = 4096
DEFAULT_ANSWER_RESERVE = 4096  # tokens kept free for the answer when max_tokens is not set...
ANSWER_SHARE = 0.5  # ...but never more than this share of the window (a 4,096 window keeps 2,048)
BATCH_PRICE_SHARE = 0.5  # the Batch API (OpenAI, Azure batch deployments) bills half the standard prices
ENCODINGS = ("o200k_base", "cl100k_base")


@dataclass(frozen=True)
class ImageTokenRule:
    """How a model family charges for an image.

    ``tile`` (OpenAI): base + per_tile * number of 512-px tiles after scaling (detail=low: base only).
    ``patch`` (OpenAI): 32-px patches (capped at 1536) times ``multiplier``.
    ``area`` (Anthropic): width * height / ``pixels_per_token`` after fitting the long side in
    ``side`` pixels and the area in ``max_tokens`` tokens.
    """

    kind: str  # "tile", "patch" or "area"
    base: int = 0
    per_tile: int = 0
    multiplier: float = 1.0
    side: int = 0
    pixels_per_token: int = 0
    max_tokens: int = 0


@dataclass(frozen=True)
class LongContextPrice:
    """Prices of a prompt longer than ``above`` tokens (Gemini 2.5 Pro, Claude's 1M window)."""

    above: int
    input_price: float
    cached_input_price: float | None
    output_price: float


@dataclass(frozen=True)
class ModelInfo:
    name: str
    context_window: int
    max_output: int
    encoding: str  # tiktoken encoding name
    input_price: float | None = None  # USD per 1M prompt tokens
    cached_input_price: float | None = None  # USD per 1M cached prompt tokens (None: priced as input)
    output_price: float | None = None  # USD per 1M completion tokens
    vision: bool | None = False  # None: not known (a model outside the table)
    image_tokens: ImageTokenRule | None = None
    reasoning: bool = False  # o-series / gpt-5: take max_completion_tokens, not max_tokens
    known: bool = True  # False for models outside the table (counts are estimates)
    provider: str | None = None  # the prefix's provider; None: a plain name, the configured endpoint
    local: str | None = None  # the kind of local server: "ollama", "lmstudio", "llamacpp", "vllm"
    template: str | None = None  # chat template counted (templates.TEMPLATES); None: OpenAI's rules
    text_margin: float = 0.0  # share added to text counts made with an encoding not the model's own
    long_context: LongContextPrice | None = None
    window_source: str = "model table"  # where context_window comes from, for %chat config
    vision_source: str = "model table"
    # The server's own tokenizer (llama.cpp's or vLLM's /tokenize), when it counts for us.
    count_text: Callable[[str], int] | None = field(default=None, compare=False, repr=False)
    counted_by: str | None = None  # what count_text is, e.g. "llama.cpp /tokenize"

    batch_share: float = BATCH_PRICE_SHARE  # the Batch API's prices, as a share of these

    def cost(self, prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0, *,
             batch: bool = False) -> float | None:
        """USD for one request, cached prompt tokens priced as the provider prices them; ``batch``:
        sent through the Batch API, at its price."""
        inp, cached, outp = self.input_price, self.cached_input_price, self.output_price
        long = self.long_context
        if long is not None and prompt_tokens > long.above:
            inp, cached, outp = long.input_price, long.cached_input_price, long.output_price
        if inp is None or outp is None:
            return None
        cached_price = cached if cached is not None else inp
        uncached = max(prompt_tokens - cached_tokens, 0)
        usd = (uncached * inp + cached_tokens * cached_price + completion_tokens * outp) / 1_000_000
        return usd * self.batch_share if batch else usd


# -- the data file --------------------------------------------------------------------------------
def _load_table() -> dict[str, Any]:
    with resources.files(__package__).joinpath("data/models.json").open(encoding="utf-8") as file:
        table: dict[str, Any] = json.load(file)
    return table


_TABLE = _load_table()
TABLE_UPDATED: str = _TABLE["updated"]
IMAGE_RULES: dict[str, ImageTokenRule] = {name: ImageTokenRule(**rule) for name, rule in _TABLE["image_rules"].items()}
# Vision models outside the table (local servers, Gemini) are counted with gpt-4o's rule.
DEFAULT_IMAGE_RULE = IMAGE_RULES["tile-4o"]
# Provider name -> its record (label, base_url, base_url_env, key_env, local, source, ...), no models.
PROVIDER_RECORDS: dict[str, dict[str, Any]] = {
    name: {key: value for key, value in record.items() if key != "models"}
    for name, record in _TABLE["providers"].items()}
ALIASES: dict[str, str] = {alias: name for name, record in PROVIDER_RECORDS.items()
                           for alias in record.get("aliases", ())}
# "mistral:7b" and "mistral:latest" are Ollama tags of a model named mistral (a plain name), not
# Mistral's API: its model names never look like a tag.
_TAG = re.compile(r"latest|v?\d[\w.\-]*|(instruct|text|chat)([\w.\-]*)", re.IGNORECASE)


def _entry(provider: str, name: str, raw: Mapping[str, Any]) -> ModelInfo:
    counting = PROVIDER_RECORDS[provider].get("counting", {})
    inp, cached, outp = raw.get("price") or (None, None, None)
    image = IMAGE_RULES[raw["image"]] if raw.get("image") else None
    long = raw.get("long")
    return ModelInfo(
        name, raw["window"], raw["output"], raw.get("encoding", counting.get("encoding", "o200k_base")),
        inp, cached, outp, vision=bool(raw.get("vision")) or image is not None, image_tokens=image,
        reasoning=bool(raw.get("reasoning")), text_margin=counting.get("margin", 0.0),
        long_context=LongContextPrice(long["above"], *long["price"]) if long else None,
        window_source=f"model table ({PROVIDER_RECORDS[provider]['label']}, {TABLE_UPDATED})")


# provider -> model name -> entry, as the data file has them
_TABLES: dict[str, dict[str, ModelInfo]] = {
    provider: {name: _entry(provider, name, raw) for name, raw in record.get("models", {}).items()}
    for provider, record in _TABLE["providers"].items()}
MODELS: dict[str, ModelInfo] = _TABLES["openai"]  # OpenAI's models, by name
_USER: dict[str, ModelInfo] = {}  # added by add_model: "provider:name" or a plain name -> entry
_USER_LOCK = threading.Lock()


def split_model(name: str) -> tuple[str | None, str]:
    """(provider, model name sent) for ``name``: ``"groq:llama-3.1-8b-instant"`` -> ("groq", ...),
    ``"google:gemini-2.5-pro"`` -> ("gemini", ...); a plain name (or an Ollama tag such as
    ``"mistral:7b"``) -> (None, name)."""
    prefix, sep, rest = name.partition(":")
    key = prefix.strip().lower()
    provider = ALIASES.get(key, key)
    if not sep or not rest or provider not in PROVIDER_RECORDS or _TAG.fullmatch(rest):
        return None, name
    return provider, rest


def _key(provider: str | None, model: str) -> str:
    return f"{provider}:{model}" if provider else model


def _in_table(table: Mapping[str, ModelInfo], model: str) -> ModelInfo | None:
    """The entry for ``model`` (exact, else its longest family prefix: a dated snapshot)."""
    info = table.get(model)
    if info is None:
        family = max((key for key in table if model.startswith(key + "-")), key=len, default=None)
        info = table[family] if family else None
    return info


def _tables_for(provider: str | None, model: str) -> list[tuple[Mapping[str, ModelInfo], str]]:
    """The tables (with the name to look up in each) where ``provider``'s ``model`` may be."""
    if provider is None:
        return [(table, model) for table in _TABLES.values()]  # OpenAI's first: the data file's order
    record = PROVIDER_RECORDS[provider]
    if "models_from" in record:
        return [(_TABLES[record["models_from"]], model)]
    found: list[tuple[Mapping[str, ModelInfo], str]] = [(_TABLES[provider], model)]
    vendor, slash, rest = model.partition("/")
    if slash and vendor in record.get("vendors", {}):  # OpenRouter: "anthropic/claude-sonnet-4.5"
        table = _TABLES[record["vendors"][vendor]]
        found += [(table, rest), (table, rest.replace(".", "-"))]
    return found


def _find(provider: str | None, model: str) -> ModelInfo | None:
    user = _USER.get(_key(provider, model))
    if user is not None:
        return user
    for table, name in _tables_for(provider, model):
        info = _in_table(table, name)
        if info is not None:
            return info
    return None


def _unknown(provider: str | None, model: str) -> ModelInfo:
    """What a model in no table gets: the default window; a local model its template's counting."""
    record = PROVIDER_RECORDS.get(provider or "", {})
    local = record.get("local")
    if local:  # it runs on the user's machine: no price per token
        template = template_from_name(model) or UNKNOWN
        return ModelInfo(model, DEFAULT_CONTEXT_WINDOW, DEFAULT_MAX_OUTPUT, template.encoding, 0.0, None, 0.0,
                         vision=None,
                         known=False, local=local, template=template.name, text_margin=template.text_margin,
                         window_source="default", vision_source="not known")
    counting = record.get("counting", {})
    return ModelInfo(model, DEFAULT_CONTEXT_WINDOW, DEFAULT_MAX_OUTPUT, counting.get("encoding", "o200k_base"),
                     vision=None, known=False, text_margin=counting.get("margin", 0.0), window_source="default",
                     vision_source="not known")


def model_info(name: str, *, context_window: int | None = None) -> ModelInfo:
    """The table entry for ``name`` (its provider's, see ``split_model``), else the documented default.

    ``context_window`` overrides the window, for local models or deployments with another size.
    """
    provider, model = split_model(name)
    info = _find(provider, model) or _unknown(provider, model)
    local = PROVIDER_RECORDS.get(provider or "", {}).get("local")
    info = replace(info, name=name, provider=provider, local=local or info.local)
    if context_window is not None:
        info = replace(info, context_window=context_window, window_source="context_window=")
    return info


def add_model(name: str, *, context_window: int, max_output: int | None = None,
              input_price: float | None = None, output_price: float | None = None,
              cached_input_price: float | None = None, vision: bool | None = None, reasoning: bool = False,
              encoding: str | None = None, template: str | None = None) -> ModelInfo:
    """Add (or correct) the table entry of ``name`` for this process and return it.

    ``name`` may carry a provider prefix (``"ollama:qwen2.5-coder:7b"``); prices are USD per 1M
    tokens; ``vision`` None keeps what is known (a local server may still say); ``template`` is a
    chat template's name (templates.TEMPLATES) for local models. Bad values raise one line.
    """
    info = _new_entry(name, context_window=context_window, max_output=max_output, input_price=input_price,
                      output_price=output_price, cached_input_price=cached_input_price, vision=vision,
                      reasoning=reasoning, encoding=encoding, template=template)
    provider, model = split_model(name)
    with _USER_LOCK:
        _USER[_key(provider, model)] = info
    return model_info(name)


def add_models(entries: Mapping[str, Mapping[str, Any]]) -> list[ModelInfo]:
    """``add_model`` for each name -> settings of ``entries``, all checked before any is added."""
    check_models(entries)
    return [add_model(name, **_settings(name, settings)) for name, settings in entries.items()]


def check_models(entries: Any) -> None:
    """Raise the one-line ConfigurationError ``add_models(entries)`` would raise, adding nothing."""
    if not isinstance(entries, Mapping):
        raise ConfigurationError("models must be a dict of name -> settings, e.g. "
                                 "{'ollama:qwen2.5:7b': {'context_window': 32768}}")
    for name, settings in entries.items():
        if not isinstance(settings, Mapping):
            raise ConfigurationError(f"model {name!r}: settings must be a dict such as "
                                     "{'context_window': 32768}, got " + type(settings).__name__)
        _new_entry(name, **_settings(name, settings))


def remove_model(name: str) -> bool:
    """Forget the entry ``add_model`` made for ``name``; True if there was one."""
    provider, model = split_model(name)
    with _USER_LOCK:
        return _USER.pop(_key(provider, model), None) is not None


_ADD_MODEL_SETTINGS = ("context_window", "max_output", "input_price", "output_price", "cached_input_price",
                       "vision", "reasoning", "encoding", "template")


def _settings(name: str, settings: Mapping[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(settings) - set(_ADD_MODEL_SETTINGS))
    if unknown:
        raise ConfigurationError(f"model {name!r}: unknown setting {unknown[0]!r}; settings are "
                                 + ", ".join(_ADD_MODEL_SETTINGS))
    if "context_window" not in settings:
        raise ConfigurationError(f"model {name!r} needs a context_window, e.g. {{'context_window': 32768}}")
    return dict(settings)


def _new_entry(name: Any, *, context_window: Any, max_output: Any = None, input_price: Any = None,
               output_price: Any = None, cached_input_price: Any = None, vision: Any = None,
               reasoning: Any = False, encoding: Any = None, template: Any = None) -> ModelInfo:
    if not isinstance(name, str) or not name.strip():
        raise ConfigurationError(f"a model name must be non-empty text, got {name!r}")
    label = f"model {name!r}"
    for setting, value in (("context_window", context_window), ("max_output", max_output)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ConfigurationError(f"{label}: {setting} must be a whole number >= 1, got {value!r}")
    for setting, value in (("input_price", input_price), ("output_price", output_price),
                           ("cached_input_price", cached_input_price)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0
                                  or not math.isfinite(value)):
            raise ConfigurationError(f"{label}: {setting} must be USD per 1M tokens (a number >= 0), got {value!r}")
    for setting, value in (("vision", vision), ("reasoning", reasoning)):
        if value is not None and not isinstance(value, bool):
            raise ConfigurationError(f"{label}: {setting} must be True or False, got {value!r}")
    if encoding is not None and encoding not in ENCODINGS:
        raise ConfigurationError(f"{label}: encoding must be one of {', '.join(ENCODINGS)}, got {encoding!r}")
    try:
        chosen = template_named(template)
    except KeyError:
        chosen = None
    if template is not None and chosen is None:
        from .templates import TEMPLATES

        raise ConfigurationError(f"{label}: template must be one of {', '.join(TEMPLATES)}, got {template!r}")
    provider, model = split_model(name)
    base = _find(provider, model) or _unknown(provider, model)
    if max_output is None:
        max_output = min(base.max_output, context_window)
    if max_output > context_window:
        raise ConfigurationError(f"{label}: max_output ({max_output:,}) is larger than context_window "
                                 f"({context_window:,})")
    if vision is None:
        vision = base.vision
    changes: dict[str, Any] = {}
    if chosen is not None:
        changes = {"template": chosen.name, "text_margin": chosen.text_margin, "encoding": chosen.encoding}
    if encoding is not None:
        changes["encoding"] = encoding
    if input_price is None and output_price is None:  # prices not given: the known ones stay
        input_price, output_price = base.input_price, base.output_price
        cached_input_price = base.cached_input_price if cached_input_price is None else cached_input_price
    return replace(base, name=name, context_window=context_window, max_output=max_output,
                   input_price=input_price, output_price=output_price, cached_input_price=cached_input_price,
                   vision=vision, image_tokens=base.image_tokens if vision else None, reasoning=reasoning,
                   known=True, long_context=None, window_source="add_model",
                   vision_source="add_model" if vision is not None else base.vision_source, **changes)


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
