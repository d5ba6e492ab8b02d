"""The ``%chat`` line commands: sessions, settings, transcripts, usage, the store and the panel.

Each ``cmd_NAME(magics, rest)`` handles ``%chat NAME rest``; ``run`` dispatches. They only read
and change state through ChatMagics (settings, sessions, client) and show tables or text.
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from IPython.core.error import UsageError

from ..core.errors import ChatError
from .magics import DEFAULT_SESSION, ENV_VARS, one_line, unquote

if TYPE_CHECKING:
    from .magics import ChatMagics

LINE_HELP = """\
%%chat [options]   ask the question in the cell body (%%chat? lists the options)
%chat reset [SESSION | --all]       forget a conversation (the system message stays)
%chat history [SESSION]             show the transcript
%chat sessions                      list the conversations
%chat usage                         tokens and cost per session and model
%chat config                        effective settings and where each came from
%chat model [NAME] [-s SESSION]     show or set the model (all sessions, or one)
%chat system [TEXT] [-s SESSION]    show or set the system message ("" clears it)
%chat save PATH [-s SESSION]        write the conversation as a JSON transcript
%chat load PATH [-s SESSION]        restore a conversation from a JSON transcript
%chat saved                         list the sessions kept in the store (see ChatMagics.store)
%chat restore NAME [-s SESSION]     continue a session saved in the store, in this kernel
%chat models                        list the models the endpoint serves
%chat panel [SESSION]               open the chat panel on a session
%chat --error [options]             ask why the last cell failed (its code and traceback are sent)"""


def run(m: ChatMagics, line: str) -> None:
    """Run ``%chat line``: a command, ``--error`` (ask why the last cell failed), or the help."""
    command, _, rest = line.strip().partition(" ")
    if not command:
        print(LINE_HELP)
        return
    if command.startswith("-"):  # %chat --error [options]: the cell magic without a body
        if "--error" not in _split(line):
            raise UsageError("to ask a question use the cell magic: %%chat [options] on the first line, "
                             "the question below (only %chat --error works on one line)")
        m.chat(line, "")
        return
    handler: Callable[[ChatMagics, str], None] | None = COMMANDS.get(command)
    if handler is None:
        raise UsageError(f"unknown %chat command {command!r}; commands: {', '.join(COMMANDS)} (ask with "
                         "%%chat)")
    try:
        handler(m, rest.strip())
    except ChatError as error:
        raise one_line(error) from None


def cmd_reset(m: ChatMagics, rest: str) -> None:
    """Forget a conversation (or all with --all); the system message stays."""
    words = _split(rest)
    if words == ["--all"]:
        for bot in m.sessions.bots():
            bot.reset()
        print(f"reset {len(m.sessions)} session(s)")
        return
    name = _one_name(words, "reset")
    m.session(name, create=name == DEFAULT_SESSION).reset()
    print(f"session {name!r} reset")


def cmd_history(m: ChatMagics, rest: str) -> None:
    """Show a session's transcript as Markdown, images as thumbnails."""
    from ..store import transcript

    name = _one_name(_split(rest), "history")
    bot = m.session(name, create=name == DEFAULT_SESSION)
    text = transcript.to_markdown(bot)
    _show({"text/plain": text, "text/markdown": transcript.to_markdown(bot, image_html=True)})


def cmd_sessions(m: ChatMagics, rest: str) -> None:
    """List the sessions with model, messages, history tokens and system message."""
    if rest:
        raise UsageError("%chat sessions takes no arguments")
    if DEFAULT_SESSION not in m.sessions:
        m.session(DEFAULT_SESSION)
    rows = [("session", "model", "messages", "history tokens", "system")]
    for name, bot in m.sessions.items():
        m.sync(name, bot)
        tokens = sum(message.tokens for message in bot.conversation.messages)
        system = (bot.system or "")[:40] + ("…" if bot.system and len(bot.system) > 40 else "")
        rows.append((name, bot.model, str(len(bot.conversation)), str(tokens), system))
    _show_table(rows)


