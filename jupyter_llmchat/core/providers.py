"""Providers: where a prefixed model name goes, with which key, and what its server says.

``"anthropic:claude-sonnet-4-5"``, ``"groq:llama-3.1-8b-instant"``, ``"ollama:llama3.2"``: the
prefix names a provider of the table (``models.PROVIDER_RECORDS``, from data/models.json), which
knows its base URL, the environment variable of its key and its models. The base URL can be
overridden by the provider's variable (``OLLAMA_HOST``, ``LLMCHAT_VLLM_BASE_URL``, ...; the table's
``base_url_env``) or by ``base_url=`` beside a prefixed model. A plain name keeps its meaning: the
Chatbot's own client (OPENAI_API_KEY / OPENAI_BASE_URL, or what was given).

Local servers (Ollama, LM Studio, llama.cpp, vLLM) are asked about the model once per client
(``client.discovery``): their window replaces the default when the user set none, their chat
template and tokenizer count prompts as the server will, and their word on images decides
whether an image may be sent (a local model nobody vouches for gets none: ``vision=True`` says so).
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from . import errors
from .client import ChatClient, chat_client, discovery
from .models import PROVIDER_RECORDS, ModelInfo, format_cost, model_info, split_model
from .templates import template_from_source

if TYPE_CHECKING:
    from .client import AnyClient

NO_KEY = "not-needed"  # what a local server without a key is sent (it ignores it)


@dataclass(frozen=True)
class Provider:
    """One row of the provider table."""

    name: str
    label: str
    default_url: str | None
    url_env: str
    key_env: tuple[str, ...]
    local: str | None  # the kind of local server, None for a hosted API
    source: str

    @property
    def azure(self) -> bool:
        return self.name == "azure"

    @property
    def needs_key(self) -> bool:
        return self.local is None

    def base_url(self) -> tuple[str | None, str]:
        """Where requests go now, and where that comes from (its variable, or the default)."""
        raw = os.environ.get(self.url_env, "").strip()
        if not raw:
            return self.default_url, "default"
        if self.name == "ollama":
            return ollama_url(raw), f"env {self.url_env}"
        return raw.rstrip("/"), f"env {self.url_env}"

    def key(self) -> tuple[str | None, str | None]:
        """The API key from the environment, and the variable it came from."""
        for env in self.key_env:
            value = os.environ.get(env)
            if value:
                return value, env
        return None, None


def provider(name: str) -> Provider:
    """The provider called ``name`` (or an alias: "google" is "gemini")."""
    provider_name, _ = split_model(f"{name}:model")
    if provider_name is None:
        raise errors.ConfigurationError(f"unknown provider {name!r}; providers: {', '.join(PROVIDER_RECORDS)}")
    record = PROVIDER_RECORDS[provider_name]
    return Provider(provider_name, record["label"], record.get("base_url"), record["base_url_env"],
                    tuple(record.get("key_env", ())), record.get("local"), record["source"])


def providers() -> list[Provider]:
    """Every provider of the table, in its order."""
    return [provider(name) for name in PROVIDER_RECORDS]


def ollama_url(host: str) -> str:
    """Ollama's OpenAI-compatible base URL from OLLAMA_HOST as Ollama reads it: "host", "host:port",
    "http(s)://host[:port]"; the port defaults to 11434 (80/443 with a scheme)."""
    scheme, sep, rest = host.strip().partition("://")
    if not sep:
        scheme, rest, port = "http", host.strip(), "11434"
    else:
        port = "443" if scheme == "https" else "80"
    hostport = rest.split("/", 1)[0]
    if hostport.startswith("["):  # [::1]:11434
        name, _, tail = hostport.partition("]")
        hostport, explicit = name + "]", tail.lstrip(":")
    else:
        hostport, _, explicit = hostport.partition(":")
    return f"{scheme}://{hostport or '127.0.0.1'}:{explicit or port}/v1"


# -- clients ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Built:
    provider: str
    has_key: bool
    url_source: str  # "default", "env OLLAMA_HOST", "base_url="


_BUILT: weakref.WeakKeyDictionary[ChatClient, _Built] = weakref.WeakKeyDictionary()


def home_client(model: str, client: AnyClient | None = None, **settings: Any) -> ChatClient:
    """The Chatbot's own client: for a prefixed ``model`` (and no ready client), its provider's,
    built with ``api_key`` / ``base_url`` when given, else from the provider's variables."""
    name, _ = split_model(model)
    azure_given = any(settings.get(key) for key in ("azure_endpoint", "api_version", "azure_deployment"))
    if client is not None or name is None or azure_given:
        made = chat_client(client, **settings)
        # A ready SDK client (or Azure's settings) given with a prefixed model is that provider's: it
        # is wrapped for this bot alone. A ChatClient may be shared (the magics give theirs to every
        # session): it stays the client of plain names.
        if name is not None and made is not client:
            _BUILT[made] = _Built(name, True, "client=" if client is not None else "azure_endpoint=")
        return made
    return build_client(provider(name), api_key=settings.get("api_key"), base_url=settings.get("base_url"),
                        timeout=settings.get("timeout"), max_retries=settings.get("max_retries"),
                        first_byte_timeout=settings.get("first_byte_timeout"))


