"""MapRows: answered rows kept by request key (only whole answers), read back for resuming, written a
batch per transaction, forgotten on demand; a Store attached to a bot hands it over and takes it
back on close; migration 4 adds the table to a schema-3 file, keeping its data."""

from __future__ import annotations

import sqlite3
import warnings
from contextlib import closing
from pathlib import Path

from jupyter_llmchat.core.chatbot import Chatbot
from jupyter_llmchat.core.reply import Usage
from jupyter_llmchat.core.rows import RowRequest, RowResult
from jupyter_llmchat.store.database import Database
from jupyter_llmchat.store.errors import StoreWarning
from jupyter_llmchat.store.map_rows import MapRows
from jupyter_llmchat.store.migrations import MIGRATIONS, Migrations, schema_version
from jupyter_llmchat.store.store import Store


def request(n: int) -> RowRequest:
    return RowRequest(n, "gpt-4o-mini", [{"role": "user", "content": f"row {n}"}], {"temperature": 0})


def test_answered_rows_are_found_by_key_and_failed_ones_are_not_kept(tmp_path: Path) -> None:
    rows = MapRows(Database(tmp_path / "s.sqlite3"))
    first, second, third = request(0), request(1), request(2)
    rows.save([(first, RowResult(0, first.key, "done", text="yes", usage=Usage(9, 1, 2), cost=0.25, attempts=2)),
               (second, RowResult(1, second.key, "failed", text="half", error="cut", attempts=1)),
               (third, RowResult(2, third.key, "done", text="", usage=None, cost=None, attempts=1))])
    assert len(rows) == 2
    found = rows.answered([first.key, second.key, third.key, first.key])
    assert found == {first.key: RowResult(-1, first.key, "done", text="yes", usage=Usage(9, 1, 2), cost=0.25,
                                          attempts=2),
                     third.key: RowResult(-1, third.key, "done", text="", attempts=1)}
    # the same row answered again replaces the old answer
    rows.save([(first, RowResult(0, first.key, "done", text="again", usage=Usage(9, 1), cost=0.5, attempts=1))])
    assert rows.answered([first.key])[first.key].text == "again" and len(rows) == 2
    assert rows.forget([first.key]) == 1 and rows.answered([first.key]) == {}
    assert rows.forget() == 1 and len(rows) == 0


def test_many_keys_are_looked_up_in_chunks(tmp_path: Path) -> None:
    rows = MapRows(Database(tmp_path / "s.sqlite3"))
    requests = [request(n) for n in range(1_200)]  # more than one statement's parameters
    rows.save([(r, RowResult(r.index, r.key, "done", text=str(r.index), attempts=1)) for r in requests])
    found = rows.answered([r.key for r in requests])
    assert len(found) == 1_200 and found[requests[1_100].key].text == "1100"
    assert rows.forget([r.key for r in requests[:1_000]]) == 1_000 and len(rows) == 200


def test_a_store_hands_its_rows_to_the_bots_it_records_and_takes_them_back_on_close(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.sqlite3")
    bot = Chatbot("gpt-4o-mini", base_url="http://127.0.0.1:9/v1")
    assert bot.row_store is None
    store.attach(bot, "mapping")
    assert isinstance(bot.row_store, MapRows) and bot.row_store.database is store.database
    assert repr(store.map_rows()) == f"MapRows({str(tmp_path / 's.sqlite3')!r})"
    store.close()
    assert bot.row_store is None


def test_a_store_that_cannot_be_written_warns_once_and_the_run_goes_on(tmp_path: Path) -> None:
    database = Database(tmp_path / "s.sqlite3")
    rows = MapRows(database)
    with closing(sqlite3.connect(tmp_path / "s.sqlite3")) as other:
        other.execute("DROP TABLE map_rows")  # a damaged file, as far as this table goes
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rows.save([(request(0), RowResult(0, request(0).key, "done", text="x", attempts=1))])
        rows.save([(request(1), RowResult(1, request(1).key, "done", text="y", attempts=1))])
        assert rows.answered([request(0).key]) == {}
    messages = [str(w.message) for w in caught if issubclass(w.category, StoreWarning)]
    assert len(messages) == 1  # once per kind of failure, not at every write or read
    assert messages[0].startswith(f"the store {tmp_path / 's.sqlite3'} could not save the answered rows of a map "
                                  "(OperationalError: no such table: map_rows)")


def test_migration_4_adds_the_table_to_a_schema_3_file(tmp_path: Path) -> None:
    path = tmp_path / "v3.sqlite3"
    first_three = Migrations(list(MIGRATIONS)[:3])
    old = Database(path, migrations=first_three)
    with old.transaction() as db:
        db.execute("INSERT INTO conversations (session, created, updated, model) VALUES ('kept', 1, 1, 'gpt-4o')")
    old.close()
    with closing(sqlite3.connect(path)) as db:
        assert schema_version(db) == 3
    with Store(path) as store:
        assert store.sessions()[0].session == "kept"
        rows = store.map_rows()
        rows.save([(request(0), RowResult(0, request(0).key, "done", text="x", attempts=1))])
        assert rows.answered([request(0).key])[request(0).key].text == "x"
    with closing(sqlite3.connect(path)) as db:
        assert schema_version(db) == MIGRATIONS.version
        assert [row[1] for row in db.execute("PRAGMA table_info(map_rows)")] == [
            "key", "model", "text", "finish_reason", "usage", "cost", "attempts", "source", "created"]
