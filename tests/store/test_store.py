"""The SQLite store: conversations saved message by message through the real SDK and loopback
server, restored exactly; new runs and resets never overwrite; file permissions; no key inside;
export and import; clear one-line errors."""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from jupyter_llmchat import load_chatbot
from jupyter_llmchat.core.chatbot import Chatbot
from jupyter_llmchat.core.messages import ImageRef
from jupyter_llmchat.core.reply import NullSink
from jupyter_llmchat.store.store import MEMORY, STORE_ENV, Store, StoreError

KEY = "sk-test-NEVER-STORE-8d1e77a3"
# A 1x1 PNG, small enough to keep inline: images are stored as sent (data URL).
PNG = base64.b64encode(bytes.fromhex(
    "89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489"
    "0000000d49444154789c6360f8cfc0f01f0005000201a5e1d8d40000000049454e44ae426082")).decode()
IMAGE = ImageRef(f"data:image/png;base64,{PNG}", detail="low", width=1, height=1, mime="image/png",
                 source="dot.png")


class InterruptingSink(NullSink):
    """Raises KeyboardInterrupt after ``after`` deltas, as a kernel interrupt would."""

    def __init__(self, after: int) -> None:
        self.after = after
        self.seen = 0

    def write(self, text: str) -> None:
        self.seen += 1
        if self.seen >= self.after:
            raise KeyboardInterrupt


def make_bot(loopback, model: str = "gpt-4o-mini", **kwargs) -> Chatbot:
    return Chatbot(model, base_url=loopback.base_url, api_key=KEY, max_retries=0, **kwargs)


def history(bot: Chatbot) -> list[dict]:
    return [message.to_dict() for message in bot.conversation.messages]


@pytest.fixture
def store(tmp_path: Path):
    with Store(tmp_path / "chats" / "store.sqlite3") as opened:
        yield opened


def test_memory_store_keeps_nothing_on_disk(tmp_path: Path, monkeypatch, loopback):
    monkeypatch.chdir(tmp_path)
    with Store(MEMORY) as store:
        bot = make_bot(loopback)
        store.attach(bot, "scratch")
        loopback.queue(reply="fine")
        bot.ask("hi", sink=NullSink())
        assert [m.text for m in store.messages(store.conversation("scratch").id)] == ["hi", "fine"]
    assert list(tmp_path.iterdir()) == []


def test_each_message_is_saved_as_it_is_appended(store: Store, loopback):
    bot = make_bot(loopback, system="Be brief.")
    recorder = store.attach(bot, "notes")
    assert recorder.conversation_id is None and store.sessions() == []  # nothing until a message
    loopback.queue(reply="First answer.")
    bot.ask("First question?", sink=NullSink())
    saved = store.conversation("notes")
    assert (saved.id, saved.model, saved.system, saved.messages) == (recorder.conversation_id, "gpt-4o-mini",
                                                                     "Be brief.", 2)
    assert [message.to_dict() for message in store.messages(saved.id)] == history(bot)


def test_restore_is_exact_images_status_usage_system_model_params_settings(store: Store, loopback):
    bot = make_bot(loopback, "gpt-4o", system="You are terse.", max_history=10, prompt_token_limit=50_000,
                   context_window=64_000, temperature=0.3, seed=7, max_tokens=500)
    store.attach(bot, "vision")
    loopback.queue(reply="A single dot.")
    bot.ask("What is in the picture?", images=[IMAGE], sink=NullSink())
    loopback.queue(tokens=400)
    bot.ask("Tell me a long story", sink=InterruptingSink(after=5))
    loopback.queue(reply="short")
    bot.ask("again, at temperature 0", temperature=0, sink=NullSink())
    assert [m.status for m in bot.history] == ["complete", "complete", "complete", "interrupted",
                                               "complete", "complete"]
    assert bot.history[0].images == (IMAGE,) and bot.history[1].usage.prompt_tokens > 0

    restored = load_chatbot("vision", store=store, base_url=loopback.base_url, api_key=KEY)
    assert history(restored) == history(bot)
    assert restored.conversation.messages == bot.conversation.messages  # Message objects equal too
    assert (restored.model, restored.system, restored.params) == (
        "gpt-4o", "You are terse.", {"temperature": 0.3, "seed": 7, "max_tokens": 500})
    assert (restored.conversation.max_history, restored.context_window, restored.prompt_token_limit) == (
        10, 64_000, 50_000)
    # The restored bot sends exactly what the original would have sent.
    assert restored.prepare("next?").as_request() == bot.prepare("next?").as_request()


def test_restored_bot_keeps_recording_into_the_same_conversation(store: Store, loopback):
    bot = make_bot(loopback)
    store.attach(bot, "thread")
    loopback.queue(reply="one")
    bot.ask("1", sink=NullSink())
    first = store.conversation("thread").id
    again = store.chatbot("thread", base_url=loopback.base_url, api_key=KEY)
    loopback.queue(reply="two")
    again.ask("2", sink=NullSink())
    assert store.conversation("thread").id == first
    assert [m.text for m in store.messages(first)] == ["1", "one", "2", "two"]
    sent = loopback.requests[-1].body["messages"]
    assert [m["content"] for m in sent] == ["1", "one", "2"]  # the restored history was sent


def test_a_tool_turn_is_saved_restored_and_billed_as_one_reply(store: Store, loopback):
    def add(a: int, b: int) -> int:
        """Add two whole numbers."""
        return a + b

    bot = make_bot(loopback, tools=[add])
    store.attach(bot, "tools")
    loopback.queue(tool_calls=[{"name": "add", "arguments": {"a": 2, "b": 3}}, {"name": "add", "arguments": "{"}])
    loopback.queue(reply="5, and one call I got wrong.")
    reply = bot.ask("2+3?", sink=NullSink())
    saved = store.messages(store.conversation("tools").id)
    assert saved == list(bot.conversation.messages)
    assert [(m.role, len(m.tool_calls), m.tool_call_id is not None) for m in saved] == [
        ("user", 0, False), ("assistant", 2, False), ("tool", 0, True), ("tool", 0, True), ("assistant", 0, False)]
    (row,) = store.query("SELECT prompt_tokens, completion_tokens, cost, status FROM ledger")
    assert reply.usage is not None and (row["prompt_tokens"], row["completion_tokens"], row["status"]) == (
        reply.usage.prompt_tokens, reply.usage.completion_tokens, "complete")  # both rounds, one row
    assert row["cost"] == pytest.approx(reply.cost)
    again = store.chatbot("tools", base_url=loopback.base_url, api_key=KEY)
    assert history(again) == history(bot)
    loopback.queue(reply="ok")
    assert again.ask("and 1+1?", sink=NullSink()).text == "ok"  # the server took the restored tool turn


def test_a_fresh_bot_or_a_reset_starts_a_new_conversation_and_keeps_the_old(store: Store, loopback):
    first = make_bot(loopback)
    store.attach(first, "daily")
    loopback.queue(reply="a")
    first.ask("q1", sink=NullSink())
    second = make_bot(loopback)  # e.g. the notebook re-run after a kernel restart
    store.attach(second, "daily")
    loopback.queue(reply="b")
    second.ask("q2", sink=NullSink())
    second.reset()
    runs = store.conversations("daily")
    assert [[m.text for m in store.messages(run.id)] for run in runs] == [["q1", "a"], ["q2", "b"], []]
    assert store.conversation("daily").id == runs[-1].id  # load gives the newest: the reset one
    assert store.chatbot("daily", base_url=loopback.base_url).history == []
    assert [m.text for m in store.chatbot("daily", conversation=runs[0].id,
                                          base_url=loopback.base_url).history] == ["q1", "a"]
    assert [(s.session, s.messages) for s in store.sessions()] == [("daily", 0)]


def test_system_model_and_params_changes_are_saved(store: Store, loopback):
    bot = make_bot(loopback)
    store.attach(bot, "tweaks")
    bot.system = "Answer in French."
    assert store.conversation("tweaks").system == "Answer in French."
    bot.system = "Answer in German."
    assert store.conversation("tweaks").system == "Answer in German."
    bot.model = "gpt-4.1"
    bot.params["temperature"] = 0
    loopback.queue(reply="ja")
    bot.ask("hi", sink=NullSink())
    saved = store.conversation("tweaks")
    assert (saved.model, saved.params) == ("gpt-4.1", {"temperature": 0})