def build_client(chosen: Provider, *, api_key: str | None = None, base_url: str | None = None,
                 timeout: float | None = None, max_retries: int | None = None,
                 first_byte_timeout: float | None = None) -> ChatClient:
    """A ChatClient for ``chosen``; its key from ``api_key`` or the provider's variable. A hosted
    provider without a key gets a client anyway (asking with it raises MissingAPIKeyError first)."""
    key = api_key or chosen.key()[0]
    url, url_source = (base_url, "base_url=") if base_url else chosen.base_url()
    if chosen.azure:
        client = ChatClient(api_key=key, azure_endpoint=url, timeout=timeout, max_retries=max_retries,
                            first_byte_timeout=first_byte_timeout)
    else:
        client = ChatClient(api_key=key or NO_KEY, base_url=url, timeout=timeout, max_retries=max_retries,
                            first_byte_timeout=first_byte_timeout)
    _BUILT[client] = _Built(chosen.name, bool(key), url_source)
    return client


def provider_of(client: ChatClient) -> str | None:
    """The provider ``client`` was built for here (None: a plain endpoint's client)."""
    built = _BUILT.get(client)
    return built.provider if built else None


# -- routes ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Route:
    """Where one question goes: the client, the model name sent, and what is known of the model."""

    name: str  # as the user wrote it ("groq:llama-3.1-8b-instant")
    provider: Provider | None
    model: str  # as sent ("llama-3.1-8b-instant")
    client: ChatClient
    info: ModelInfo


