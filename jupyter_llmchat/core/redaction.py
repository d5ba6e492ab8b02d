"""Secrets kept out of everything shown: a base URL's user, password and secret query values
(``https://user:pass@host``, ``?api-key=...``) redacted where the URL is shown, and replaced by ***
in what the HTTP libraries log (httpx logs each request's full URL). No HTTP here."""

from __future__ import annotations

import logging
from urllib.parse import parse_qsl, unquote, urlsplit, urlunsplit

# Query parameters of a base URL whose values are secrets (Azure's api-key, tokens, signatures).
_SECRET_QUERY = ("key", "token", "secret", "sig", "password", "auth", "credential")


def redact_url(url: str) -> str:
    """``url`` as it may be shown: a user or password (``https://user:pass@host``) and the values
    of secret query parameters (``?api-key=...``) replaced by ***."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "***"
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rsplit("@", 1)[1]
    query = parts.query
    if query:
        query = "&".join(f"{name}=***" if _is_secret_name(name) else (f"{name}={value}" if value else name)
                         for name, value in parse_qsl(query, keep_blank_values=True))
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def url_secrets(url: str) -> list[str]:
    """The secrets written in ``url`` (user, password, secret query values), as written and decoded."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return [url]
    found: list[str] = []
    if "@" in parts.netloc:
        found.extend(piece for piece in parts.netloc.rsplit("@", 1)[0].split(":", 1) if piece)
    for pair in parts.query.split("&"):
        name, _, value = pair.partition("=")
        if value and _is_secret_name(unquote(name)):
            found.append(value)
    return found + [unquote(secret) for secret in found if unquote(secret) != secret]


def _is_secret_name(name: str) -> bool:
    lowered = name.lower()
    return any(word in lowered for word in _SECRET_QUERY)


class _LogScrubber(logging.Filter):
    """Hides secrets of base URLs (a password, an ``?api-key=``) in what the HTTP libraries log:
    httpx logs every request's full URL at INFO."""

    LOGGERS = ("httpx2", "httpx", "httpcore2", "httpcore", "openai")

    def __init__(self) -> None:
        super().__init__()
        self._secrets: list[str] = []
        self._installed = False

    def hide(self, secrets: list[str]) -> None:
        new = [secret for secret in secrets if secret not in self._secrets]
        if not new:
            return
        self._secrets = sorted({*self._secrets, *new}, key=len, reverse=True)
        if not self._installed:
            self._installed = True
            for name in self.LOGGERS:
                logging.getLogger(name).addFilter(self)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        hidden = message
        for secret in self._secrets:
            hidden = hidden.replace(secret, "***")
        if hidden != message:
            record.msg, record.args = hidden, ()
        return True


_LOG_SCRUBBER = _LogScrubber()


def hide_in_logs(secrets: list[str]) -> None:
    """From now on, replace ``secrets`` by *** in what the HTTP libraries log."""
    _LOG_SCRUBBER.hide(secrets)
