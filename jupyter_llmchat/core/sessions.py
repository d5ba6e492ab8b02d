"""Named conversations shared by the %%chat magics and the chat panel (one registry per kernel)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from .errors import ConfigurationError

if TYPE_CHECKING:
    from .chatbot import Chatbot

DEFAULT_SESSION = "default"


class Sessions:
    """Chatbots by name. New ones are made by ``factory(name)``, so they share its settings."""

    def __init__(self, factory: Callable[[str], Chatbot]) -> None:
        self.factory = factory
        self._bots: dict[str, Chatbot] = {}

    def get(self, name: str = DEFAULT_SESSION, *, create: bool = True) -> Chatbot:
        """The session ``name``; made on first use unless ``create`` is False."""
        bot = self._bots.get(name)
        if bot is None:
            if not create:
                known = ", ".join(sorted(self._bots)) or "none yet"
                raise ConfigurationError(f"unknown session {name!r} (sessions: {known}); start it by "
                                         f"asking with -s {name}")
            bot = self._bots[name] = self.factory(name)
        return bot

    def add(self, name: str, bot: Chatbot) -> Chatbot:
        self._bots[name] = bot
        return bot

    def drop(self, name: str) -> None:
        self._bots.pop(name, None)

    def names(self) -> list[str]:
        return sorted(self._bots)

    def items(self) -> Iterator[tuple[str, Chatbot]]:
        return iter(sorted(self._bots.items()))

    def bots(self) -> list[Chatbot]:
        """Every session's Chatbot, in name order."""
        return [bot for _, bot in self.items()]

    def __contains__(self, name: Any) -> bool:
        return name in self._bots

    def __len__(self) -> int:
        return len(self._bots)

    def __repr__(self) -> str:
        return f"Sessions({', '.join(self.names()) or 'empty'})"
