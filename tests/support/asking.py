"""Asking a Chatbot as the chat panel does: from another thread, so the test can stop it meanwhile."""

from __future__ import annotations

import threading
from typing import Any

from jupyter_llmchat.core.chatbot import Chatbot


def ask_in_thread(bot: Chatbot, question: str, **kwargs: Any) -> tuple[threading.Thread, list]:
    """Ask in another thread (as the panel does); the Reply or the exception lands in the list."""
    outcome: list = []

    def run() -> None:
        try:
            outcome.append(bot.ask(question, **kwargs))
        except BaseException as error:  # handed to the test
            outcome.append(error)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome
