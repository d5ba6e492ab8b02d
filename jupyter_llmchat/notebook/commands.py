"""The ``%chat`` line commands: sessions, settings, transcripts, usage, the store and the panel.

Each command is a function with its own ``magic_arguments`` parser, so ``%chat?`` documents every
command with its arguments (``HELP``) and a line is split like a shell line (``"quoted text"``,
``'my file.json'``). ``run`` dispatches. Commands reach the kernel's state only through a
``ChatHost`` (ChatMagics in magics.py, which imports this module; never the other way round).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from IPython.core.error import UsageError
from IPython.core.magic_arguments import argument, magic_arguments

from ..core.errors import ChatError
from ..core.sessions import DEFAULT_SESSION
from .arguments import parse, plain_help, split_line, usage_line
from .error_display import shown_in_one_line
from .settings import ENV_VARS
from .tables import show, show_table

if TYPE_CHECKING:
    from ..core.chatbot import Chatbot
    from ..core.client import ChatClient
    from ..core.sessions import Sessions
    from ..store.ledger import UsageRow
    from ..store.store import Store
    from .panel import ChatPanel


class ChatHost(Protocol):
    """What the commands use of the magics: settings, sessions, the client and the store."""

    demo_url: str | None
    panels: list[ChatPanel]  # opened by %chat panel, for the host to close

    @property
    def sessions(self) -> Sessions: ...

    def session(self, name: str = DEFAULT_SESSION, *, create: bool = True) -> Chatbot: ...

    def sync(self, name: str, bot: Chatbot) -> None: ...

    def setting(self, name: str) -> tuple[Any, str]: ...

    def set_setting(self, name: str, value: Any, session: str | None = None) -> None: ...

    def pin(self, session: str, **values: Any) -> None: ...

    def client(self) -> ChatClient: ...

    def opened_store(self) -> Store: ...

    def chat(self, line: str, cell: str) -> None: ...


Command = Callable[[ChatHost, argparse.Namespace], None]
COMMANDS: dict[str, Command] = {}


def command(function: Any) -> Any:
    """Register a ``magic_arguments``-decorated function as ``%chat NAME`` (help as plain text)."""
    COMMANDS[function.argcmd_name.split()[-1]] = function
    plain_help(function)
    return function


def run(m: ChatHost, line: str) -> None:
    """Run ``%chat line``: a command, ``--error`` (ask why the last cell failed), or the list."""
    words = split_line(line, hint="%chat? lists the commands and their arguments")
    if not words:
        print(COMMAND_LIST)
        return
    name, rest = words[0], words[1:]
    if name.startswith("-"):  # %chat --error [options]: the cell magic without a body
        if "--error" not in words:
            raise UsageError("to ask a question use the cell magic: %%chat [options] on the first line, "
                             "the question below (only %chat --error works on one line)")
        m.chat(line, "")
        return
    handler = COMMANDS.get(name)
    if handler is None:
        raise UsageError(f"unknown %chat command {name!r}; commands: {', '.join(COMMANDS)} (ask with %%chat)")
    args = parse(handler.parser, rest, where=f"%chat {name}: ",  # type: ignore[attr-defined]
                 hint=f"usage: {usage_line(handler)}")
    try:
        handler(m, args)
    except ChatError as error:
        raise shown_in_one_line(error) from None


SESSION_OPTION = argument("-s", "--session", metavar="NAME", help="The session (default: 'default').")


@command
@magic_arguments("chat reset")
@argument("--all", action="store_true", help="Reset every session.")
@argument("name", nargs="?", metavar="SESSION", help="The session to reset (default: 'default').")
def cmd_reset(m: ChatHost, args: argparse.Namespace) -> None:
    """Forget a conversation, or all with --all; the system message stays."""
    if args.all:
        if args.name is not None:
            raise UsageError("%chat reset takes a SESSION or --all, not both")
        for bot in m.sessions.bots():
            bot.reset()
        print(f"reset {len(m.sessions)} session(s)")
        return
    name = args.name or DEFAULT_SESSION
    m.session(name, create=name == DEFAULT_SESSION).reset()
    print(f"session {name!r} reset")


@command
@magic_arguments("chat history")
@argument("name", nargs="?", metavar="SESSION", help="The session to show (default: 'default').")
def cmd_history(m: ChatHost, args: argparse.Namespace) -> None:
    """Show a session's transcript as Markdown, images as thumbnails."""
    from ..store import transcript

    name = args.name or DEFAULT_SESSION
    bot = m.session(name, create=name == DEFAULT_SESSION)
    from .safe_markdown import safe_markdown

    show({"text/plain": transcript.to_markdown(bot),
          "text/markdown": transcript.to_markdown(bot, image_html=True, render=safe_markdown)})


@command
@magic_arguments("chat sessions")
def cmd_sessions(m: ChatHost, args: argparse.Namespace) -> None:
    """List the sessions of this kernel: model, messages, history tokens, system message."""
    if DEFAULT_SESSION not in m.sessions:
        m.session(DEFAULT_SESSION)
    rows = [("session", "model", "messages", "history tokens", "system")]
    for name, bot in m.sessions.items():
        m.sync(name, bot)
        tokens = sum(message.tokens for message in bot.conversation.messages)
        system = (bot.system or "")[:40] + ("…" if bot.system and len(bot.system) > 40 else "")
        rows.append((name, bot.model, str(len(bot.conversation)), str(tokens), system))
    show_table(rows, numeric=(2, 3))


@command
@magic_arguments("chat usage")
@argument("--by", nargs="+", choices=("session", "model", "day"), default=["session", "model"],
          metavar="GROUP", help="Group by any of session, model, day (default: session model).")
@argument("-s", "--session", metavar="NAME", help="Only this session's replies (default: every session).")
def cmd_usage(m: ChatHost, args: argparse.Namespace) -> None:
    """Requests, tokens and cost from the store's ledger: every kernel that recorded into it."""
    rows = m.opened_store().usage_summary(tuple(dict.fromkeys(args.by)), session=args.session)
    if not rows:
        print("no replies recorded yet" + (f" in session {args.session!r}" if args.session else ""))
        return
    table, note = usage_table(rows)
    show_table(table, numeric=range(len(rows[0].keys), len(table[0])), note=note)


def usage_table(rows: list[UsageRow]) -> tuple[list[tuple[str, ...]], str | None]:
    """``%chat usage``'s table cells (with a total row) and its note on replies without usage."""
    from ..store.ledger import total

    names = tuple(rows[0].keys)
    header = (*names, "requests", "from cache", "prompt tokens", "cached tokens", "completion tokens", "cost")
    overall = total(rows)
    lines = [header] + [(*(str(row.keys[name]) for name in names), *_usage_numbers(row)) for row in rows]
    if len(rows) > 1:
        lines.append(("total", *[""] * (len(names) - 1), *_usage_numbers(overall)))
    notes = []
    if overall.unreported:
        notes.append(f"{overall.unreported} of {overall.requests} replies came without token counts from the "
                     "endpoint: they count 0 tokens, and cost $0 if no text arrived, else an unknown amount.")
    if overall.demo:
        notes.append(f"{overall.demo} of {overall.requests} replies came from the offline demo server, not "
                     "from a model: they cost nothing.")
    if overall.batch:
        notes.append(f"{overall.batch} of {overall.requests} replies came through the Batch API, billed at its "
                     "price (half the standard one).")
    return lines, " ".join(notes) or None


def _usage_numbers(row: UsageRow) -> tuple[str, ...]:
    from ..core.models import format_cost

    if row.demo == row.requests:
        cost = "demo, no cost"
    elif row.unpriced == row.requests:
        cost = "unknown"
    else:
        cost = format_cost(row.cost) + (" + unknown" if row.unpriced else "")
    return (f"{row.requests:,}", f"{row.cache_hits:,}", f"{row.prompt_tokens:,}", f"{row.cached_tokens:,}",
            f"{row.completion_tokens:,}", cost)