def test_failed_request_leaves_the_saved_history_untouched(store: Store, loopback):
    from jupyter_llmchat.core import errors

    bot = make_bot(loopback)
    store.attach(bot, "faulty")
    loopback.queue(reply="fine")
    bot.ask("ok?", sink=NullSink())
    loopback.queue(fault="server_error")
    with pytest.raises(errors.ServerError):
        bot.ask("and now?", sink=NullSink())
    assert [m.text for m in store.messages(store.conversation("faulty").id)] == ["ok?", "fine"]


def test_text_with_surrogates_is_saved_question_and_answer(store: Store, loopback):
    bot = make_bot(loopback)
    store.attach(bot, "emoji")
    loopback.queue(reply="a pair 😀 cut in halves, and 🎉", fault="lone_surrogate")  # and no usage either
    reply = bot.ask("a lone \ud83d half, a pair \ud83d\ude00 in halves", sink=NullSink())
    saved = [(m.role, m.text) for m in store.messages(store.conversation("emoji").id)]
    assert saved == [("user", "a lone \ufffd half, a pair 😀 in halves"),
                     ("assistant", "a pair \ufffd cut in halves, and 🎉")] == [(m.role, m.text) for m in bot.history]
    assert reply.status == "complete"
    loopback.queue(reply="no usage reported", fault="no_usage")
    counted = bot.ask("and counted?", sink=NullSink()).usage
    assert counted.source == "counted" and counted.prompt_tokens > 0
    assert store.query("SELECT prompt_tokens, completion_tokens, usage_source FROM ledger ORDER BY id")[-1] == {
        "prompt_tokens": counted.prompt_tokens, "completion_tokens": counted.completion_tokens,
        "usage_source": "counted"}


def test_detach_stops_recording(store: Store, loopback):
    bot = make_bot(loopback)
    recorder = store.attach(bot, "brief")
    loopback.queue(reply="kept", times=1)
    bot.ask("1", sink=NullSink())
    recorder.detach()
    assert bot.reply_listeners == [] and bot.conversation.listeners == []
    loopback.queue(reply="not kept")
    bot.ask("2", sink=NullSink())
    assert store.conversation("brief").messages == 2


def test_unknown_session_is_a_one_line_error_naming_what_exists(store: Store, loopback):
    bot = make_bot(loopback)
    store.attach(bot, "alpha")
    bot.conversation.append(bot.conversation.make("user", "hi"))
    with pytest.raises(StoreError) as caught:
        store.chatbot("beta")
    assert str(caught.value) == (f"no saved session 'beta' in {store.path} (saved sessions: alpha)")
    with pytest.raises(StoreError, match="a session name must be non-empty text"):
        store.attach(bot, "  ")


def test_the_api_key_is_nowhere_in_the_database_files(tmp_path: Path, loopback):
    path = tmp_path / "store.sqlite3"
    store = Store(path, cache=True)
    bot = make_bot(loopback, temperature=0)
    store.attach(bot, "secret")
    loopback.queue(reply="An answer worth caching.")
    bot.ask("question", sink=NullSink())
    bot.ask("question", history=False, sink=NullSink())  # a cache hit, in the ledger too
    files = [path, Path(f"{path}-wal")]
    raw = b"".join(file.read_bytes() for file in files)
    assert b"An answer worth caching." in raw  # the bytes were written, so the check below means something
    assert KEY.encode() not in raw and b"NEVER-STORE" not in raw
    store.close()
    assert KEY.encode() not in path.read_bytes()


def test_images_from_the_store_are_shown_only_with_http_or_data_image_urls(store: Store, loopback):
    # A store file is data anyone could have written: rows carrying a script URL and a tag as label.
    label = "<img src=x onerror=alert(1)>"
    bad = [{"url": "javascript:alert(1)", "detail": "auto", "source": label},
           {"url": "data:text/html;base64,PHNjcmlwdD4=", "detail": "auto", "source": label}]
    store.import_json({"format": "jupyter_llmchat.transcript", "version": 1, "model": "gpt-4o-mini",
                       "messages": [{"role": "user", "text": "see", "tokens": 3, "created": 0.0,
                                     "images": [*bad, dataclasses.asdict(IMAGE)]}]}, session="evil")
    from jupyter_llmchat.store.transcript import to_markdown

    bot = store.chatbot("evil", base_url=loopback.base_url)
    shown = to_markdown(bot, image_html=True)
    assert shown.count("<img ") == 1 and '<img src="data:image/png;base64,' in shown
    assert shown.count("&#91;image: &#60;img src&#61;x onerror&#61;alert&#40;1&#41;&#62;&#93;") == 2
    assert store.export_markdown("evil").count("[image: \\<img src=x onerror=alert(1)\\>]") == 2


