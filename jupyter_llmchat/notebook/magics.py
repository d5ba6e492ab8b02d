"""``%%chat`` (ask) and ``%chat`` (manage) IPython magics, configurable the IPython way.

Settings come from, lowest precedence first (Jupyter's convention): trait defaults, environment
variables (``LLMCHAT_*``, ``OPENAI_API_KEY``, ``OPENAI_BASE_URL``), ``%config ChatMagics.x = ...``
or ipython_config.py, ``%chat model`` / ``%chat system``, and the options of one ``%%chat`` cell:
what is typed in the notebook beats what the kernel inherited. ``%chat config`` shows the
effective value of each and where it came from. The API key's trait holds a ``HiddenKey``, whose
repr never shows it, and every config object IPython keeps gets the same (``_hide_key``).
This module only parses, resolves settings and shows results: asking is ``Chatbot.ask``,
streaming display is ``display``, the ``%chat`` commands are commands.py. Lines are split like a
shell's (``arg_split``) and parsed by ``magic_arguments``, so ``--system 'Be terse.'`` and
``-i "my plot.png"`` mean what they say.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
import time
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar, cast

from IPython.core.error import UsageError
from IPython.core.magic import Magics, magics_class
from IPython.core.magic import cell_magic as _cell_magic
from IPython.core.magic import line_magic as _line_magic
from IPython.core.magic_arguments import argument, magic_arguments
from traitlets import Bool, Dict, Enum, Float, Int, TraitError, Unicode, observe, validate

from ..core.errors import ChatError
from ..core.reply import LiveSink
from ..core.sessions import DEFAULT_SESSION
from . import commands
from .arguments import model_list, name_list, parse, plain_help, split_line
from .cell_watch import current_cell, owning_cell
from .error_display import shown_in_one_line
from .expansion import ExpansionError, expand
from .settings import (
    CLIENT_SETTINGS,
    ENV_VARS,
    FORMATS,
    REQUEST_SETTINGS,
    SESSION_SETTINGS,
    HiddenKey,
    SecretUnicode,
)

if TYPE_CHECKING:
    from ..core.chatbot import Chatbot
    from ..core.client import ChatClient
    from ..core.reply import Reply
    from ..core.sessions import Sessions
    from ..store.store import Store
    from .panel import ChatPanel

ERROR_QUESTION = "Why did this fail, and how do I fix it?"
LOGPROBS_ALTERNATIVES = 5  # top_logprobs asked for by --logprobs: the alternatives shown on hover
LONG_WINDOW = 200_000  # a model with a larger window gets the max_cost_per_question suggestion (once)
THREAD_JOIN_TIMEOUT = 10.0  # seconds close() waits in all for our threads to end


_Method = TypeVar("_Method", bound=Callable[..., Any])


def cell_magic(name: str) -> Callable[[_Method], _Method]:
    """IPython's ``cell_magic`` typed as the decorator it is (IPython 9 declares it returning a union,
    which type checkers cannot call)."""
    return cast("Callable[[_Method], _Method]", _cell_magic(name))


def line_magic(name: str) -> Callable[[_Method], _Method]:
    """IPython's ``line_magic``, typed as ``cell_magic`` above."""
    return cast("Callable[[_Method], _Method]", _line_magic(name))