@command
@magic_arguments("chat config")
def cmd_config(m: ChatHost, args: argparse.Namespace) -> None:
    """Each setting's effective value and where it came from; the key is never shown.

    Set values with %config ChatMagics.NAME = VALUE or the environment variables listed.
    """
    rows = [("setting", "value", "source", "environment variable")]
    azure = bool(m.setting("azure_endpoint")[0])
    for name, env in ENV_VARS.items():
        value, source = m.setting(name)
        if name == "api_key":
            shown = "set (hidden)" if value else "not set"
            if azure and source == f"env {env}":  # an OpenAI key is not an Azure key
                shown, source = "not used with Azure", f"{source} (Azure reads AZURE_OPENAI_API_KEY)"
        else:
            shown = repr(value)
        rows.append((name, shown, source, env))
    client = m.client()
    if m.demo_url:
        where = "offline demo server (no key, no base_url)"
    elif azure:
        where = f"azure_endpoint ({m.setting('azure_endpoint')[1]})"
    elif m.setting("base_url")[0]:
        where = f"base_url ({m.setting('base_url')[1]})"
    else:
        where = "OpenAI default"
    rows.append(("endpoint", client.base_url, where, ""))
    from ..core.providers import describe

    bot = m.session(DEFAULT_SESSION)  # its model's provider, window, vision and counting, and their sources
    rows.extend(describe(bot.model, bot.client, bot.routes, context_window=bot.context_window, vision=bot.vision))
    show_table(rows)


@command
@magic_arguments("chat model")
@SESSION_OPTION
@argument("name", nargs="?", metavar="MODEL", help="The model to use from now on.")
def cmd_model(m: ChatHost, args: argparse.Namespace) -> None:
    """Show the model, or set it for every session (or one with -s)."""
    if args.name is None:
        print(m.session(args.session or DEFAULT_SESSION, create=args.session in (None, DEFAULT_SESSION)).model)
        return
    if not args.name.strip():
        raise UsageError("%chat model needs a model name, e.g. %chat model gpt-4o")
    m.set_setting("model", args.name, args.session)


@command
@magic_arguments("chat system")
@SESSION_OPTION
@argument("text", nargs="*", metavar="TEXT",
          help='The system message (quote it to keep spacing or an apostrophe; "" clears it).')
def cmd_system(m: ChatHost, args: argparse.Namespace) -> None:
    """Show the system message, or set it for every session (or one with -s)."""
    if not args.text:
        bot = m.session(args.session or DEFAULT_SESSION, create=args.session in (None, DEFAULT_SESSION))
        print(bot.system if bot.system is not None else "(no system message)")
        return
    m.set_setting("system", " ".join(args.text) or None, args.session)


@command
@magic_arguments("chat save")
@SESSION_OPTION
@argument("path", metavar="PATH", help="The JSON file to write, e.g. chat.json.")
def cmd_save(m: ChatHost, args: argparse.Namespace) -> None:
    """Write a session as a JSON transcript (images inside)."""
    from ..store import transcript

    name = args.session or DEFAULT_SESSION
    bot = m.session(name, create=name == DEFAULT_SESSION)
    path = transcript.save(bot, args.path)
    print(f"saved {len(bot.conversation)} messages of session {name!r} to {path}")


@command
@magic_arguments("chat load")
@SESSION_OPTION
@argument("path", metavar="PATH", help="A JSON transcript (%%chat save writes one).")
def cmd_load(m: ChatHost, args: argparse.Namespace) -> None:
    """Replace a session with a JSON transcript; a bad file changes nothing."""
    from ..store import transcript

    data = transcript.read(args.path)
    transcript.messages_from(data, args.path)  # a damaged file stops here, the session untouched
    name = args.session or DEFAULT_SESSION
    bot = m.session(name)
    m.pin(name, model=data["model"], system=data.get("system"))
    transcript.restore(data, bot, args.path)
    print(f"loaded {len(bot.conversation)} messages into session {name!r} (model {bot.model})")