def test_export_json_and_markdown_then_import(store: Store, loopback, tmp_path: Path):
    bot = make_bot(loopback, system="Be kind.", temperature=0.5)
    store.attach(bot, "share")
    loopback.queue(reply="**Hello** there.")
    bot.ask("Greet me", images=[IMAGE], sink=NullSink())
    data = store.export_json("share")
    assert (data["format"], data["session"], data["model"], data["system"], data["params"]) == (
        "jupyter_llmchat.transcript", "share", "gpt-4o-mini", "Be kind.", {"temperature": 0.5})
    assert data["messages"] == history(bot)
    markdown = store.export_markdown("share")
    assert markdown == ("**model:** `gpt-4o-mini` · **messages:** 2\n\n### system\n\nBe kind.\n\n"
                        "### user\n\nGreet me\n\n[image: dot.png 1x1]\n\n"
                        "### assistant · gpt-4o-mini\n\n**Hello** there.\n")
    text = json.dumps(data)
    new_id = store.import_json(text, session="copy")
    copy = store.chatbot("copy", base_url=loopback.base_url)
    assert store.conversation("copy").id == new_id
    assert history(copy) == history(bot) and copy.system == "Be kind."
    # The transcript module reads the export too (%chat load PATH).
    from jupyter_llmchat.store import transcript

    target = tmp_path / "share.json"
    target.write_text(text)
    other = make_bot(loopback)
    transcript.load(target, other)
    assert [m.text for m in other.history] == ["Greet me", "**Hello** there."]


def test_bad_imports_are_one_line_errors_and_change_nothing(store: Store):
    with pytest.raises(StoreError, match=r"^cannot import: invalid JSON at line 1"):
        store.import_json("{not json")
    with pytest.raises(StoreError, match=r"^cannot import: 'import' is not a jupyter_llmchat transcript"):
        store.import_json({"messages": []})
    good = {"format": "jupyter_llmchat.transcript", "version": 1, "model": "gpt-4o-mini",
            "messages": [{"role": "user", "text": "hi", "tokens": 3}]}
    with pytest.raises(StoreError, match="names no session; pass session=NAME"):
        store.import_json(good)
    with pytest.raises(StoreError, match="message 1 is damaged"):
        store.import_json({**good, "messages": [{"role": "user"}]}, session="x")
    assert store.sessions() == []
    store.import_json(good, session="x")
    assert [m.text for m in store.messages(store.conversation("x").id)] == ["hi"]


def test_delete_forgets_every_conversation_of_a_session(store: Store, loopback):
    for run in range(2):
        bot = make_bot(loopback)
        store.attach(bot, "gone")
        bot.conversation.append(bot.conversation.make("user", f"run {run}"))
    assert store.delete("gone") == 2
    assert store.sessions() == [] and store.query("SELECT COUNT(*) AS n FROM messages") == [{"n": 0}]


def test_store_is_a_consistent_sqlite_file_others_can_read(tmp_path: Path, loopback):
    path = tmp_path / "store.sqlite3"
    store = Store(path)
    bot = make_bot(loopback)
    store.attach(bot, "open")
    loopback.queue(reply="x")
    bot.ask("y", sink=NullSink())
    with closing(sqlite3.connect(path)) as other:  # another reader, while this store is open
        assert other.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert other.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert other.execute("SELECT role, text FROM messages ORDER BY id").fetchall() == [
            ("user", "y"), ("assistant", "x")]
    store.close()
    assert not Path(f"{path}-wal").exists() or os.path.getsize(f"{path}-wal") == 0



