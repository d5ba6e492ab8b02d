"""The Store: one facade over the store file for conversations, the response cache and the ledger.

``Store(path)`` opens the file (database.py: WAL, private, migrated); sessions and their messages
are rows of conversations.py, cached answers of cache.py, usage of ledger.py. ``attach`` puts a
Recorder on a Chatbot: each message is written in its own transaction as the conversation
appends it, and each finished reply adds a ledger row.

Each time a fresh Chatbot starts recording under a session name, or a recorded one is reset, a
new conversation row begins, so re-running a notebook or resetting never overwrites what was
saved before; ``load(name)`` returns the newest. The API key is never stored: requests come from
``PreparedRequest.as_request()``, which has none, and a bot's client settings (key, base URL) are
not saved at all.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import sqlite3
import weakref
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from ..core.batch_jobs import MemoryBatchJobs
from ..core.errors import ChatError
from ..core.messages import Message
from . import ledger, transcript
from .batch_jobs import StoreBatchJobs
from .cache import ResponseCache
from .conversations import (
    SELECT_CONVERSATION,
    SavedConversation,
    check_name,
    conversation_from_row,
    insert_conversation,
    insert_message,
    message_from_row,
    update_state,
)
from .database import BUSY_TIMEOUT, MEMORY, STORE_ENV, Database, default_path
from .embeddings import EmbeddingStore
from .errors import StoreError, StoreWarning
from .map_rows import MapRows
from .migrations import MIGRATIONS

if TYPE_CHECKING:
    from ..core.chatbot import Chatbot
    from ..core.reply import Reply

SCHEMA_VERSION = MIGRATIONS.version
SETTINGS = ("max_history", "context_window", "prompt_token_limit")

__all__ = ["MEMORY", "SCHEMA_VERSION", "STORE_ENV", "Recorder", "SavedConversation", "Store", "StoreError",
           "StoreWarning", "default_path", "open_store"]


class Store:
    """A SQLite file holding conversations, cached replies and the usage ledger.

    ``path``: a file, None for ``default_path()``, or ``":memory:"`` to keep nothing on disk (the
    same code, so the ledger and the cache behave the same). ``cache=True`` turns the response
    cache on for every bot attached to this store (else pass ``cache=True`` to ``attach``);
    ``cache_random=True`` also caches requests whose temperature is not 0, which are otherwise
    never cached because the same request may deserve a new answer. Thread-safe.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None, *, cache: bool = False,
                 cache_random: bool = False, busy_timeout: float = BUSY_TIMEOUT) -> None:
        self.database = Database(path, busy_timeout=busy_timeout)
        self.path: str = self.database.path
        self.cache_default = cache
        self.cache_random = cache_random
        self.busy_timeout = busy_timeout
        self._recorders: weakref.WeakKeyDictionary[Chatbot, Recorder] = weakref.WeakKeyDictionary()

    @property
    def in_memory(self) -> bool:
        """True for ``":memory:"``: nothing outlives the process."""
        return self.database.in_memory

    # -- plumbing ------------------------------------------------------------------------------
    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: committed on success, rolled back on any error (or interrupt)."""
        with self.database.transaction() as db:
            yield db

    def query(self, sql: str, args: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        """Rows of a read-only query, as dicts."""
        return self.database.query(sql, args)

    def close(self) -> None:
        """Stop recording and close the file (a checkpoint folds the WAL back into it)."""
        for bot, recorder in list(self._recorders.items()):
            recorder.detach()
            if isinstance(bot.cache, ResponseCache) and bot.cache.database is self.database:
                bot.cache = None  # a closed file cannot answer lookups
            if isinstance(bot.embedding_cache, EmbeddingStore) and bot.embedding_cache.database is self.database:
                bot.embedding_cache = None
            if isinstance(bot.batch_jobs, StoreBatchJobs) and bot.batch_jobs.database is self.database:
                bot.batch_jobs = MemoryBatchJobs()  # nor keep jobs
            if isinstance(bot.row_store, MapRows) and bot.row_store.database is self.database:
                bot.row_store = None  # nor map rows
        self.database.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store({self.path!r})"

    # -- conversations -------------------------------------------------------------------------
    def new_conversation(self, session: str, *, model: str, system: str | None = None,
                         params: dict[str, Any] | None = None,
                         settings: dict[str, Any] | None = None) -> int:
        """Start a new conversation under ``session`` (it becomes the one ``load`` returns)."""
        check_name(session)
        with self.database.transaction() as db:
            return insert_conversation(db, session, model, system, params, settings)

    def add_message(self, conversation: int, message: Message, *,
                    state: dict[str, Any] | None = None) -> None:
        """Append ``message`` in one transaction; ``state`` (model, system, params, settings) too."""
        with self.database.transaction() as db:
            insert_message(db, conversation, message)
            if state:
                update_state(db, conversation, state)

    def update_conversation(self, conversation: int, **state: Any) -> None:
        """Save a new system message, model, params or settings for ``conversation``."""
        with self.database.transaction() as db:
            update_state(db, conversation, state)

    def sessions(self) -> list[SavedConversation]:
        """The newest conversation of every session, most recently updated first."""
        rows = self.query(f"{SELECT_CONVERSATION} WHERE c.id = (SELECT MAX(id) FROM conversations "
                          "WHERE session = c.session) ORDER BY updated DESC, c.id DESC")
        return [conversation_from_row(row) for row in rows]

    def conversations(self, session: str) -> list[SavedConversation]:
        """Every conversation saved under ``session``, oldest first (earlier runs and resets)."""
        rows = self.query(f"{SELECT_CONVERSATION} WHERE c.session = ? ORDER BY c.id", (session,))
        return [conversation_from_row(row) for row in rows]

    def conversation(self, session: str, conversation: int | None = None) -> SavedConversation:
        """The newest conversation of ``session`` (or the one with id ``conversation``)."""
        if conversation is None:
            rows = self.query(f"{SELECT_CONVERSATION} WHERE c.session = ? ORDER BY c.id DESC LIMIT 1",
                              (session,))
        else:
            rows = self.query(f"{SELECT_CONVERSATION} WHERE c.session = ? AND c.id = ?",
                              (session, conversation))
        if not rows:
            known = ", ".join(c.session for c in self.sessions()) or "none yet"
            which = f"session {session!r}" + (f" conversation {conversation}" if conversation else "")
            raise StoreError(f"no saved {which} in {self.path} (saved sessions: {known})")
        return conversation_from_row(rows[0])

    def messages(self, conversation: int) -> list[Message]:
        """The messages of ``conversation`` in the order they were appended."""
        rows = self.query("SELECT * FROM messages WHERE conversation = ? ORDER BY id", (conversation,))
        return [message_from_row(row) for row in rows]

    def delete(self, session: str) -> int:
        """Forget every conversation of ``session`` (the ledger keeps its rows); returns how many."""
        with self.database.transaction() as db:
            return db.execute("DELETE FROM conversations WHERE session = ?", (session,)).rowcount

    # -- bots ----------------------------------------------------------------------------------
    def attach(self, bot: Chatbot, session: str, *, cache: bool | None = None,
               cache_random: bool | None = None, conversation: int | None = None) -> Recorder:
        """Record ``bot`` under ``session`` from now on: each message, system change and reply.

        A fresh bot starts a new conversation at its first message, so the previous one stays
        loadable; ``conversation=`` continues a saved one instead (``load`` does that). ``cache``
        turns the response cache on or off for this bot (None: the store's default).
        """
        check_name(session)
        old = self._recorders.get(bot)
        if old is not None:
            old.detach()
        recorder = Recorder(self, bot, session, conversation)
        self._recorders[bot] = recorder
        bot.batch_jobs = self.batch_jobs(session=session)  # map(mode="batch") jobs outlive the kernel
        bot.embedding_cache = self.embedding_cache()  # vectors are deterministic: always kept, never paid twice
        bot.row_store = self.map_rows()  # map() answers are kept as they arrive: a rerun asks only what is missing
        use_cache = self.cache_default if cache is None else cache
        if use_cache:
            bot.cache = self.response_cache(cache_random=cache_random)
        elif cache is False:
            bot.cache = None
        return recorder

    def recorder(self, bot: Chatbot) -> Recorder | None:
        """The recorder writing ``bot`` to this store, if any."""
        return self._recorders.get(bot)

    def restore(self, session: str, bot: Chatbot, *, conversation: int | None = None) -> SavedConversation:
        """Put the saved conversation into ``bot`` exactly (model, params, settings, system,
        messages with images, status and usage), without sending anything."""
        saved = self.conversation(session, conversation)
        messages = self.messages(saved.id)
        old = self._recorders.get(bot)
        if old is not None:
            old.detach()  # what is restored is already saved: do not write it twice
        bot.context_window = saved.settings.get("context_window")
        bot.prompt_token_limit = saved.settings.get("prompt_token_limit")
        bot.model = saved.model
        bot.params = dict(saved.params)
        bot.conversation.system = saved.system
        bot.conversation.messages = deque(messages, maxlen=saved.settings.get("max_history"))
        return saved

    def load(self, session: str, bot: Chatbot, *, conversation: int | None = None,
             cache: bool | None = None) -> Recorder:
        """Restore ``session`` into ``bot`` and keep recording it into the same conversation."""
        saved = self.restore(session, bot, conversation=conversation)
        return self.attach(bot, session, cache=cache, conversation=saved.id)

    def chatbot(self, session: str, *, conversation: int | None = None, cache: bool | None = None,
                **options: Any) -> Chatbot:
        """A new Chatbot holding the saved ``session``, still recording. ``options`` are Chatbot
        arguments the store does not keep (api_key, base_url, client, timeout, ...)."""
        from ..core.chatbot import Chatbot  # the SDK loads only when a bot is made

        saved = self.conversation(session, conversation)
        settings = {key: saved.settings.get(key) for key in SETTINGS}
        bot = Chatbot(saved.model, **{**settings, **options})
        self.load(session, bot, conversation=saved.id, cache=cache)
        return bot

    # -- cache and ledger ----------------------------------------------------------------------
    def response_cache(self, *, cache_random: bool | None = None) -> ResponseCache:
        """A response cache kept in this store (see cache.py)."""
        return ResponseCache(self.database,
                             cache_random=self.cache_random if cache_random is None else cache_random)

    def batch_jobs(self, *, session: str | None = None) -> StoreBatchJobs:
        """The Batch API jobs kept in this store (``%chat batches``); new ones are tagged ``session``."""
        return StoreBatchJobs(self.database, session=session)

    def map_rows(self) -> MapRows:
        """The rows ``Chatbot.map`` answered, kept in this store so the same call resumes (map_rows.py)."""
        return MapRows(self.database)

    def embedding_cache(self) -> EmbeddingStore:
        """The vectors ``Chatbot.embed`` paid for, kept in this store (see embeddings.py)."""
        return EmbeddingStore(self.database)

    def record_reply(self, reply: Reply, *, session: str | None = None,
                     conversation: int | None = None) -> None:
        """Add one ledger row for ``reply`` (see ledger.py)."""
        ledger.record(self.database, reply, session=session, conversation=conversation)

    def usage_summary(self, by: tuple[str, ...] | str = ("session", "model", "day"), *,
                      since: float | None = None, session: str | None = None) -> list[ledger.UsageRow]:
        """Ledger totals grouped ``by`` any of session, model, day (local dates)."""
        return ledger.usage_summary(self.database, by, since=since, session=session)

    # -- export and import (the transcript format of transcript.py, plus session and settings) ----
    def export_json(self, session: str, *, conversation: int | None = None) -> dict[str, Any]:
        """The saved conversation as a transcript dict (``%chat load PATH`` reads it too)."""
        saved = self.conversation(session, conversation)
        return {"format": transcript.FORMAT, "version": transcript.VERSION,
                "saved": _dt.datetime.fromtimestamp(saved.updated, _dt.timezone.utc).isoformat(timespec="seconds"),
                "session": saved.session, "model": saved.model, "system": saved.system,
                "params": saved.params, "settings": saved.settings,
                "messages": [message.to_dict() for message in self.messages(saved.id)]}

    def export_markdown(self, session: str, *, conversation: int | None = None) -> str:
        """The saved conversation as a Markdown transcript (transcript.to_markdown)."""
        from ..core.chatbot import Chatbot

        saved = self.conversation(session, conversation)
        bot = Chatbot(saved.model, base_url="http://127.0.0.1:9/v1")  # never asked: only rendered
        self.restore(session, bot, conversation=saved.id)
        return transcript.to_markdown(bot)

    def import_json(self, data: dict[str, Any] | str, *, session: str | None = None) -> int:
        """Save a transcript (dict or JSON text) as the newest conversation of ``session`` (default:
        the session it was exported from); returns the new conversation's id."""
        try:
            data = transcript.check(json.loads(data) if isinstance(data, str) else data, "import")
            messages = transcript.messages_from(data, "import")
        except json.JSONDecodeError as error:
            raise StoreError(f"cannot import: invalid JSON at line {error.lineno} ({error.msg})") from None
        except ChatError as error:
            raise StoreError(f"cannot import: {error}") from None
        name = session or data.get("session")
        if not name:
            raise StoreError("cannot import: the transcript names no session; pass session=NAME")
        check_name(name)
        with self.database.transaction() as db:
            conversation = insert_conversation(db, name, data["model"], data.get("system"),
                                               data.get("params"), data.get("settings"))
            for message in messages:
                insert_message(db, conversation, message)
        return conversation


class Recorder:
    """Writes one Chatbot into the store: listens to its conversation and its replies."""

    def __init__(self, store: Store, bot: Chatbot, session: str, conversation: int | None) -> None:
        self.store = store
        self.session = session
        self.conversation_id = conversation
        self._saved: dict[str, Any] | None = None  # the settings last written, to skip rewriting them
        self._bot = weakref.ref(bot)  # the store must not keep notebooks' bots alive
        bot.conversation.listeners.append(self._on_event)
        bot.reply_listeners.append(self._on_reply)
        self._listening_to = bot.conversation

    def detach(self) -> None:
        """Stop recording (what was written stays)."""
        bot = self._bot()
        if bot is not None:
            _remove(self._listening_to.listeners, self._on_event)
            _remove(bot.reply_listeners, self._on_reply)
            if self.store._recorders.get(bot) is self:
                del self.store._recorders[bot]

    def state(self) -> dict[str, Any]:
        """The bot's settings now: saved with every message so a load restores them."""
        bot = self._bot()
        if bot is None:
            return {}
        settings = {"max_history": bot.conversation.max_history, "context_window": bot.context_window,
                    "prompt_token_limit": bot.prompt_token_limit}
        params = {key: value for key, value in bot.params.items() if transcript.is_json(value)}
        return {"model": bot.model, "system": bot.system, "params": params, "settings": settings}

    def _ensure_conversation(self) -> int:
        if self.conversation_id is None:
            state = self.state()
            self.conversation_id = self.store.new_conversation(
                self.session, model=state["model"], system=state["system"], params=state["params"],
                settings=state["settings"])
            self._saved = state
        return self.conversation_id

    def _on_event(self, event: str, message: Message | None) -> None:
        try:
            self._save_event(event, message)
        except StoreError as error:
            what = {"append": "save a message", "clear": "start a new conversation",
                    "system": "save the system message"}.get(event, f"save {event!r}")
            self.store.database.warn_once(f"{what} of session {self.session!r}", error)

    def _save_event(self, event: str, message: Message | None) -> None:
        if event == "append" and message is not None:
            conversation = self._ensure_conversation()
            state = self.state()
            self.store.add_message(conversation, message, state=state if state != self._saved else None)
            self._saved = state
        elif event == "clear":
            if self.conversation_id is not None:  # a reset starts a new conversation; the old stays
                self.conversation_id = None
                self._ensure_conversation()
        elif event == "system":
            if self.conversation_id is None:
                self._ensure_conversation()
            else:
                self.store.update_conversation(self.conversation_id, system=message.text if message else None)
                self._saved = None

    def _on_reply(self, reply: Reply) -> None:
        try:
            self.store.record_reply(reply, session=self.session, conversation=self.conversation_id)
        except StoreError as error:
            self.store.database.warn_once(f"add a ledger row for session {self.session!r}", error)

    def __repr__(self) -> str:
        return f"Recorder(session={self.session!r}, conversation={self.conversation_id})"


def open_store(store: Store | str | os.PathLike[str] | None = None) -> Store:
    """``store`` itself if it is a Store, else a Store at that path (None: the default path)."""
    return store if isinstance(store, Store) else Store(store)


def _remove(items: list[Any], item: Any) -> None:
    for index, candidate in enumerate(items):
        if candidate == item:
            del items[index]
            return