@magics_class
class ChatMagics(Magics):
    """Talk to an LLM from a notebook: ``%%chat`` asks, ``%chat`` manages sessions and settings."""

    shell: Any  # the InteractiveShell, set by Magics.__init__

    model = Unicode("gpt-4o-mini", help="Model name sent to the endpoint.").tag(config=True)
    system = Unicode(None, allow_none=True, help="System message for new conversations.").tag(config=True)
    temperature = Float(None, allow_none=True, min=0.0, max=2.0, help="Sampling temperature (0-2).").tag(
        config=True)
    top_p = Float(None, allow_none=True, min=0.0, max=1.0, help="Nucleus sampling (0-1).").tag(config=True)
    max_tokens = Int(None, allow_none=True, min=1, help="Cap on each answer's tokens.").tag(config=True)
    seed = Int(None, allow_none=True, help="Seed for reproducible sampling, where supported.").tag(config=True)
    max_history = Int(None, allow_none=True, min=1, help="Most messages kept per conversation.").tag(
        config=True)
    prompt_token_limit = Int(None, allow_none=True, min=1,
                             help="Cap on prompt tokens; older turns are dropped to fit.").tag(config=True)
    context_window = Int(None, allow_none=True, min=1,
                         help="The model's context window, for models outside the table.").tag(config=True)
    format = Enum(FORMATS, default_value="markdown", help="How answers are shown.").tag(config=True)
    footer = Bool(True, help="Show model, tokens, time and cost under each answer.").tag(config=True)
    timeout = Float(600.0, min=0.001, help="Seconds to wait for the endpoint.").tag(config=True)
    max_retries = Int(3, min=0, help="Retries on 429, 5xx and connection errors.").tag(config=True)
    api_key = SecretUnicode(None, allow_none=True,
                            help="API key (prefer OPENAI_API_KEY); never shown, logged or saved.").tag(config=True)
    base_url = Unicode(None, allow_none=True,
                       help="OpenAI-compatible endpoint, e.g. http://localhost:11434/v1.").tag(config=True)
    azure_endpoint = Unicode(None, allow_none=True,
                             help="Azure OpenAI endpoint (key from AZURE_OPENAI_API_KEY or api_key).").tag(
        config=True)
    api_version = Unicode(None, allow_none=True, help="Azure OpenAI API version.").tag(config=True)
    azure_deployment = Unicode(None, allow_none=True, help="Azure OpenAI deployment name.").tag(config=True)
    store = Unicode("default", allow_none=True,
                    help="SQLite file that keeps conversations, usage and cached replies across kernels: "
                         "'default' (a file in the user data directory), a path, or ':memory:' (or None) "
                         "to keep them in memory for this kernel only.").tag(config=True)
    cache = Bool(False, help="Replay identical requests from the store's response cache.").tag(config=True)
    preload = Bool(True, help="After %load_ext, import the SDK and load the token vocabulary in a "
                              "background thread, so the first %%chat does not wait for them.").tag(config=True)
    max_cost_per_question = Float(None, allow_none=True,
                                  help="USD a question may cost at worst (its prompt and the longest answer "
                                       "allowed); one that could cost more is refused before sending. "
                                       "None: no limit.").tag(config=True)
    models = Dict(help="Models added to the model table, name -> settings, e.g. {'ollama:qwen2.5:7b': "
                       "{'context_window': 32768, 'vision': False}} (see jupyter_llmchat.add_model).").tag(config=True)

    @validate("max_cost_per_question")
    def _check_max_cost(self, proposal: Any) -> Any:
        value = proposal["value"]
        if value is not None and not 0 < value < float("inf"):
            raise TraitError(f"max_cost_per_question must be a number of dollars > 0 (or None), got {value!r}")
        return value

    @validate("models")
    def _check_models(self, proposal: Any) -> Any:
        from ..core.models import check_models

        try:
            check_models(proposal["value"])
        except ChatError as error:
            raise TraitError(str(error)) from None
        return proposal["value"]

    @observe("models")
    def _models_changed(self, change: Any) -> None:
        """The table gets the new entries; entries of the old setting that are gone are removed."""
        from ..core.models import add_models, remove_model

        old = change["old"] if isinstance(change["old"], dict) else {}
        for name in set(old) - set(change["new"]):
            remove_model(name)
        add_models(change["new"])

    def __init__(self, shell: Any = None, **kwargs: Any) -> None:
        super().__init__(shell=shell, **kwargs)
        self._hide_key_everywhere()  # a key from ipython_config.py, or %config'd before %load_ext
        self._sessions: Sessions | None = None
        self._runtime: dict[str, Any] = {}  # set by %chat model / %chat system
        self._pins: dict[str, dict[str, Any]] = {}  # per-session model/system (%chat ... -s, load)
        self._applied: dict[str, dict[str, Any]] = {}  # per session: setting values last applied
        self._client: ChatClient | None = None
        self._client_ident: tuple[Any, ...] | None = None
        self.demo_url: str | None = None  # the offline demo server's URL when it is in use
        self._store: Store | None = None
        self._store_setting: str | None = None  # the store setting self._store was opened for
        self._demo_noted = False
        self._cost_noted = False  # the max_cost_per_question suggestion was shown
        self.panels: list[ChatPanel] = []  # opened by %chat panel: closed by close()
        self.preload_thread: threading.Thread | None = None

    def __repr__(self) -> str:  # the key is never part of it
        return f"<ChatMagics sessions={self.sessions.names() if self._sessions else []}>"

    # -- settings ----------------------------------------------------------------------------------
    def setting(self, name: str) -> tuple[Any, str]:
        """The effective value of setting ``name`` and where it came from: ``%chat model|system``,
        then ``%config`` / a config file, then the environment, then the default."""
        if name in self._runtime:
            return self._runtime[name], f"%chat {name}"
        section = dict.get(self.config, type(self).__name__) or {}
        if name in section:
            return getattr(self, name), "%config / config file"
        env = ENV_VARS[name]
        raw = os.environ.get(env)
        if raw:
            return self._from_env(name, env, raw), f"env {env}"
        return getattr(self, name), "default"

    def update_config(self, config: Any) -> None:
        """``%config ChatMagics.x = ...``: IPython hands the same Config to every configurable,
        so the key is hidden in it first (the shell and the others merge it after us)."""
        _hide_key(config)
        super().update_config(config)
        self._hide_key_everywhere()

    def _hide_key_everywhere(self) -> None:
        """Hide the key in our config, the shell's and every configurable's (they merged copies)."""
        _hide_key(self.config)
        shell = self.shell
        if shell is not None:
            for holder in [shell, *getattr(shell, "configurables", [])]:
                _hide_key(getattr(holder, "config", None))

    def effective(self) -> dict[str, Any]:
        return {name: self.setting(name)[0] for name in ENV_VARS}

    def check(self, name: str, value: Any, label: str) -> Any:
        """``value`` if setting ``name`` accepts it, else a one-line UsageError naming ``label``."""
        trait = self.traits()[name]
        try:
            return trait._validate(self, value) if value is not None or not trait.allow_none else None
        except TraitError:
            low, high = getattr(trait, "min", None), getattr(trait, "max", None)
            if low is not None and high is not None:
                expect = f"between {low:g} and {high:g}"
            elif low is not None:
                expect = f"at least {low:g}"
            elif isinstance(trait, Enum):
                expect = "one of " + ", ".join(map(str, trait.values or ()))
            else:
                expect = f"a valid {type(trait).__name__.lower()}"
            raise UsageError(f"{label} must be {expect}, got {value!r}") from None

    def _from_env(self, name: str, env: str, raw: str) -> Any:
        trait = self.traits()[name]
        try:
            value = trait.from_string(raw)
        except (TraitError, ValueError):
            shown = "(hidden)" if name == "api_key" else repr(raw)
            raise UsageError(f"environment variable {env}={shown} is not a valid {name}: fix or unset it")\
                from None
        return self.check(name, value, f"environment variable {env}")

    # -- sessions and clients ----------------------------------------------------------------------
    @property
    def sessions(self) -> Sessions:
        """The named conversations (shared with the chat panel), made on first use."""
        if self._sessions is None:
            from ..core.sessions import Sessions

            self._sessions = Sessions(self._new_bot)
        return self._sessions

    def session(self, name: str = DEFAULT_SESSION, *, create: bool = True) -> Chatbot:
        """Session ``name`` brought up to date with the effective settings."""
        try:
            bot = self.sessions.get(name, create=create)
        except ChatError as error:
            raise UsageError(str(error)) from None
        self.sync(name, bot)
        return bot

    def _new_bot(self, name: str) -> Chatbot:
        from ..core.chatbot import Chatbot

        want = self._desired(name)
        bot = Chatbot(want["model"], system=want["system"], max_history=want["max_history"],
                      prompt_token_limit=want["prompt_token_limit"], context_window=want["context_window"],
                      max_cost_per_question=want["max_cost_per_question"], client=self.client(),
                      **{k: want[k] for k in REQUEST_SETTINGS})
        self._applied[name] = want
        self._record(name, bot)
        return bot

    def opened_store(self) -> Store:
        """The store the ``store`` setting names, opened once: its file, or one in memory when the
        setting is None or ':memory:' (the same ledger and cache, kept for this kernel only).

        While the offline demo server answers, its replies go to a store of their own
        (``demo_path()``), not the user's, unless ``%config ChatMagics.store`` names one."""
        from ..store.database import MEMORY, demo_path
        from ..store.store import Store

        value, source = self.setting("store")
        chosen = value or MEMORY
        self.client()  # settles whether the demo server answers
        if self.demo_url is not None and chosen != MEMORY and source != "%config / config file":
            chosen = str(demo_path())
        if self._store is None or chosen != self._store_setting:
            if self._store is not None:
                self._store.close()
            self._store_setting = chosen
            try:
                self._store = Store(None if chosen == "default" else chosen)
            except ChatError as error:  # chatting goes on in memory; say so once
                print(f"conversations are kept in memory only, not saved: {error}", file=sys.stderr)
                self._store = Store(MEMORY)
        return self._store

    def _record(self, name: str, bot: Chatbot) -> None:
        """Record the session in the store (its ledger too), with the response cache if asked."""
        try:
            store = self.opened_store()
        except ChatError as error:
            raise shown_in_one_line(error) from None
        if store.recorder(bot) is None:
            store.attach(bot, name, cache=self.setting("cache")[0])
        if not any(isinstance(listener, _DemoMarker) for listener in bot.reply_listeners):
            bot.reply_listeners.insert(0, _DemoMarker(self, bot))  # first: before the ledger and footers

    def _desired(self, name: str) -> dict[str, Any]:
        """What session ``name`` should use: the effective settings, then its own pins."""
        s = self.effective()
        want = {k: s[k] for k in SESSION_SETTINGS}
        want.update(self._pins.get(name, {}))
        want["system"] = want["system"] or None
        return want

    def sync(self, name: str, bot: Chatbot) -> None:
        """Apply the settings that changed since they were last applied to this session.

        Only changes are applied, so a change made to the session directly (the panel's model
        menu, ``bot.params[...] = ...``, a loaded transcript's params) stays until that setting
        itself changes again.
        """
        applied = self._applied.setdefault(name, {})
        for key, value in self._desired(name).items():
            if key in applied and applied[key] == value:
                continue
            _apply(bot, key, value)
            applied[key] = value
        bot.client = self.client()
        self._record(name, bot)

    def client(self) -> ChatClient:
        """One ChatClient for every session (one connection pool), rebuilt when its settings change.

        With no key and no base URL anywhere, the offline demo server answers instead.
        """
        ident = tuple(self.setting(name)[0] for name in CLIENT_SETTINGS)
        if self._client is None or ident != self._client_ident:
            from ..core.client import ChatClient

            key, base_url, timeout, retries, azure_endpoint, api_version, deployment = ident
            if azure_endpoint and self.setting("api_key")[1] == "env OPENAI_API_KEY":
                key = None  # an OpenAI key is not an Azure key: ChatClient reads AZURE_OPENAI_API_KEY
            client = ChatClient(api_key=str(key) if key else None, base_url=base_url or None, timeout=timeout,
                                max_retries=retries, azure_endpoint=azure_endpoint or None,
                                api_version=api_version or None, azure_deployment=deployment or None)
            self.demo_url = None
            if not client.configured():
                from ..server import start_demo_server

                self.demo_url = start_demo_server().base_url
                client = ChatClient(base_url=self.demo_url, timeout=timeout, max_retries=retries)
            self._client, self._client_ident = client, ident
        return self._client

    # -- %%chat -----------------------------------------------------------------------------------
    @magic_arguments("%chat")  # the parser's name: its usage line reads "%%chat ..."
    @argument("-m", "--model", action="append", metavar="MODEL",
              help="Model for this question (default: the session's). Several (-m gpt-4o -m gpt-4o-mini) answer "
                   "side by side, each in its session SESSION/MODEL.")
    @argument("-t", "--temperature", type=float, help="Sampling temperature, 0 to 2.")
    @argument("--max-tokens", type=int, help="Cap on this answer's tokens.")
    @argument("--top-p", type=float, help="Nucleus sampling, 0 to 1.")
    @argument("--seed", type=int, help="Seed for reproducible sampling.")
    @argument("--system", metavar="TEXT", help="System message for this question only.")
    @argument("-s", "--session", default=DEFAULT_SESSION, metavar="NAME",
              help="Conversation to use; each name is independent (default: 'default').")
    @argument("--new", action="store_true", help="Start the session afresh before asking.")
    @argument("--no-history", action="store_true",
              help="One-off question: neither reads nor writes the conversation.")
    @argument("-i", "--image", action="append", default=[], metavar="SOURCE",
              help="Image to send with the question: a variable name, path or URL (repeatable).")
    @argument("--json", action="store_true", help="JSON mode: the answer is shown as formatted JSON.")
    @argument("--schema", metavar="NAME",
              help="Answer as this schema from the notebook (a pydantic model, dataclass, TypedDict or JSON "
                   "Schema dict): shown as a table or JSON, the validated object kept in _chat.")
    @argument("-f", "--format", choices=FORMATS, metavar="FORMAT",
              help="markdown (default), text (plain stream) or code (the answer's code block, also "
                   "put into the next cell).")
    @argument("--error", action="store_true",
              help="Append the last exception's traceback (ask 'why did this fail?').")
    @argument("--raw", action="store_true", help="Send the cell as written: no {name} expansion.")
    @argument("--tools", action="append", default=[], metavar="NAMES",
              help="Functions of the notebook the model may call, e.g. --tools f,g; the session keeps them "
                   "(%%chat tools lists them).")
    @argument("--notebook", action="store_true",
              help="Let the model look at the notebook from now on in this session: list and inspect "
                   "variables, read cells, and run code (you approve each run).")
    @argument("--with", dest="attach", action="append", default=[], metavar="NAMES",
              help="Attach summaries of these variables to the question, e.g. --with df,model (no tools "
                   "needed).")
    @argument("--dry-run", action="store_true",
              help="Send nothing: show the exact prompt tokens, the turns left out to fit, and the cost range.")
    @argument("--logprobs", action="store_true",
              help="Show the answer's tokens shaded by their probability, the top alternatives on hover.")
    @cell_magic("chat")
    @owning_cell  # the finished answer may replace what it streamed when nothing else is in the cell
    def chat(self, line: str, cell: str) -> None:
        """Ask the question in the cell below this line; the answer streams below the cell and
        is kept in the variable _chat.

        {name} and {expression} in the question are replaced by their values from the notebook:
        {In[3]}, {Out[4]}, {df.shape}, {x!r}, {x:.2f}. Write {{ and }} for literal braces, or use
        --raw. A placeholder that cannot be evaluated stops the cell before anything is sent.
        """
        hint = "%%chat? lists the options (nothing was sent)"
        args = parse(self.chat.parser, split_line(line, hint=hint), hint=hint)
        if not args.session.strip():
            raise UsageError("--session needs a name, e.g. -s review")
        fmt = args.format or self.setting("format")[0]
        if args.json and args.format in ("code", "text"):
            raise UsageError(f"--json shows the answer as JSON; drop -f {args.format} or --json")
        schema = self._schema(args)
        overrides = self._cell_overrides(args)
        models = self._compared(args)
        question = self._question(cell, raw=args.raw, error=args.error)
        question = self._attach(question, name_list(args.attach, option="--with", example="df,model"))
        tools = self._tools(name_list(args.tools, option="--tools", example="f,g"), notebook=args.notebook)
        images = self._images(args.image, args.session, overrides.get("model"))
        if len(models) > 1:
            self._compare(args, models, question, images, overrides)
            return
        if args.dry_run:
            self._dry_run(args, question, images, tools, overrides)
            return
        bot = self.session(args.session)  # made only now: bad input leaves no empty session behind
        for made in tools:
            bot.tools.add(made)
        if args.new:
            bot.reset()
        if args.json:
            overrides = _ask_for_json(question, overrides, bot.system)
        if args.logprobs:
            overrides.update(logprobs=True, top_logprobs=LOGPROBS_ALTERNATIVES)
        self._note_demo()
        self._note_cost_limit([overrides.get("model") or bot.model])
        # With --logprobs the token view follows the answer: the answer must not be swapped into one output
        with self._sink("json" if args.json else fmt, schema=schema, own_cell=not args.logprobs) as sink:
            try:
                reply = bot.ask(question, images=images, sink=sink, history=not args.no_history, schema=schema,
                                **overrides)
            except ChatError as error:
                raise shown_in_one_line(_in_magic_terms(error)) from None
        self.shell.user_ns["_chat"] = reply.text if schema is None else reply.parsed
        if args.logprobs and reply.logprobs:
            self._show_logprobs(reply.logprobs)

    plain_help(chat)  # %%chat? shows "usage: %%chat ...", no reST

    def _cell_overrides(self, args: Any) -> dict[str, Any]:
        overrides: dict[str, Any] = {}
        for name, option in (("temperature", "--temperature"), ("top_p", "--top-p"),
                             ("max_tokens", "--max-tokens"), ("seed", "--seed")):
            value = getattr(args, name)
            if value is not None:
                overrides[name] = self.check(name, value, option)
        models = model_list(args.model)
        if len(models) == 1:
            overrides["model"] = models[0]
        if args.system is not None:
            overrides["system"] = args.system
        if args.json:
            overrides["response_format"] = {"type": "json_object"}
        return overrides

    def _question(self, cell: str, *, raw: bool, error: bool) -> str:
        question = cell.strip("\n")
        if not raw:
            try:
                question = expand(question, self.shell.user_ns, self.shell.user_global_ns)
            except ExpansionError as failure:
                raise shown_in_one_line(failure) from None
        if error:
            from .tracebacks import last_error_block

            block = last_error_block(self.shell)
            if block is None:
                raise UsageError("--error: no exception has been raised in this kernel yet; run the "
                                 "failing cell first (nothing was sent)")
            question = (question.strip() or ERROR_QUESTION) + "\n\n" + block
        if not question.strip():
            raise UsageError("the cell is empty: write the question under %%chat (nothing was sent)")
        return question

    def _attach(self, question: str, names: list[str]) -> str:
        """The question with ``--with`` summaries of notebook values after it."""
        if not names:
            return question
        from .summaries import UnknownName, attachment

        try:
            return f"{question}\n\n{attachment(names, self.shell.user_ns)}"
        except UnknownName as error:
            raise UsageError(f"--with: {error} (nothing was sent)") from None

    def _tools(self, names: list[str], *, notebook: bool) -> list[Any]:
        """Tools for ``--tools`` (the notebook's functions) and ``--notebook`` (the built-in ones)."""
        if not names and not notebook:
            return []
        from .kernel_tools import function_tools, notebook_tools

        try:
            made = function_tools(names, self.shell.user_ns)
        except ValueError as error:
            raise UsageError(f"--tools: {error} (nothing was sent)") from None
        return made + (notebook_tools(self.shell) if notebook else [])

    def _images(self, sources: list[str], session: str, model: str | None) -> list[Any]:
        """ImageRefs for the -i sources, made first so a bad image stops the cell before any change."""
        if not sources:
            return []
        from ..core.chatbot import load_images
        from ..core.models import model_info

        objects = [self._resolve_image(source) for source in sources]
        if session in self.sessions:
            bot = self.sessions.get(session)
            model, window = model or bot.model, bot.context_window
        else:
            want = self._desired(session)
            model, window = model or want["model"], want["context_window"]
        info = model_info(model, context_window=window)
        try:
            return load_images(objects, model=info)
        except ChatError as error:
            raise shown_in_one_line(error) from None

    def _resolve_image(self, source: str) -> Any:
        """A variable (or attribute path) from the notebook if ``source`` names one, else the string."""
        root, _, rest = source.partition(".")
        if not root.isidentifier() or root not in self.shell.user_ns:
            return source
        value = self.shell.user_ns[root]
        for attribute in filter(None, rest.split(".")):
            if not attribute.isidentifier() or not hasattr(value, attribute):
                return source  # e.g. "plot.png" with a variable named plot: it is a file name
            value = getattr(value, attribute)
        return value

    def _schema(self, args: Any) -> Any:
        """The ``--schema`` object from the notebook, checked before anything is sent (None without it)."""
        if args.schema is None:
            return None
        for clash, given in (("--json", args.json), (f"-f {args.format}", args.format in ("code", "text"))):
            if given:
                raise UsageError(f"--schema shows the answer as its schema's object; drop {clash} or --schema")
        from ..core.structured import answer_schema
        from .arguments import namespace_value

        value = namespace_value(args.schema, self.shell.user_ns, option="--schema",
                                example="class Movie(BaseModel): ...")
        try:
            answer_schema(value)
        except ChatError as error:
            raise UsageError(f"--schema {args.schema}: {error} (nothing was sent)") from None
        return value

    def _sink(self, fmt: str, *, schema: Any = None, own_cell: bool = True) -> LiveSink:
        """Live Markdown in a notebook (plain text in a terminal), plain text with -f text, the
        formatted answer with -f code and --json, the parsed object with --schema."""
        if schema is not None:
            from .publish import in_notebook_kernel
            from .structured_view import StructuredSink

            return StructuredSink(in_kernel=in_notebook_kernel(), footer=self.setting("footer")[0])
        from .display import make_sink

        kind = {"markdown": "auto", "text": "print"}.get(fmt, fmt)
        code_cells = None
        if kind == "code":  # -f code puts the code into the cell below: what it put there, per cell
            from .code_cell import CodeCells

            code_cells = self.__dict__.setdefault("_code_cells", CodeCells())
        return make_sink(kind=kind, footer=self.setting("footer")[0],  # type: ignore[arg-type]
                         cell=current_cell() if own_cell else None,
                         code_cells=code_cells)

    # -- seeing into answers: --dry-run, comparing models, --logprobs, the cost limit ------------
    def _compared(self, args: Any) -> list[str]:
        """The models of ``-m``; with several, the options that show one answer are refused."""
        models = model_list(args.model)
        if len(models) > 1:
            clashes = [option for option, given in (
                ("--json", args.json), ("--schema", args.schema), ("--logprobs", args.logprobs),
                (f"-f {args.format}", args.format in ("code", "text")), ("--tools", args.tools),
                ("--notebook", args.notebook)) if given]
            if clashes:
                raise UsageError(f"{clashes[0]} shows one answer: ask one model at a time with it, or drop it to "
                                 "compare models (nothing was sent)")
        return models

    def _compare(self, args: Any, models: list[str], question: str, images: list[Any],
                 overrides: dict[str, Any]) -> None:
        """``-m a -m b``: the answers side by side, each model in its session SESSION/MODEL (compare.py)."""
        from .compare import ask_models

        if not args.dry_run:
            self._note_demo()
            self._note_cost_limit(models)
        self.shell.user_ns["_chat"] = ask_models(
            self, models, question, session=args.session, new=args.new, history=not args.no_history,
            dry_run=args.dry_run, footer=self.setting("footer")[0], images=images, **overrides)

    def _dry_run(self, args: Any, question: str, images: list[Any], tools: list[Any],
                 overrides: dict[str, Any]) -> None:
        """``--dry-run``: what the question would send and cost, printed; nothing is sent or changed
        (``--new`` is estimated without the history, ``--tools`` beside the session's tools)."""
        if args.schema is not None:
            raise UsageError("--dry-run prices a plain question: drop --schema (the tokens a schema adds are "
                             "counted by the endpoint alone)")
        bot = self.session(args.session)
        if args.json:
            overrides = _ask_for_json(question, overrides, bot.system)
        try:
            estimate = bot.estimate(question, images=images, history=not (args.no_history or args.new),
                                    tools=tools or None, **overrides)
        except ChatError as error:
            raise shown_in_one_line(error) from None
        print(estimate)
        self.shell.user_ns["_chat"] = estimate

    def _note_cost_limit(self, models: list[str]) -> None:
        """Once per kernel: a model with a window over 200k tokens and no cost limit set gets the
        suggestion to set one (a long conversation on a 1M-token model can cost dollars a question)."""
        if self._cost_noted or self.setting("max_cost_per_question")[0] is not None:
            return
        from ..core.models import model_info

        for model in models:
            window = model_info(model, context_window=self.setting("context_window")[0]).context_window
            if window > LONG_WINDOW:
                self._cost_noted = True
                print(f"Note: {model} has a {window:,}-token window, so a long conversation can cost dollars per "
                      "question. To refuse questions that could cost more than a limit: "
                      "%config ChatMagics.max_cost_per_question = 0.50")
                return

    def _show_logprobs(self, logprobs: list[dict[str, Any]]) -> None:
        """The token view below the answer (in a notebook; a terminal has the footer's figures)."""
        from .publish import in_notebook_kernel

        if in_notebook_kernel():
            from IPython.display import display

            from .logprobs_view import logprobs_bundle

            display(logprobs_bundle(logprobs), raw=True)

    def _note_demo(self) -> None:
        if self.demo_url and not self._demo_noted:
            self._demo_noted = True
            print(f"Offline demo: no API key or base URL is set, so answers come from the built-in demo "
                  f"server at {self.demo_url}, not from a model. Set OPENAI_API_KEY (or OPENAI_BASE_URL "
                  "for a local server) to talk to a real model.")

    # -- %chat ------------------------------------------------------------------------------------
    @line_magic("chat")
    def chat_command(self, line: str) -> None:
        commands.run(self, line)

    chat_command.__doc__ = commands.HELP  # %chat? lists every command with its arguments

    def set_setting(self, name: str, value: Any, session: str | None = None) -> None:
        """``%chat model`` / ``%chat system``: for every session (over env and config), or one."""
        if session is None:
            self._runtime[name] = value
            for pins in self._pins.values():
                pins.pop(name, None)
            where = "all sessions"
        else:
            self.session(session, create=session == DEFAULT_SESSION)
            self._pins.setdefault(session, {})[name] = value
            where = f"session {session!r}"
        for each, bot in self.sessions.items():
            self.sync(each, bot)
        print(f"{name} for {where}: {value!r}" if value is not None else f"{name} cleared for {where}")

    def pin(self, session: str, **values: Any) -> None:
        """Give ``session`` its own model / system, kept over the shared settings."""
        self._pins.setdefault(session, {}).update(values)

    def answered_by_demo(self, bot: Chatbot) -> bool:
        """True when ``bot`` talks to the offline demo server (no model: its replies cost nothing)."""
        return self.demo_url is not None and self._client is not None and bot.client is self._client

    # -- stopping -----------------------------------------------------------------------------------
    def close(self) -> None:
        """Stop everything the magics started (``%unload_ext``, and interpreter exit via atexit):
        answers being streamed, the panels opened by ``%chat panel``, the store (closing it folds
        the WAL back into the file), the offline demo server, and every ``llmchat-*`` thread (the
        preload, panel model fetches). Conversations in memory stay as they are. Safe to call twice."""
        for bot in self._sessions.bots() if self._sessions is not None else []:
            bot.stop()  # a panel's answer ends now, its partial text kept
        panels, self.panels = self.panels, []
        for panel in panels:
            panel.close()  # waits for its answer thread
        if self._store is not None:
            self._store.close()
            self._store = self._store_setting = None
        server = sys.modules.get("jupyter_llmchat.server")
        if server is not None:  # imported only if the demo server was ever wanted
            server.stop_demo_server()
        self.demo_url = None
        self._client = self._client_ident = None
        _join_threads("llmchat-", timeout=THREAD_JOIN_TIMEOUT)


