"""The magics' settings by name: which environment variable sets each, and which part they tune.

``ChatMagics`` (magics.py) declares one trait per setting; ``%chat config`` (commands.py) lists
them with these variables. Kept apart so both read one table without importing each other.
``HiddenKey`` / ``SecretUnicode``: the API key's trait, whose value never shows.
"""

from __future__ import annotations

from typing import Any

from traitlets import Unicode

FORMATS = ("markdown", "text", "code")
# Setting -> environment variable that sets it when neither %config nor a config file does
# (precedence, lowest first: default < environment < %config / config file < %chat model|system
# < a cell's options).
ENV_VARS = {
    "model": "LLMCHAT_MODEL", "system": "LLMCHAT_SYSTEM", "temperature": "LLMCHAT_TEMPERATURE",
    "top_p": "LLMCHAT_TOP_P", "max_tokens": "LLMCHAT_MAX_TOKENS", "seed": "LLMCHAT_SEED",
    "max_history": "LLMCHAT_MAX_HISTORY", "prompt_token_limit": "LLMCHAT_PROMPT_TOKEN_LIMIT",
    "context_window": "LLMCHAT_CONTEXT_WINDOW", "format": "LLMCHAT_FORMAT", "footer": "LLMCHAT_FOOTER",
    "timeout": "LLMCHAT_TIMEOUT", "max_retries": "LLMCHAT_MAX_RETRIES",
    "api_key": "OPENAI_API_KEY", "base_url": "OPENAI_BASE_URL",
    "azure_endpoint": "AZURE_OPENAI_ENDPOINT", "api_version": "OPENAI_API_VERSION",
    "azure_deployment": "LLMCHAT_AZURE_DEPLOYMENT",
    "store": "JUPYTER_LLMCHAT_STORE", "cache": "LLMCHAT_CACHE",
    "max_cost_per_question": "LLMCHAT_MAX_COST_PER_QUESTION",
}
REQUEST_SETTINGS = ("temperature", "top_p", "max_tokens", "seed")
CLIENT_SETTINGS = ("api_key", "base_url", "timeout", "max_retries", "azure_endpoint", "api_version",
                   "azure_deployment")
SESSION_SETTINGS = ("model", "system", *REQUEST_SETTINGS, "max_history", "prompt_token_limit", "context_window",
                    "max_cost_per_question")


class HiddenKey(str):
    """An API key. As text it is the key (what the endpoint is sent); its repr never shows it, so
    ``%config ChatMagics`` (which prints each trait's repr), ``%config ChatMagics.api_key`` as a
    cell's value, help pages, reprs of dicts and configs, and the outputs a notebook saves show
    ``<api key hidden>`` instead."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<api key hidden>"


class SecretUnicode(Unicode):
    """A Unicode trait whose value is a HiddenKey."""

    info_text = "a secret string"

    def validate(self, obj: Any, value: Any) -> Any:
        value = super().validate(obj, value)
        return value if value is None or isinstance(value, HiddenKey) else HiddenKey(value)