@command
@magic_arguments("chat restore")
@argument("-s", "--session", metavar="NAME", help="The session to restore into (default: SAVED).")
@argument("saved", metavar="SAVED", help="A session saved in the store (%%chat saved lists them).")
def cmd_restore(m: ChatHost, args: argparse.Namespace) -> None:
    """Continue a session saved in the store, in this kernel; recording goes on into it."""
    store = _store_file(m, "restore")
    saved = [entry.session for entry in store.sessions()]
    if args.saved not in saved:
        raise UsageError(f"no saved session {args.saved!r} in the store (saved sessions: "
                         f"{', '.join(saved) or 'none yet'}); %chat saved lists them")
    name = args.session or args.saved
    bot = m.session(name)
    store.load(args.saved, bot)
    print(f"restored {len(bot.conversation)} messages of saved session {args.saved!r} into session "
          f"{name!r} (model {bot.model}); recording continues")


@command
@magic_arguments("chat saved")
def cmd_saved(m: ChatHost, args: argparse.Namespace) -> None:
    """List the sessions kept in the store file (ChatMagics.store)."""
    store = _store_file(m, "saved")
    rows = [("session", "model", "messages", "updated")]
    for saved in store.sessions():
        rows.append((saved.session, saved.model, str(saved.messages),
                     time.strftime("%Y-%m-%d %H:%M", time.localtime(saved.updated))))
    show_table(rows, numeric=(2,))


def _store_file(m: ChatHost, command: str) -> Store:
    store = m.opened_store()
    if store.in_memory:
        raise UsageError(f"%chat {command} needs a store file, and this kernel keeps conversations in memory "
                         "only: %config ChatMagics.store = 'default' (or a file path), or set "
                         "JUPYTER_LLMCHAT_STORE")
    return store


@command
@magic_arguments("chat tools")
@SESSION_OPTION
@argument("--clear", action="store_true", help="Remove every tool from the session.")
def cmd_tools(m: ChatHost, args: argparse.Namespace) -> None:
    """List the tools a session offers the model (%%chat --tools, --notebook): name, description,
    parameters, and whether each call asks you first."""
    name = args.session or DEFAULT_SESSION
    bot = m.session(name, create=name == DEFAULT_SESSION)
    if args.clear:
        count = len(bot.tools)
        bot.tools.clear()
        print(f"removed {count} tool(s) from session {name!r}")
        return
    if not bot.tools:
        print(f"session {name!r} has no tools; add some with %%chat --tools f,g or %%chat --notebook")
        return
    rows = [("tool", "description", "parameters", "confirm")]
    for made in bot.tools:
        summary = (made.description or "").strip().split("\n\n")[0]
        rows.append((made.name, _shortened(" ".join(summary.split()), 100), tool_parameters(made.function),
                     "yes" if made.confirm else "no"))
    show_table(rows)


def tool_parameters(function: Any) -> str:
    """``city: str, days: int = 3``: a tool's parameters as its signature reads."""
    import inspect

    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        return "..."
    shown = []
    for parameter in parameters:
        text = parameter.name
        if parameter.annotation is not parameter.empty:
            annotation = parameter.annotation
            text += f": {annotation if isinstance(annotation, str) else inspect.formatannotation(annotation)}"
        if parameter.default is not parameter.empty:
            text += f" = {parameter.default!r}"
        shown.append(text)
    return ", ".join(shown)