# -- helpers --------------------------------------------------------------------------------------
class _DemoMarker:
    """A reply listener, first in its bot's list: a reply the offline demo server wrote is marked
    ``demo`` and costs nothing before the ledger, the footer or the panel see it."""

    def __init__(self, magics: ChatMagics, bot: Chatbot) -> None:
        self._magics = weakref.ref(magics)
        self._bot = weakref.ref(bot)  # listeners must not keep sessions alive

    def __call__(self, reply: Reply) -> None:
        magics, bot = self._magics(), self._bot()
        # A prefixed model ("ollama:...") went to its provider, not to the demo server.
        provider = (reply.request or {}).get("provider")
        if magics is not None and bot is not None and not provider and magics.answered_by_demo(bot):
            reply.demo = True
            reply.cost = 0.0


def _join_threads(prefix: str, *, timeout: float) -> None:
    """Wait (``timeout`` seconds in all) for our threads, named ``prefix...``, once told to stop.
    A thread still blocked on an endpoint after that is a daemon: it does not hold the exit."""
    deadline = time.monotonic() + timeout
    for thread in threading.enumerate():
        if thread.name.startswith(prefix) and thread is not threading.current_thread():
            thread.join(max(0.0, deadline - time.monotonic()))


def _hide_key(config: Any) -> None:
    """Make the API key in a traitlets Config a HiddenKey (same text, hidden repr), in place."""
    section = dict.get(config, ChatMagics.__name__) if isinstance(config, dict) else None
    if not isinstance(section, dict):
        return
    key = dict.get(section, "api_key")
    if isinstance(key, str) and not isinstance(key, HiddenKey):
        dict.__setitem__(section, "api_key", HiddenKey(key))