def test_a_locked_store_warns_and_the_answer_is_kept_in_memory(tmp_path: Path, loopback):
    from jupyter_llmchat.store.store import StoreWarning

    path = tmp_path / "store.sqlite3"
    store = Store(path, busy_timeout=0.05)
    bot = make_bot(loopback, temperature=0)
    store.attach(bot, "locked", cache=True)
    loopback.queue(reply="still shown")
    with closing(sqlite3.connect(path, isolation_level=None)) as other:
        other.execute("BEGIN EXCLUSIVE")  # another kernel holding the write lock too long
        with pytest.warns(StoreWarning) as caught:
            reply = bot.ask("hello?", sink=NullSink())
        other.execute("ROLLBACK")
    assert reply.text == "still shown" and [m.text for m in bot.history] == ["hello?", "still shown"]
    # four writes failed (question, answer, ledger row, cache): one warning says so
    assert [str(w.message) for w in caught if issubclass(w.category, StoreWarning)] == [
        f"the store {path} could not save a message of session 'locked' (OperationalError: database is locked); "
        "the conversation continues in memory, unsaved (further failures like this one are not repeated)"]
    loopback.queue(reply="saved again")
    bot.ask("and now?", sink=NullSink())  # the lock is gone: recording resumes
    assert [m.text for m in store.messages(store.conversation("locked").id)] == ["and now?", "saved again"]
    store.close()


def test_a_store_with_damaged_pages_warns_once_and_reads_fail_in_one_line(tmp_path: Path, loopback):
    from support.damaged_store import damage_pages, filled_store

    from jupyter_llmchat.store.store import StoreWarning

    path = filled_store(tmp_path / "store.sqlite3")
    damage_pages(path)
    store = Store(path)  # the header is intact: it opens
    bot = make_bot(loopback, temperature=0)
    store.attach(bot, "damaged", cache=True)
    for answer in ("one", "two", "three"):
        loopback.queue(reply=answer)
    with pytest.warns(StoreWarning) as caught:
        replies = [bot.ask(question, sink=NullSink()).text for question in ("a?", "b?", "c?")]
    assert replies == ["one", "two", "three"]  # the chat goes on, in memory
    assert [m.text for m in bot.history] == ["a?", "one", "b?", "two", "c?", "three"]
    assert [str(w.message) for w in caught if issubclass(w.category, StoreWarning)] == [
        f"the store {path} could not read the response cache (DatabaseError: database disk image is malformed); "
        "the conversation continues in memory, unsaved (further failures like this one are not repeated)"]
    damaged = (f"cannot read the store {path} (DatabaseError: database disk image is malformed); the file is "
               "damaged: move it away (a new store is made in its place) or pass another path")
    for read in (store.sessions, store.usage_summary, lambda: store.conversation("s1")):
        with pytest.raises(StoreError) as failed:
            read()
        assert str(failed.value) == damaged
    store.close()


def test_close_detaches_and_drops_its_cache(tmp_path: Path, loopback):
    store = Store(tmp_path / "store.sqlite3")
    bot = make_bot(loopback)
    store.attach(bot, "closing", cache=True)
    assert bot.cache is not None and store.recorder(bot) is not None
    store.close()
    assert bot.cache is None and bot.reply_listeners == [] and bot.conversation.listeners == []
    loopback.queue(reply="works without the store")
    assert bot.ask("hi", sink=NullSink()).text == "works without the store"


def test_only_json_params_are_saved(store: Store, loopback):
    bot = make_bot(loopback, temperature=0.2, extra_body={"opaque": object()})
    store.attach(bot, "params")
    bot.conversation.append(bot.conversation.make("user", "hi"))
    assert store.conversation("params").params == {"temperature": 0.2}


# -- other processes: kill -9, two writers at once, a new kernel ---------------------------------
REPO = Path(__file__).resolve().parents[2]

STREAM_THEN_DIE = r"""
import sys
from jupyter_llmchat.core.chatbot import Chatbot
from jupyter_llmchat.core.reply import NullSink
from jupyter_llmchat.store.store import Store

store = Store(sys.argv[1])
bot = Chatbot("gpt-4o-mini", base_url=sys.argv[2], api_key="sk-test-kill", max_retries=0)
store.attach(bot, "doomed")
bot.ask("first", sink=NullSink())

class Announce(NullSink):
    said = False
    def write(self, text):
        if not self.said:
            self.said = True
            print("STREAMING", flush=True)

bot.ask("second", sink=Announce())
print("FINISHED", flush=True)
"""

