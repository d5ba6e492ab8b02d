"""The SQLite store: conversations that outlive the kernel, the response cache and the usage ledger.

One file (default: ``store.sqlite3`` under the user's data directory; ``JUPYTER_LLMCHAT_STORE`` or
``Store(path)`` to choose; ``":memory:"`` to keep nothing), created readable by its owner only,
in WAL mode so a kernel killed mid-answer leaves it readable and two kernels can write at once.
Each message is written in its own transaction as the conversation appends it.

A *session* is a name ("default", "review", ...). Each time a fresh Chatbot starts recording
under a name, or a recorded one is reset, a new *conversation* row begins, so re-running a
notebook or resetting never overwrites what was saved before; ``load(name)`` returns the newest.
The API key is never stored: requests come from ``PreparedRequest.as_request()``, which has none,
and a bot's client settings (key, base URL) are not saved at all.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import sqlite3
import threading
import time
import warnings
import weakref
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core.errors import ChatError
from ..core.messages import Message
from .transcript import is_json

if TYPE_CHECKING:
    from ..core.chatbot import Chatbot
    from ..core.reply import Reply
    from .cache import ResponseCache
    from .ledger import UsageRow

STORE_ENV = "JUPYTER_LLMCHAT_STORE"
MEMORY = ":memory:"
SCHEMA_VERSION = 1
BUSY_TIMEOUT = 30.0  # seconds to wait for another kernel's write lock before failing
SETTINGS = ("max_history", "context_window", "prompt_token_limit")

SCHEMA = """
CREATE TABLE IF NOT EXISTS conversations (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    session TEXT NOT NULL,
    created REAL NOT NULL,
    updated REAL NOT NULL,
    model TEXT NOT NULL,
    system TEXT,
    params TEXT NOT NULL DEFAULT '{}',
    settings TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS conversations_session ON conversations (session, id);
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    conversation INTEGER NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    role TEXT NOT NULL,
    text TEXT NOT NULL,
    tokens INTEGER NOT NULL,
    images TEXT NOT NULL DEFAULT '[]',
    name TEXT,
    status TEXT NOT NULL,
    model TEXT,
    usage TEXT,
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_conversation ON messages (conversation, id);
CREATE TABLE IF NOT EXISTS cache (
    key TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    reply TEXT NOT NULL,
    created REAL NOT NULL,
    hits INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS ledger (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    session TEXT,
    conversation INTEGER,
    model TEXT NOT NULL,
    time REAL NOT NULL,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    cached_tokens INTEGER NOT NULL,
    cost REAL,
    saved REAL,
    from_cache INTEGER NOT NULL,
    status TEXT NOT NULL,
    total_time REAL
);
CREATE INDEX IF NOT EXISTS ledger_time ON ledger (time);
"""


# A conversation row with its message count; "updated" is its last change: settings or a message.
_SELECT_CONVERSATION = (
    "SELECT c.id, c.session, c.created, c.model, c.system, c.params, c.settings, "
    "MAX(c.updated, COALESCE((SELECT MAX(created) FROM messages m WHERE m.conversation = c.id), 0)) "
    "AS updated, (SELECT COUNT(*) FROM messages m WHERE m.conversation = c.id) AS messages "
    "FROM conversations c")


class StoreError(ChatError):
    """The store cannot do what was asked (unknown session, bad file, bad import data)."""


class StoreWarning(UserWarning):
    """A write to the store failed while chatting: the conversation goes on in memory."""


def warn_failed(what: str, error: Exception) -> None:
    """Tell the user once per failure; a full disk must not cost them the answer on screen."""
    warnings.warn(f"the store could not {what} ({type(error).__name__}: {error}); the conversation "
                  "continues in memory, see Store.path", StoreWarning, stacklevel=3)


def default_path() -> Path:
    """``$JUPYTER_LLMCHAT_STORE`` if set, else ``store.sqlite3`` in the user's data directory."""
    chosen = os.environ.get(STORE_ENV)
    if chosen:
        return Path(chosen).expanduser()
    import platformdirs  # only when a default path is needed

    return Path(platformdirs.user_data_dir("jupyter_llmchat")) / "store.sqlite3"


@dataclass(frozen=True)
class SavedConversation:
    """One saved conversation: a session's run from a fresh start (or a reset) onward."""

    id: int
    session: str
    created: float
    updated: float
    model: str
    system: str | None
    params: dict[str, Any]
    settings: dict[str, Any]
    messages: int = 0


class Store:
    """A SQLite file holding conversations, cached replies and the usage ledger.

    ``cache=True`` turns the response cache on for every bot attached to this store (else pass
    ``cache=True`` to ``attach``); ``cache_random=True`` also caches requests whose temperature is
    not 0, which are otherwise never cached because the same request may deserve a new answer.
    Thread-safe: one connection guarded by a lock (the panel may ask from a worker thread).
    """

    def __init__(self, path: str | os.PathLike[str] | None = None, *, cache: bool = False,
                 cache_random: bool = False, busy_timeout: float = BUSY_TIMEOUT) -> None:
        self.path: str = MEMORY if path == MEMORY else str(Path(path).expanduser() if path else default_path())
        self.cache_default = cache
        self.cache_random = cache_random
        self.busy_timeout = busy_timeout
        self._lock = threading.RLock()
        self._recorders: weakref.WeakKeyDictionary[Chatbot, Recorder] = weakref.WeakKeyDictionary()
        if Path(self.path).is_dir():
            raise StoreError(f"cannot open the store {self.path}: it is a directory; give a file path "
                             f"such as {Path(self.path) / 'store.sqlite3'}")
        try:
            if self.path != MEMORY:
                _create_private(Path(self.path))
            self._db = sqlite3.connect(self.path, timeout=busy_timeout, isolation_level=None,
                                       check_same_thread=False)
            self._setup()
        except (OSError, sqlite3.DatabaseError) as error:
            if getattr(self, "_db", None) is not None:
                self._db.close()
            reason = error.strerror if isinstance(error, OSError) and error.strerror else error
            raise StoreError(f"cannot open the store {self.path}: {reason}; pass another path or "
                             f"move the file away") from None

    def _setup(self) -> None:
        db = self._db
        db.execute("PRAGMA foreign_keys = ON")
        if self.path != MEMORY:
            db.execute("PRAGMA journal_mode = WAL")
            # WAL + NORMAL: a commit survives the process being killed; only power loss can undo it.
            db.execute("PRAGMA synchronous = NORMAL")
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StoreError(f"the store {self.path} was written by a newer jupyter_llmchat "
                             f"(schema {version}); upgrade the package")
        if version < SCHEMA_VERSION:  # one transaction, so a second kernel never sees half a schema
            db.executescript(f"BEGIN IMMEDIATE; {SCHEMA} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;")

    # -- plumbing ------------------------------------------------------------------------------
    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: committed on success, rolled back on any error (or interrupt)."""
        with self._lock:
            db = self._db
            # IMMEDIATE takes the write lock now, so two kernels queue instead of deadlocking.
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:  # also when COMMIT itself failed (disk full, I/O error)
                    db.execute("ROLLBACK")
                raise

    def query(self, sql: str, args: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        """Rows of a read-only query, as dicts."""
        with self._lock:
            cursor = self._db.execute(sql, args)
            names = [column[0] for column in cursor.description]
            return [dict(zip(names, row)) for row in cursor.fetchall()]

    def close(self) -> None:
        """Stop recording and close the file (a checkpoint folds the WAL back into it)."""
        from .cache import ResponseCache

        for bot, recorder in list(self._recorders.items()):
            recorder.detach()
            if isinstance(bot.cache, ResponseCache) and bot.cache.store is self:
                bot.cache = None  # a closed file cannot answer lookups
        with self._lock:
            self._db.close()

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
        _check_name(session)
        with self.transaction() as db:
            return _insert_conversation(db, session, model, system, params, settings)

    def add_message(self, conversation: int, message: Message, *,
                    state: dict[str, Any] | None = None) -> None:
        """Append ``message`` in one transaction; ``state`` (model, system, params, settings) too."""
        with self.transaction() as db:
            _insert_message(db, conversation, message)
            if state:
                _update_state(db, conversation, state)

    def update_conversation(self, conversation: int, **state: Any) -> None:
        """Save a new system message, model, params or settings for ``conversation``."""
        with self.transaction() as db:
            _update_state(db, conversation, state)

    def sessions(self) -> list[SavedConversation]:
        """The newest conversation of every session, most recently updated first."""
        rows = self.query(f"{_SELECT_CONVERSATION} WHERE c.id = (SELECT MAX(id) FROM conversations "
                          "WHERE session = c.session) ORDER BY updated DESC, c.id DESC")
        return [_conversation(row) for row in rows]

    def conversations(self, session: str) -> list[SavedConversation]:
        """Every conversation saved under ``session``, oldest first (earlier runs and resets)."""
        rows = self.query(f"{_SELECT_CONVERSATION} WHERE c.session = ? ORDER BY c.id", (session,))
        return [_conversation(row) for row in rows]

    def conversation(self, session: str, conversation: int | None = None) -> SavedConversation:
        """The newest conversation of ``session`` (or the one with id ``conversation``)."""
        if conversation is None:
            rows = self.query(f"{_SELECT_CONVERSATION} WHERE c.session = ? ORDER BY c.id DESC LIMIT 1",
                              (session,))
        else:
            rows = self.query(f"{_SELECT_CONVERSATION} WHERE c.session = ? AND c.id = ?",
                              (session, conversation))
        if not rows:
            known = ", ".join(c.session for c in self.sessions()) or "none yet"
            which = f"session {session!r}" + (f" conversation {conversation}" if conversation else "")
            raise StoreError(f"no saved {which} in {self.path} (saved sessions: {known})")
        return _conversation(rows[0])

    def messages(self, conversation: int) -> list[Message]:
        """The messages of ``conversation`` in the order they were appended."""
        rows = self.query("SELECT * FROM messages WHERE conversation = ? ORDER BY id", (conversation,))
        return [_message(row) for row in rows]

    def delete(self, session: str) -> int:
        """Forget every conversation of ``session`` (the ledger keeps its rows); returns how many."""
        with self.transaction() as db:
            return db.execute("DELETE FROM conversations WHERE session = ?", (session,)).rowcount

    # -- bots ----------------------------------------------------------------------------------
    def attach(self, bot: Chatbot, session: str, *, cache: bool | None = None,
               cache_random: bool | None = None, conversation: int | None = None) -> Recorder:
        """Record ``bot`` under ``session`` from now on: each message, system change and reply.

        A fresh bot starts a new conversation at its first message, so the previous one stays
        loadable; ``conversation=`` continues a saved one instead (``load`` does that). ``cache``
        turns the response cache on or off for this bot (None: the store's default).
        """
        _check_name(session)
        old = self._recorders.get(bot)
        if old is not None:
            old.detach()
        recorder = Recorder(self, bot, session, conversation)
        self._recorders[bot] = recorder
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
        from ..core.chatbot import Chatbot

        saved = self.conversation(session, conversation)
        settings = {key: saved.settings.get(key) for key in SETTINGS}
        bot = Chatbot(saved.model, **{**settings, **options})
        self.load(session, bot, conversation=saved.id, cache=cache)
        return bot

    # -- cache and ledger ----------------------------------------------------------------------
    def response_cache(self, *, cache_random: bool | None = None) -> ResponseCache:
        """A response cache kept in this store (see cache.py)."""
        from .cache import ResponseCache

        return ResponseCache(self, cache_random=self.cache_random if cache_random is None else cache_random)

    def record_reply(self, reply: Reply, *, session: str | None = None,
                     conversation: int | None = None) -> None:
        """Add one ledger row for ``reply`` (see ledger.py)."""
        from .ledger import ledger_row

        row = ledger_row(reply, session=session, conversation=conversation)
        with self.transaction() as db:
            db.execute(f"INSERT INTO ledger ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                       tuple(row.values()))

    def usage_summary(self, by: tuple[str, ...] | str = ("session", "model", "day"), *,
                      since: float | None = None, session: str | None = None) -> list[UsageRow]:
        """Ledger totals grouped ``by`` any of session, model, day (local dates)."""
        from .ledger import usage_summary

        return usage_summary(self, by, since=since, session=session)

    # -- export and import (the transcript format of transcript.py, plus session and settings) ----
    def export_json(self, session: str, *, conversation: int | None = None) -> dict[str, Any]:
        """The saved conversation as a transcript dict (``%chat load PATH`` reads it too)."""
        from . import transcript

        saved = self.conversation(session, conversation)
        return {"format": transcript.FORMAT, "version": transcript.VERSION,
                "saved": _dt.datetime.fromtimestamp(saved.updated, _dt.timezone.utc).isoformat(timespec="seconds"),
                "session": saved.session, "model": saved.model, "system": saved.system,
                "params": saved.params, "settings": saved.settings,
                "messages": [message.to_dict() for message in self.messages(saved.id)]}

    def export_markdown(self, session: str, *, conversation: int | None = None) -> str:
        """The saved conversation as a Markdown transcript (transcript.to_markdown)."""
        from ..core.chatbot import Chatbot
        from . import transcript

        saved = self.conversation(session, conversation)
        bot = Chatbot(saved.model, base_url="http://127.0.0.1:9/v1")  # never asked: only rendered
        self.restore(session, bot, conversation=saved.id)
        return transcript.to_markdown(bot)

    def import_json(self, data: dict[str, Any] | str, *, session: str | None = None) -> int:
        """Save a transcript (dict or JSON text) as the newest conversation of ``session`` (default:
        the session it was exported from); returns the new conversation's id."""
        from . import transcript

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
        _check_name(name)
        with self.transaction() as db:
            conversation = _insert_conversation(db, name, data["model"], data.get("system"),
                                                data.get("params"), data.get("settings"))
            for message in messages:
                _insert_message(db, conversation, message)
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
        params = {key: value for key, value in bot.params.items() if is_json(value)}
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
        except sqlite3.Error as error:
            what = {"append": "save a message", "clear": "start a new conversation",
                    "system": "save the system message"}.get(event, f"save {event!r}")
            warn_failed(f"{what} of session {self.session!r}", error)

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
        except sqlite3.Error as error:
            warn_failed(f"add a ledger row for session {self.session!r}", error)

    def __repr__(self) -> str:
        return f"Recorder(session={self.session!r}, conversation={self.conversation_id})"


def open_store(store: Store | str | os.PathLike[str] | None = None) -> Store:
    """``store`` itself if it is a Store, else a Store at that path (None: the default path)."""
    return store if isinstance(store, Store) else Store(store)


# -- helpers -----------------------------------------------------------------------------------
def _insert_conversation(db: sqlite3.Connection, session: str, model: str, system: str | None,
                         params: dict[str, Any] | None, settings: dict[str, Any] | None) -> int:
    """Add a conversation row (inside the caller's transaction); returns its id."""
    now = time.time()
    cursor = db.execute(
        "INSERT INTO conversations (session, created, updated, model, system, params, settings) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        (session, now, now, model, system, _dumps(params or {}), _dumps(settings or {})))
    return int(cursor.lastrowid)


def _create_private(path: Path) -> None:
    """Create the file (and its directory) readable by its owner only, before SQLite opens it.

    SQLite gives the -wal and -shm files it creates the database file's permissions.
    """
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not path.exists():
        os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


def _insert_message(db: sqlite3.Connection, conversation: int, message: Message) -> None:
    # The fields of Message.to_dict(), without its deep copy: this runs for every message.
    images = _dumps([asdict(image) for image in message.images]) if message.images else "[]"
    usage = _dumps(asdict(message.usage)) if message.usage else None
    db.execute(
        "INSERT INTO messages (conversation, role, text, tokens, images, name, status, model, usage, created) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (conversation, message.role, message.text, message.tokens, images, message.name, message.status,
         message.model, usage, message.created))


def _update_state(db: sqlite3.Connection, conversation: int, state: dict[str, Any]) -> None:
    columns = {"updated": time.time()}
    for key in ("model", "system"):
        if key in state:
            columns[key] = state[key]
    for key in ("params", "settings"):
        if key in state:
            columns[key] = _dumps(state[key])
    assignments = ", ".join(f"{column} = ?" for column in columns)
    db.execute(f"UPDATE conversations SET {assignments} WHERE id = ?", (*columns.values(), conversation))


def _message(row: dict[str, Any]) -> Message:
    return Message.from_dict({
        "role": row["role"], "text": row["text"], "tokens": row["tokens"],
        "images": json.loads(row["images"]), "name": row["name"], "status": row["status"],
        "model": row["model"], "usage": json.loads(row["usage"]) if row["usage"] else None,
        "created": row["created"]})


def _conversation(row: dict[str, Any]) -> SavedConversation:
    return SavedConversation(row["id"], row["session"], row["created"], row["updated"], row["model"],
                        row["system"], json.loads(row["params"]), json.loads(row["settings"]),
                        row.get("messages", 0))


def _check_name(session: Any) -> None:
    if not isinstance(session, str) or not session.strip():
        raise StoreError(f"a session name must be non-empty text, got {session!r}")


def _remove(items: list[Any], item: Any) -> None:
    for index, candidate in enumerate(items):
        if candidate == item:
            del items[index]
            return