class Routes:
    """The provider clients one Chatbot made (one per provider, address and key), and its routes."""

    def __init__(self) -> None:
        self._clients: dict[tuple[str, str | None, str | None], ChatClient] = {}
        self._lock = threading.Lock()

    def route(self, name: str, home: ChatClient, *, context_window: int | None = None,
              vision: bool | None = None, discover: bool = True) -> Route:
        """The route of model ``name``. With ``discover``, a local server is asked about the model
        (once per client); without, only what it said before counts. Raises a one-line
        MissingAPIKeyError before anything is sent when a hosted provider has no key."""
        provider_name, model = split_model(name)
        chosen = provider(provider_name) if provider_name else None
        client = home if chosen is None else self.client_for(chosen, home)
        info = model_info(name, context_window=context_window)
        if chosen is not None and chosen.local:
            facts = (discovery.discover(client, chosen.local, model) if discover
                     else discovery.cached(client, chosen.local, model))
            info = with_server_facts(info, facts, context_window=context_window)
        return Route(name, chosen, model, client, with_vision(info, vision))

    def info(self, name: str, home: ChatClient, *, context_window: int | None = None,
             vision: bool | None = None) -> ModelInfo:
        """What is known of model ``name`` now: the table, and what its local server said before.
        Asks no one, makes no client and raises nothing (a missing key is raised when asking)."""
        provider_name, model = split_model(name)
        info = model_info(name, context_window=context_window)
        chosen = provider(provider_name) if provider_name else None
        if chosen is not None and chosen.local:
            client = self._existing(chosen, home)
            facts = discovery.cached(client, chosen.local, model) if client is not None else None
            info = with_server_facts(info, facts, context_window=context_window)
        return with_vision(info, vision)

    def _existing(self, chosen: Provider, home: ChatClient) -> ChatClient | None:
        """The client ``client_for`` would give now, if it exists already."""
        built = _BUILT.get(home)
        if built is not None and built.provider == chosen.name and (built.has_key or not chosen.needs_key):
            return home
        with self._lock:
            return self._clients.get((chosen.name, chosen.base_url()[0], chosen.key()[0]))

    def client_for(self, chosen: Provider, home: ChatClient) -> ChatClient:
        """``home`` if it was built for ``chosen`` (with a key when one is needed), else this
        Chatbot's client for ``chosen``, made on first use with home's timeouts and retries."""
        existing = self._existing(chosen, home)
        if existing is not None:
            return existing
        key, _ = chosen.key()
        url, _ = chosen.base_url()
        if chosen.needs_key and not key:
            raise errors.MissingAPIKeyError(
                f"no API key for {chosen.label}: set {' or '.join(chosen.key_env)} (or pass api_key= to a "
                f"Chatbot whose model starts with {chosen.name}:)")
        if url is None:
            raise errors.ConfigurationError(f"no endpoint for {chosen.label}: set {chosen.url_env}")
        ident = (chosen.name, url, key)
        with self._lock:
            client = self._clients.get(ident)
            if client is None:
                client = self._clients[ident] = build_client(  # its URL from its variable or the default
                    chosen, api_key=key, timeout=home.timeout, max_retries=home.max_retries,
                    first_byte_timeout=home.first_byte_timeout)
            return client


def with_server_facts(info: ModelInfo, facts: discovery.ServerFacts | None, *,
                      context_window: int | None = None) -> ModelInfo:
    """``info`` with what a local server said: its window (unless the user set one), its chat
    template and tokenizer, its word on images."""
    if facts is None:
        return info
    changes: dict[str, Any] = {}
    user_window = context_window is not None or info.window_source == "add_model"
    if not user_window:
        if facts.window:
            changes.update(context_window=facts.window, window_source=facts.window_source)
        else:
            changes["window_source"] = f"default {info.context_window:,} ({facts.window_source})"
    template = template_from_source(facts.template)  # else the guess from the name stays
    if template is not None and info.window_source != "add_model":
        changes.update(template=template.name, encoding=template.encoding, text_margin=template.text_margin)
    if facts.count_text is not None:
        changes.update(count_text=facts.count_text, counted_by=facts.counted_by, text_margin=0.0)
    if info.vision_source != "add_model" or info.vision is None:
        if facts.vision is not None:
            changes.update(vision=facts.vision, vision_source=facts.vision_source)
        else:
            changes.update(vision=False, vision_source=facts.vision_source)
    return replace(info, **changes)


def with_vision(info: ModelInfo, vision: bool | None) -> ModelInfo:
    """``info`` with the user's word on images (``Chatbot(vision=True)``), which beats every other."""
    if vision is None:
        return info
    return replace(info, vision=vision, vision_source=f"vision={vision}")


# -- what is there ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelRow:
    """One line of ``%chat models``: a name to use with -m, and what is known of it."""

    name: str
    provider: str
    window: int | None
    vision: bool | None
    price: str  # "$2.50 / $10.00" per 1M tokens in / out, or "" when unknown