WRITE_UNTIL_KILLED = r"""
import sys
from jupyter_llmchat.core.chatbot import Chatbot
from jupyter_llmchat.store.store import Store

store = Store(sys.argv[1])
bot = Chatbot("gpt-4o-mini", base_url="http://127.0.0.1:9/v1", max_history=50)
store.attach(bot, "burst")
conversation = bot.conversation
for number in range(1_000_000):
    conversation.append(conversation.make("user", f"message {number:07d} " + "x" * 300))
    if number % 100 == 0:
        print(f"WROTE {number}", flush=True)
"""

CONCURRENT_WRITER = r"""
import sys, time
from pathlib import Path
from jupyter_llmchat.core.chatbot import Chatbot
from jupyter_llmchat.core.reply import NullSink
from jupyter_llmchat.store.store import Store

path, base_url, who, go = sys.argv[1:5]
store = Store(path)
bot = Chatbot("gpt-4o-mini", base_url=base_url, api_key="sk-test-two", max_retries=0)
store.load("shared", bot)  # both writers continue the same saved conversation
print("READY", flush=True)
while not Path(go).exists():
    time.sleep(0.001)
for number in range(200):
    bot.conversation.append(bot.conversation.make("user", f"{who} {number}"))
    if number % 20 == 0:
        bot.ask(f"{who} asks {number}", sink=NullSink(), history=False)
print("DONE", flush=True)
"""


def spawn(script: str, *args: str):
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-c", script, *args], stdout=subprocess.PIPE, text=True,
                            env=env, cwd=REPO)


def wait_for(process, word: str) -> str:
    for line in process.stdout:
        if line.startswith(word):
            return line.strip()
    raise AssertionError(f"the child exited ({process.wait()}) before printing {word}")


def integrity(path: Path) -> str:
    with closing(sqlite3.connect(path)) as db:
        return db.execute("PRAGMA integrity_check").fetchone()[0]


def test_kill_9_during_streaming_leaves_a_readable_consistent_store(tmp_path: Path, loopback):
    import signal

    path = tmp_path / "store.sqlite3"
    loopback.queue(reply="First answer, saved.")
    loopback.queue(tokens=5_000, rate=20.0)  # minutes of streaming: killed long before the end
    child = spawn(STREAM_THEN_DIE, str(path), loopback.base_url)
    try:
        wait_for(child, "STREAMING")
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.communicate()  # waits, and closes its stdout pipe
    assert child.returncode == -signal.SIGKILL
    assert Path(f"{path}-wal").stat().st_size > 0  # the committed pages were still in the WAL
    assert integrity(path) == "ok"
    with Store(path) as store:
        bot = store.chatbot("doomed", base_url=loopback.base_url)
        assert [(m.role, m.text, m.status) for m in bot.history] == [
            ("user", "first", "complete"), ("assistant", "First answer, saved.", "complete")]
        assert store.query("SELECT status, model FROM ledger") == [{"status": "complete", "model": "gpt-4o-mini"}]
    assert integrity(path) == "ok"


def test_kill_9_during_a_burst_of_writes_loses_no_committed_message(tmp_path: Path):
    import signal

    path = tmp_path / "store.sqlite3"
    child = spawn(WRITE_UNTIL_KILLED, str(path))
    try:
        reported = int(wait_for(child, "WROTE 500").split()[1])
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.communicate()  # waits, and closes its stdout pipe
    assert integrity(path) == "ok"
    with Store(path) as store:
        texts = [m.text for m in store.messages(store.conversation("burst").id)]
    assert len(texts) > reported  # everything reported as written is there
    assert texts == [f"message {number:07d} " + "x" * 300 for number in range(len(texts))]  # no gap, no torn row


