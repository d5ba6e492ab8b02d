"""Asking a local server what it knows about a model: its window, chat template, vision, tokenizer.

Each server says it its own way: Ollama in ``/api/show`` (the model's parameters, template,
capabilities, trained context length) and ``/api/ps`` (the window a loaded model runs with),
llama.cpp in ``/props`` (``n_ctx`` per slot, ``chat_template``, ``modalities``) and ``/tokenize``,
vLLM in ``/v1/models`` (``max_model_len``) and ``/tokenize``, LM Studio in ``/api/v0/models/{id}``
(``loaded_context_length``, ``max_context_length``, ``type`` "vlm"). ``discover`` asks once per
client and model (the answer is cached on the client); a server that does not answer is said so in
``ServerFacts.window_source`` and nothing else changes. The requests go through the client's SDK
(its key, its connection pool), without retries and with a short timeout.
"""

from __future__ import annotations

import functools
import os
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from .. import errors

if TYPE_CHECKING:
    from .chat import ChatClient

PROBE_TIMEOUT = 5.0  # seconds per request to a local server
TOKENIZE_CACHE = 4096  # texts whose server count is remembered per model
# The window a model gets when the server loads it without being told (Ollama's num_ctx default,
# LM Studio's default context length); OLLAMA_CONTEXT_LENGTH changes Ollama's.
LOAD_DEFAULT_WINDOW = 4096
LABELS = {"ollama": "Ollama", "llamacpp": "llama.cpp", "vllm": "vLLM", "lmstudio": "LM Studio"}


@dataclass(frozen=True)
class ServerFacts:
    """What a local server said about one model; None where it said nothing."""

    server: str  # "ollama", "llamacpp", "vllm" or "lmstudio"
    root: str  # the server's address, as it may be shown
    answered: bool
    window: int | None = None
    window_source: str = ""  # where the window comes from, or why there is none
    vision: bool | None = None
    vision_source: str = ""
    template: str | None = None  # the chat template's source text
    count_text: Callable[[str], int] | None = None  # the server's own token count of a text
    counted_by: str | None = None


@dataclass(frozen=True)
class ServedModel:
    """One model a local server lists."""

    name: str
    window: int | None = None
    vision: bool | None = None


class _Unanswered(Exception):
    """A probe got no usable answer; ``str()`` says why, in a few words."""


_CACHE: weakref.WeakKeyDictionary[ChatClient, dict[tuple[str, str], ServerFacts]] = weakref.WeakKeyDictionary()
_CACHE_LOCK = threading.Lock()


def cached(client: ChatClient, server: str, model: str) -> ServerFacts | None:
    """What ``discover`` found before for this client and model, without asking again."""
    with _CACHE_LOCK:
        return _CACHE.get(client, {}).get((server, model))


def discover(client: ChatClient, server: str, model: str, *, refresh: bool = False) -> ServerFacts:
    """Ask the server behind ``client`` about ``model`` (once per client and model, unless ``refresh``)."""
    if not refresh:
        found = cached(client, server, model)
        if found is not None:
            return found
    facts = _PROBES[server](_Probe(client), model)
    with _CACHE_LOCK:
        _CACHE.setdefault(client, {})[(server, model)] = facts
    return facts


def served_models(client: ChatClient, server: str) -> list[ServedModel]:
    """The models a local server has; raises a one-line EndpointConnectionError if it does not answer."""
    probe = _Probe(client)
    try:
        if server == "ollama":
            tags = probe.get("/api/tags")
            return sorted((ServedModel(str(m.get("name") or m.get("model"))) for m in _items(tags, "models")),
                          key=lambda m: m.name)
        if server == "lmstudio":
            listing = probe.get("/api/v0/models")
            return sorted((ServedModel(str(m.get("id")), _int(m.get("loaded_context_length")) or
                                       _int(m.get("max_context_length")), m.get("type") == "vlm")
                           for m in _items(listing, "data") if m.get("type") != "embeddings"), key=lambda m: m.name)
        listing = probe.get("/v1/models")
        return sorted((ServedModel(str(m.get("id")), _int(m.get("max_model_len")))
                       for m in _items(listing, "data")), key=lambda m: m.name)
    except _Unanswered as why:
        raise errors.EndpointConnectionError(f"{LABELS[server]} at {probe.shown_root} did not answer ({why})") \
            from None