def cmd_usage(m: ChatMagics, rest: str) -> None:
    """Tokens and cost per session and model (the store's ledger when a store is set)."""
    from ..store import usage

    if rest:
        raise UsageError("%chat usage takes no arguments")
    store = m.opened_store()
    if store is not None:  # the persistent ledger: every kernel that recorded into this store
        from ..store.ledger import usage_rows

        rows = usage_rows(store)
    else:
        rows = m.ledger.rows()
    _show({"text/plain": usage.to_text(rows), "text/markdown": usage.to_markdown(rows)})


def cmd_config(m: ChatMagics, rest: str) -> None:
    """Each setting's effective value and where it came from; the key is never shown."""
    if rest:
        raise UsageError("%chat config takes no arguments; set values with %config ChatMagics.NAME = "
                         "VALUE or the environment variables shown")
    rows = [("setting", "value", "source", "environment variable")]
    for name, env in ENV_VARS.items():
        value, source = m.setting(name)
        shown = ("set (hidden)" if value else "not set") if name == "api_key" else repr(value)
        rows.append((name, shown, source, env))
    client = m.client()
    if m.demo_url:
        rows.append(("endpoint", client.base_url, "offline demo server (no key, no base_url)", ""))
    else:
        rows.append(("endpoint", client.base_url, "base_url" if m.setting("base_url")[0] else
                     "OpenAI default", ""))
    _show_table(rows)


def cmd_model(m: ChatMagics, rest: str) -> None:
    """Show the model, or set it for all sessions (or one with -s)."""
    session, words = _session_option(_split(rest))
    if not words:
        bot = m.session(session or DEFAULT_SESSION, create=session in (None, DEFAULT_SESSION))
        print(bot.model)
        return
    if len(words) > 1:
        raise UsageError("%chat model takes one model name, e.g. %chat model gpt-4o")
    m.set_setting("model", words[0], session)


def cmd_system(m: ChatMagics, rest: str) -> None:
    """Show the system message, or set it for all sessions (or one with -s); "" clears it."""
    session, words = _session_option(_split(rest, keep_quotes=True), keep_rest=True)
    text = unquote(" ".join(words)) if words else None
    if text is None:
        bot = m.session(session or DEFAULT_SESSION, create=session in (None, DEFAULT_SESSION))
        print(bot.system if bot.system is not None else "(no system message)")
        return
    m.set_setting("system", text or None, session)


def cmd_save(m: ChatMagics, rest: str) -> None:
    """Write a session as a JSON transcript (see transcript.py)."""
    from ..store import transcript

    session, words = _session_option(_split(rest))
    if len(words) != 1:
        raise UsageError("%chat save needs one PATH, e.g. %chat save chat.json")
    name = session or DEFAULT_SESSION
    bot = m.session(name, create=name == DEFAULT_SESSION)
    path = transcript.save(bot, words[0])
    print(f"saved {len(bot.conversation)} messages of session {name!r} to {path}")


def cmd_load(m: ChatMagics, rest: str) -> None:
    """Replace a session with a JSON transcript; a bad file changes nothing."""
    from ..store import transcript

    session, words = _session_option(_split(rest))
    if len(words) != 1:
        raise UsageError("%chat load needs one PATH, e.g. %chat load chat.json")
    data = transcript.read(words[0])
    transcript.messages_from(data, words[0])  # a damaged file stops here, the session untouched
    name = session or DEFAULT_SESSION
    bot = m.session(name)
    m.pin(name, model=data["model"], system=data.get("system"))
    transcript.restore(data, bot, words[0])
    print(f"loaded {len(bot.conversation)} messages into session {name!r} (model {bot.model})")