def _apply(bot: Chatbot, key: str, value: Any) -> None:
    """Set one session setting on ``bot``."""
    if key == "model":
        bot.model = value
    elif key == "system":
        bot.system = value
    elif key in REQUEST_SETTINGS:
        if value is None:
            bot.params.pop(key, None)
        else:
            bot.params[key] = value
    elif key == "max_history":
        from collections import deque

        conversation = bot.conversation
        if conversation.max_history != value:
            conversation.messages = deque(conversation.messages, maxlen=value)
    else:  # prompt_token_limit, context_window
        setattr(bot, key, value)


def _in_magic_terms(error: ChatError) -> ChatError:
    """A refusal by the cost limit says how to raise it with %config (the core's says the attribute)."""
    from ..core.errors import CostLimitError
    from ..core.estimate import raised_limit

    if not isinstance(error, CostLimitError):
        return error
    return CostLimitError(
        f"{error.figures}: raise it with %config ChatMagics.max_cost_per_question = {raised_limit(error.cost):g}, "
        "lower --max-tokens, or start afresh with --new (nothing was sent)",
        figures=error.figures, cost=error.cost, limit=error.limit)


JSON_INSTRUCTION = "Respond with one valid JSON object."


def _ask_for_json(question: str, overrides: dict[str, Any], system: str | None) -> dict[str, Any]:
    """OpenAI's JSON mode rejects prompts that never mention JSON: say it in the system message."""
    system = overrides.get("system", system) or ""
    if "json" in (question + system).lower():
        return overrides
    return {**overrides, "system": f"{system}\n\n{JSON_INSTRUCTION}".strip()}


