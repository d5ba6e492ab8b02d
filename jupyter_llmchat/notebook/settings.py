"""The magics' settings by name: which environment variable sets each, and which part they tune.

``ChatMagics`` (magics.py) declares one trait per setting; ``%chat config`` (commands.py) lists
them with these variables. Kept apart so both read one table without importing each other.
"""

from __future__ import annotations

FORMATS = ("markdown", "text", "code")
# Setting -> environment variable that overrides %config (and is overridden by a cell's options).
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
}
REQUEST_SETTINGS = ("temperature", "top_p", "max_tokens", "seed")
CLIENT_SETTINGS = ("api_key", "base_url", "timeout", "max_retries", "azure_endpoint", "api_version",
                   "azure_deployment")
SESSION_SETTINGS = ("model", "system", *REQUEST_SETTINGS, "max_history", "prompt_token_limit", "context_window")