def _shortened(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


@command
@magic_arguments("chat models")
def cmd_models(m: ChatHost, args: argparse.Namespace) -> None:
    """List the models the endpoint serves (GET /models) and those of every configured provider
    (a key set, or a local server that answers), by the name -m takes."""
    from ..core.providers import available_models, endpoint_rows

    client = m.client()
    rows, notes = available_models(client)
    try:
        rows = endpoint_rows(client.list_models()) + rows
    except ChatError as error:
        if not rows:
            raise
        notes.insert(0, str(error))
    table = [("model (-m)", "provider", "context window", "vision", "price in / out per 1M")]
    table += [(row.name, row.provider, f"{row.window:,}" if row.window else "",
               {True: "yes", False: "no", None: ""}[row.vision], row.price) for row in rows]
    show_table(table, numeric=(2,), note=" ".join(notes) or None)


@command
@magic_arguments("chat batches")
@SESSION_OPTION
@argument("--cancel", action="store_true", help="Ask the provider to cancel the job (answered rows stay).")
@argument("--no-wait", action="store_true", help="Look once instead of waiting for the job to finish.")
@argument("job", nargs="?", metavar="JOB", help="A job id (or one of its provider batch ids) to collect.")
def cmd_batches(m: ChatHost, args: argparse.Namespace) -> None:
    """List the Batch API jobs of map(mode="batch") kept in the store, or collect one.

    With JOB: wait for it (a progress bar; Ctrl-C stops the wait, not the job), record its rows
    (the session's ledger, at the batch price) and show them; --cancel cancels it instead.
    """
    from .batch_tables import JOBS_NUMERIC, ROWS_NUMERIC, jobs_table, rows_table

    if args.job is None:
        if args.cancel or args.no_wait:
            raise UsageError("%chat batches --cancel and --no-wait need a JOB (%chat batches lists them)")
        jobs = m.opened_store().batch_jobs().jobs()
        if not jobs:
            print("no batch jobs in the store yet: bot.map(items, mode='batch') starts one")
            return
        show_table(jobs_table(jobs), numeric=JOBS_NUMERIC)
        return
    bot = m.session(args.session or DEFAULT_SESSION)
    if args.cancel:
        from ..core.batch import cancel_job

        job = cancel_job(bot.client, bot.batch_jobs, args.job)
        print(f"asked the provider to cancel job {job.id}; %chat batches {job.id} collects the rows it answered")
        return
    answers = bot.map_results(args.job, wait=not args.no_wait)
    table, note = rows_table(answers.job_id or args.job, answers.rows)
    show_table(table, numeric=ROWS_NUMERIC, note=note)


@command
@magic_arguments("chat panel")
@argument("name", nargs="?", metavar="SESSION", help="The session to open (default: 'default').")
def cmd_panel(m: ChatHost, args: argparse.Namespace) -> None:
    """Open the chat panel on a session (shared with %%chat)."""
    name = args.name or DEFAULT_SESSION
    m.session(name)
    from .panel import show_panel

    m.panels.append(show_panel(m.sessions, name))


def _summary(function: Any) -> str:
    """The first paragraph of a command's description, on one line."""
    return " ".join(function.parser.description.strip().split("\n\n")[0].split()).rstrip(".")


_ASK = "%%chat [options]"
_ERROR = "%chat --error [options]"
_WIDTH = max(len(usage_line(f)) for f in COMMANDS.values())
# ``%chat`` alone: one line per command.
COMMAND_LIST = "\n".join(
    [f"{_ASK.ljust(_WIDTH)}  ask the question in the cell body (%%chat? lists the options)"]
    + [f"{usage_line(f).ljust(_WIDTH)}  {_summary(f)}" for f in COMMANDS.values()]
    + [f"{_ERROR.ljust(_WIDTH)}  ask why the last cell failed (its code and traceback are sent)"])
# ``%chat?``: every command with its arguments (magic_arguments wrote each one's help).
HELP = "\n".join(
    ["Manage chat sessions and settings: %chat COMMAND [arguments]. %chat alone lists the commands;",
     "ask questions with %%chat (%%chat? lists its options); %chat --error [options] asks why the last",
     "cell failed.", ""]
    + [(f.__doc__ or "").strip() + "\n" for f in COMMANDS.values()])