def load_ipython_extension(ipython: Any) -> None:
    """Register ChatMagics and make it configurable with ``%config ChatMagics``; at interpreter
    exit (or ``%unload_ext``) it stops what it started."""
    magics = ChatMagics(ipython)
    ipython.register_magics(magics)
    if magics not in ipython.configurables:
        ipython.configurables.append(magics)
    atexit.register(magics.close)
    if magics.preload:
        magics.preload_thread = threading.Thread(target=_preload, args=(magics.model,), name="llmchat-preload",
                                                 daemon=True)
        magics.preload_thread.start()


def _preload(model: str) -> None:
    """Import what the first %%chat needs and load its model's token vocabulary (seconds, once).

    Runs in the background so ``%load_ext`` itself stays light; a %%chat that comes first simply
    finishes the same imports itself. Failures are left for that %%chat to report.
    """
    try:
        from ..core.chatbot import warm_up
        from ..core.client import import_sdk
        from . import display  # noqa: F401 - the import is the work

        import_sdk()
        if any(thread.name == "llmchat-request" for thread in threading.enumerate()):
            return  # a %%chat in the same cell is asking: loading the vocabulary now would delay its
            # first text (bench_first_text.py); its own count loads it once that text is out
        warm_up(model)
    except Exception:
        pass


def unload_ipython_extension(ipython: Any) -> None:
    """Stop what the magics started (``ChatMagics.close``), then remove them, the config entry and
    ``_chat`` (conversations go with them)."""
    manager = ipython.magics_manager
    magics = manager.registry.pop(ChatMagics.__name__, None)
    if isinstance(magics, ChatMagics):
        magics.close()
        atexit.unregister(magics.close)
    for kind in ("line", "cell"):
        table = manager.magics[kind]
        if "chat" in table and getattr(table["chat"], "__self__", None) is magics:
            del table["chat"]
    if magics in ipython.configurables:
        ipython.configurables.remove(magics)
    ipython.user_ns.pop("_chat", None)


def current() -> ChatMagics | None:
    """The loaded ChatMagics of the running IPython, if any (the panel and store reach sessions here)."""
    from IPython import get_ipython

    shell = get_ipython()
    return shell.magics_manager.registry.get(ChatMagics.__name__) if shell is not None else None


__all__ = [
    "ChatMagics",
    "current",
    "load_ipython_extension",
    "unload_ipython_extension",
]