def cmd_restore(m: ChatMagics, rest: str) -> None:
    """Continue a session saved in the store (recording goes on into it)."""
    session, words = _session_option(_split(rest))
    if len(words) != 1:
        raise UsageError("%chat restore needs one saved session NAME (%chat saved lists them)")
    store = _need_store(m, "restore")
    saved = [entry.session for entry in store.sessions()]
    if words[0] not in saved:
        raise UsageError(f"no saved session {words[0]!r} in the store (saved sessions: "
                         f"{', '.join(saved) or 'none yet'}); %chat saved lists them")
    name = session or words[0]
    bot = m.session(name)
    store.load(words[0], bot)
    print(f"restored {len(bot.conversation)} messages of saved session {words[0]!r} into session "
          f"{name!r} (model {bot.model}); recording continues")


def cmd_saved(m: ChatMagics, rest: str) -> None:
    """List the sessions kept in the store."""
    if rest:
        raise UsageError("%chat saved takes no arguments")
    store = _need_store(m, "saved")
    rows = [("session", "model", "messages", "updated")]
    for saved in store.sessions():
        rows.append((saved.session, saved.model, str(saved.messages),
                     time.strftime("%Y-%m-%d %H:%M", time.localtime(saved.updated))))
    _show_table(rows)


def _need_store(m: ChatMagics, command: str) -> Any:
    store = m.opened_store()
    if store is None:
        raise UsageError(f"%chat {command} needs a store: %config ChatMagics.store = 'default' (or a "
                         "file path), or set JUPYTER_LLMCHAT_STORE")
    return store


def cmd_models(m: ChatMagics, rest: str) -> None:
    """List the models the endpoint serves (GET /models)."""
    if rest:
        raise UsageError("%chat models takes no arguments")
    print("\n".join(m.client().list_models()))


def cmd_panel(m: ChatMagics, rest: str) -> None:
    """Open the ipywidgets chat panel on a session (shared with %%chat)."""
    name = _one_name(_split(rest), "panel")
    m.session(name)
    from .panel import show_panel

    show_panel(m.sessions, name)


def _split(rest: str, keep_quotes: bool = False) -> list[str]:
    if keep_quotes:
        return rest.split(" ") if rest else []
    try:
        return shlex.split(rest)
    except ValueError as error:
        raise UsageError(f"cannot parse {rest!r}: {error}") from None


def _one_name(words: list[str], command: str) -> str:
    if len(words) > 1:
        raise UsageError(f"%chat {command} takes at most one session name")
    return words[0] if words else DEFAULT_SESSION


def _session_option(words: list[str], keep_rest: bool = False) -> tuple[str | None, list[str]]:
    """Pull ``-s NAME`` / ``--session NAME`` out of ``words``."""
    for flag in ("-s", "--session"):
        if flag in words:
            index = words.index(flag)
            if index + 1 >= len(words) or not words[index + 1]:
                raise UsageError(f"{flag} needs a session name")
            return words[index + 1], words[:index] + words[index + 2:]
    return None, words


def _show(bundle: dict[str, Any]) -> None:
    from IPython.display import display

    display(bundle, raw=True)


def _show_table(rows: Sequence[Sequence[str]]) -> None:
    """A table as Markdown for notebooks and aligned text for terminals."""
    def cell(value: str) -> str:
        return value.replace("|", "\\|").replace("\n", " ")

    markdown = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    markdown += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows[1:]]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    text = ["  ".join(v.replace("\n", " ").ljust(w) for v, w in zip(row, widths)).rstrip() for row in rows]
    _show({"text/plain": "\n".join(text), "text/markdown": "\n".join(markdown)})


COMMANDS: dict[str, Callable[[ChatMagics, str], None]] = {
    "reset": cmd_reset,
    "history": cmd_history,
    "sessions": cmd_sessions,
    "usage": cmd_usage,
    "config": cmd_config,
    "model": cmd_model,
    "system": cmd_system,
    "save": cmd_save,
    "load": cmd_load,
    "restore": cmd_restore,
    "saved": cmd_saved,
    "models": cmd_models,
    "panel": cmd_panel,
}