def available_models(home: ChatClient, *, quiet_defaults: bool = False) -> tuple[list[ModelRow], list[str]]:
    """Models of every configured provider: hosted ones with a key set (their table's models),
    local servers that answer (what they serve). Also the notes on providers that did not answer;
    with ``quiet_defaults``, none for a local server nobody pointed us at (no address variable set)
    that did not answer at its default address: it is simply not running, which is no news.
    OpenAI's and Azure's are left to the endpoint's own list (openai: goes where a plain name goes,
    and an Azure deployment's name is the user's)."""
    from .models import _TABLES  # the data file's tables, by provider

    rows: list[ModelRow] = []
    notes: list[str] = []
    routes = Routes()
    for each in providers():
        if each.local is None:
            if not each.key()[0] or each.name in ("openai", "azure"):
                continue
            for name, entry in _TABLES.get(each.name, {}).items():
                if entry.max_output > 0:  # a chat model, not an embedding model
                    rows.append(_row(f"{each.name}:{name}", each.label))
            continue
        try:
            served = discovery.served_models(routes.client_for(each, home), each.local)
        except errors.ChatError as error:
            if not (quiet_defaults and each.base_url()[1] == "default"):
                notes.append(str(error))
            continue
        for model in served:
            rows.append(ModelRow(f"{each.name}:{model.name}", each.label, model.window, model.vision, ""))
    return rows, notes


def endpoint_rows(names: list[str]) -> list[ModelRow]:
    """Rows for the models the configured endpoint lists (plain names), with what the table knows."""
    rows = []
    for name in names:
        info = model_info(name)
        rows.append(_row(name, "endpoint") if info.known else ModelRow(name, "endpoint", None, None, ""))
    return rows


def provider_model_names(home: ChatClient) -> tuple[list[str], list[str]]:
    """Names of every configured provider's models, as -m takes them (the panel's model menu), and
    the notes on providers that did not answer (a local server not running at its default address
    is no news there): ``available_models``, names only."""
    rows, notes = available_models(home, quiet_defaults=True)
    return [row.name for row in rows], notes


def _row(name: str, label: str) -> ModelRow:
    info = model_info(name)
    price = (f"{format_cost(info.input_price)} / {format_cost(info.output_price)}"
             if info.input_price is not None and info.output_price is not None else "")
    return ModelRow(name, label, info.context_window, info.vision, price)


def describe(name: str, home: ChatClient, routes: Routes, *, context_window: int | None = None,
             vision: bool | None = None) -> Iterator[tuple[str, str, str, str]]:
    """``%chat config`` rows for model ``name`` (a local server is asked, once per client):
    (setting, value, source, environment variable)."""
    try:
        route: Route | None = routes.route(name, home, context_window=context_window, vision=vision)
    except errors.ChatError:  # no key for its provider: what is known, and the missing key's row
        route = None
    info = route.info if route is not None else routes.info(name, home, context_window=context_window,
                                                            vision=vision)
    provider_name, _ = split_model(name)
    chosen = provider(provider_name) if provider_name else None
    if chosen is not None:
        yield ("provider", chosen.label, f"model prefix {chosen.name}:", "")
        if route is not None:
            built = _BUILT.get(route.client)
            yield ("provider endpoint", route.client.base_url, built.url_source if built else "client=",
                   chosen.url_env)
        key, env = chosen.key()
        shown = "set (hidden)" if key else ("not needed" if not chosen.needs_key else "not set")
        yield ("provider key", shown, f"env {env}" if env else "", " or ".join(chosen.key_env))
    yield ("context window", f"{info.context_window:,}", info.window_source, "LLMCHAT_CONTEXT_WINDOW")
    yield ("vision", {True: "yes", False: "no", None: "not known"}[info.vision], info.vision_source, "")
    yield ("token counts", *_counting(info), "")


def _counting(info: ModelInfo) -> tuple[str, str]:
    """How prompts to ``info``'s model are counted, and whether the counts are exact."""
    margin = f" + {info.text_margin:.0%} margin" if info.text_margin else ""
    text = info.counted_by or f"{info.encoding}{margin}"
    if info.template:
        return f"{info.template} chat template, text by {text}", (
            "estimate" if margin or not info.counted_by else "the server's tokenizer")
    return text, "estimate" if margin or not info.known else "exact"