# -- the probes ------------------------------------------------------------------------------------
class _Probe:
    """GET/POST JSON at the server's root (its base URL without /v1), through the client's SDK."""

    def __init__(self, client: ChatClient) -> None:
        self.client = client
        base = client.base_url.rstrip("/")
        self.shown_root = base[: -len("/v1")] if base.endswith("/v1") else base
        self._root: str | None = None

    @property
    def root(self) -> str:
        if self._root is None:
            base = str(self.client.sdk.base_url).rstrip("/")
            self._root = base[: -len("/v1")] if base.endswith("/v1") else base
        return self._root

    def get(self, path: str) -> Any:
        return self._call("get", path, None)

    def post(self, path: str, body: dict[str, Any]) -> Any:
        return self._call("post", path, body)

    def _call(self, method: str, path: str, body: dict[str, Any] | None) -> Any:
        import openai

        try:
            sdk = self.client.sdk.with_options(max_retries=0, timeout=PROBE_TIMEOUT)
            if method == "get":
                answer = sdk.get(self.root + path, cast_to=object)
            else:
                answer = sdk.post(self.root + path, body=body, cast_to=object)
        except openai.APIStatusError as error:
            raise _Unanswered(f"{path} answered {error.status_code}") from None
        except openai.APITimeoutError:
            raise _Unanswered(f"{path} timed out after {PROBE_TIMEOUT:g} s") from None
        except openai.APIConnectionError as error:
            cause = error.__cause__ or error
            raise _Unanswered(errors.one_line(self.client.scrub(str(cause) or type(cause).__name__), 80)) \
                from None
        except errors.ChatError as error:  # no key and no base URL: nothing to ask
            raise _Unanswered(str(error)) from None
        if not isinstance(answer, (dict, list)):
            raise _Unanswered(f"{path} did not answer with JSON")
        return answer

    def unanswered(self, server: str, why: object) -> ServerFacts:
        said = f"{LABELS[server]} at {self.shown_root} did not answer ({why})"
        return ServerFacts(server, self.shown_root, False, window_source=said,
                           vision_source=f"the server does not say it takes images ({said})")

    def tokenizer(self, path: str, body: Callable[[str], dict[str, Any]],
                  count: Callable[[Any], int]) -> Callable[[str], int] | None:
        """The server's own count of a text, if it answers a first try; cached per text, and given
        up (the caller counts instead) once the server stops answering."""
        broken = threading.Event()

        @functools.lru_cache(maxsize=TOKENIZE_CACHE)
        def count_text(text: str) -> int:
            if broken.is_set():
                raise _Unanswered("the server stopped answering")
            try:
                return count(self.post(path, body(text)))
            except (_Unanswered, TypeError, ValueError, KeyError):
                broken.set()
                raise

        try:
            count_text("Hello, world")
        except Exception:
            return None
        return count_text


def _ollama(probe: _Probe, model: str) -> ServerFacts:
    try:
        show = probe.post("/api/show", {"model": model, "name": model})
    except _Unanswered as why:
        return probe.unanswered("ollama", why)
    parameters = show.get("parameters") if isinstance(show, dict) else None
    num_ctx = _parameter(parameters, "num_ctx")
    info = show.get("model_info") if isinstance(show, dict) else None
    trained = next((_int(value) for key, value in (info or {}).items() if str(key).endswith(".context_length")),
                   None)
    window, source = _ollama_loaded(probe, model)
    if window is None and num_ctx:
        window, source = num_ctx, f"Ollama /api/show num_ctx at {probe.shown_root}"
    elif window is None:
        default = _int(os.environ.get("OLLAMA_CONTEXT_LENGTH")) or LOAD_DEFAULT_WINDOW
        window = min(default, trained) if trained else default
        trained_note = f", trained for {trained:,}" if trained else ""
        source = (f"Ollama loads it with num_ctx {window:,} (not loaded now; no num_ctx in /api/show"
                  f"{trained_note}) at {probe.shown_root}")
    capabilities = show.get("capabilities") if isinstance(show, dict) else None
    projector = show.get("projector_info") if isinstance(show, dict) else None
    if isinstance(capabilities, list):
        vision: bool | None = "vision" in capabilities
        vision_source = "Ollama /api/show capabilities"
    elif projector:
        vision, vision_source = True, "Ollama /api/show projector_info"
    else:
        vision, vision_source = None, "the server does not say it takes images (this Ollama reports no capabilities)"
    template = show.get("template") if isinstance(show, dict) else None
    return ServerFacts("ollama", probe.shown_root, True, window, source, vision, vision_source,
                       template if isinstance(template, str) else None)


def _ollama_loaded(probe: _Probe, model: str) -> tuple[int | None, str]:
    """The window Ollama runs ``model`` with, if it is loaded now (/api/ps)."""
    try:
        running = probe.get("/api/ps")
    except _Unanswered:
        return None, ""
    names = {model, model + ":latest"} if ":" not in model else {model}
    for entry in _items(running, "models"):
        if entry.get("name") in names or entry.get("model") in names:
            window = _int(entry.get("context_length"))
            if window:
                return window, f"Ollama /api/ps context_length (loaded now) at {probe.shown_root}"
    return None, ""