def test_two_processes_writing_at_once_lose_no_message(tmp_path: Path, loopback):
    path = tmp_path / "store.sqlite3"
    with Store(path) as store:
        seed = Chatbot("gpt-4o-mini", base_url=loopback.base_url, api_key=KEY)
        store.attach(seed, "shared")
        seed.conversation.append(seed.conversation.make("user", "seed"))
    go = tmp_path / "go"
    children = [spawn(CONCURRENT_WRITER, str(path), loopback.base_url, who, str(go)) for who in ("A", "B")]
    try:
        for child in children:
            wait_for(child, "READY")
        go.touch()
        for child in children:
            wait_for(child, "DONE")
    finally:
        for child in children:
            child.communicate()  # waits, and closes its stdout pipe
    assert [child.returncode for child in children] == [0, 0]
    assert integrity(path) == "ok"
    with Store(path) as store:
        saved = store.conversations("shared")
        assert len(saved) == 1
        texts = [m.text for m in store.messages(saved[0].id)]
        assert len(texts) == 1 + 2 * 200
        for who in ("A", "B"):  # each writer's messages, all there and in its own order
            assert [t for t in texts if t.startswith(f"{who} ")] == [f"{who} {n}" for n in range(200)]
        ledger = store.query("SELECT session, COUNT(*) AS n FROM ledger GROUP BY session")
        assert ledger == [{"session": "shared", "n": 20}]
    assert sum(1 for r in loopback.requests if r.path.endswith("/chat/completions")) == 20


KERNEL_ONE = """
import json
from jupyter_llmchat.core.chatbot import Chatbot
from jupyter_llmchat.core.messages import ImageRef
from jupyter_llmchat.core.reply import NullSink
from jupyter_llmchat.store.store import Store

store = Store(cache=True)  # the default path: JUPYTER_LLMCHAT_STORE, set for this test
bot = Chatbot("gpt-4o-mini", base_url=BASE_URL, api_key=API_KEY, system="Be brief.", temperature=0)
store.attach(bot, "trip")
bot.ask("What is 2+2?", sink=NullSink())
bot.ask("Describe this image", images=[ImageRef(IMAGE_URL, detail="low", width=1, height=1)], sink=NullSink())
print(json.dumps([m.to_dict() for m in bot.history]))
"""

KERNEL_TWO = """
import json
from jupyter_llmchat import load_chatbot

loaded = load_chatbot("trip", base_url=BASE_URL, api_key=API_KEY)  # the default store file
print(json.dumps({"history": [m.to_dict() for m in loaded.history], "system": loaded.system,
                  "model": loaded.model, "params": loaded.params}))
"""


def run_kernel(cells: list[str], cwd: Path) -> list[str]:
    """Run ``cells`` in a new python3 kernel through nbclient; the stdout of each cell."""
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(cell) for cell in cells])
    NotebookClient(notebook, timeout=120, kernel_name="python3",
                   resources={"metadata": {"path": str(cwd)}}).execute()
    return ["".join(out.get("text", "") for out in cell.outputs if out.get("name") == "stdout")
            for cell in notebook.cells]


def test_a_new_kernel_loads_what_the_old_one_wrote(tmp_path: Path, loopback, monkeypatch):
    path = tmp_path / "data" / "store.sqlite3"
    monkeypatch.setenv(STORE_ENV, str(path))
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    setup = f"BASE_URL, API_KEY, IMAGE_URL = {loopback.base_url!r}, {KEY!r}, {IMAGE.url!r}"
    loopback.queue(reply="4.")
    loopback.queue(reply="A **single** pixel.")
    first = run_kernel([setup, KERNEL_ONE], tmp_path)
    written = json.loads(first[1])
    assert [(m["role"], m["text"]) for m in written] == [
        ("user", "What is 2+2?"), ("assistant", "4."), ("user", "Describe this image"),
        ("assistant", "A **single** pixel.")]
    requests_before = len(loopback.requests)

    # A new kernel process loads the conversation, then re-runs the first notebook: all cache hits.
    second = run_kernel([setup, KERNEL_TWO, KERNEL_ONE], tmp_path)
    loaded = json.loads(second[1])
    assert loaded == {"history": written, "system": "Be brief.", "model": "gpt-4o-mini",
                      "params": {"temperature": 0}}
    rerun = json.loads(second[2])
    assert [{**m, "created": None} for m in rerun] == [{**m, "created": None} for m in written]
    assert len(loopback.requests) == requests_before  # nothing was sent: the re-run cost nothing
    raw = b"".join(file.read_bytes() for file in path.parent.iterdir())
    assert b"A **single** pixel." in raw and KEY.encode() not in raw