def _llamacpp(probe: _Probe, model: str) -> ServerFacts:
    try:
        props = probe.get("/props")
    except _Unanswered as why:
        return probe.unanswered("llamacpp", why)
    settings = props.get("default_generation_settings") if isinstance(props, dict) else None
    window = _int((settings or {}).get("n_ctx")) or _int(props.get("n_ctx") if isinstance(props, dict) else None)
    source = f"llama.cpp /props n_ctx at {probe.shown_root}" if window else "llama.cpp /props has no n_ctx"
    modalities = props.get("modalities") if isinstance(props, dict) else None
    if isinstance(modalities, dict) and isinstance(modalities.get("vision"), bool):
        vision: bool | None = modalities["vision"]
        vision_source = "llama.cpp /props modalities"
    else:
        vision, vision_source = None, "the server does not say it takes images (llama.cpp /props has no modalities)"
    template = props.get("chat_template") if isinstance(props, dict) else None
    count = probe.tokenizer("/tokenize", lambda text: {"content": text, "add_special": False},
                            lambda answer: len(answer["tokens"]))
    return ServerFacts("llamacpp", probe.shown_root, True, window, source, vision, vision_source,
                       template if isinstance(template, str) else None, count,
                       "llama.cpp /tokenize" if count else None)


def _vllm(probe: _Probe, model: str) -> ServerFacts:
    try:
        listing = probe.get("/v1/models")
    except _Unanswered as why:
        return probe.unanswered("vllm", why)
    served = {str(entry.get("id")): entry for entry in _items(listing, "data")}
    entry = served.get(model)
    window = _int(entry.get("max_model_len")) if entry else None
    if window:
        source = f"vLLM /v1/models max_model_len at {probe.shown_root}"
    elif entry is None:
        serving = ", ".join(sorted(served)) or "none"
        source = f"vLLM at {probe.shown_root} serves no model {model!r} (it serves {serving})"
    else:
        source = "vLLM /v1/models has no max_model_len"
    count = probe.tokenizer("/tokenize", lambda text: {"model": model, "prompt": text, "add_special_tokens": False},
                            lambda answer: int(answer["count"]))
    return ServerFacts("vllm", probe.shown_root, True, window, source, None,
                       "the server does not say it takes images (vLLM does not report it)", None, count,
                       "vLLM /tokenize" if count else None)


def _lmstudio(probe: _Probe, model: str) -> ServerFacts:
    try:
        card = probe.get("/api/v0/models/" + quote(model, safe=""))
    except _Unanswered as why:
        return probe.unanswered("lmstudio", why)
    loaded = _int(card.get("loaded_context_length")) if isinstance(card, dict) else None
    trained = _int(card.get("max_context_length")) if isinstance(card, dict) else None
    window: int | None = loaded
    if loaded:
        source = f"LM Studio /api/v0/models loaded_context_length at {probe.shown_root}"
    else:
        window = min(LOAD_DEFAULT_WINDOW, trained) if trained else None
        trained_note = f", trained for {trained:,}" if trained else ""
        source = (f"LM Studio loads it with {window:,} tokens unless set (not loaded now{trained_note}) at "
                  f"{probe.shown_root}") if window else "LM Studio /api/v0/models has no context length"
    kind = card.get("type") if isinstance(card, dict) else None
    if kind in ("vlm", "llm"):
        vision: bool | None = kind == "vlm"
        vision_source = f"LM Studio /api/v0/models type {kind!r}"
    else:
        vision, vision_source = None, "the server does not say it takes images (LM Studio gives no model type)"
    return ServerFacts("lmstudio", probe.shown_root, True, window, source, vision, vision_source)


_PROBES: dict[str, Callable[[_Probe, str], ServerFacts]] = {
    "ollama": _ollama, "llamacpp": _llamacpp, "vllm": _vllm, "lmstudio": _lmstudio}


def _items(answer: Any, key: str) -> list[dict[str, Any]]:
    values = answer.get(key) if isinstance(answer, dict) else None
    return [value for value in values if isinstance(value, dict)] if isinstance(values, list) else []


def _int(value: Any) -> int | None:
    """A positive whole number from a JSON value or text, else None."""
    if isinstance(value, bool):
        return None
    number = int(value.strip()) if isinstance(value, str) and value.strip().isdigit() else value
    return number if isinstance(number, int) and number > 0 else None


def _parameter(parameters: Any, name: str) -> int | None:
    """A number from Ollama's parameters text ("num_ctx 8192\\nstop ...")."""
    if not isinstance(parameters, str):
        return None
    for line in parameters.splitlines():
        key, _, value = line.strip().partition(" ")
        if key == name:
            return _int(value.strip())
    return None
