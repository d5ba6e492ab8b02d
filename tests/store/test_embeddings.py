"""The store's embedding cache: vectors round trip exactly by model, dimensions and text (the text
itself is not kept); a bot attached to a store keeps its vectors across kernels (a new bot on the
same file sends nothing: the server log as witness); migration 7 from a schema-6 file; a store
that fails is a miss and one warning, never a failed call."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest

from jupyter_llmchat.core.chatbot import Chatbot
from jupyter_llmchat.store import Store
from jupyter_llmchat.store.database import Database
from jupyter_llmchat.store.embeddings import EmbeddingStore, text_key
from jupyter_llmchat.store.errors import StoreWarning
from jupyter_llmchat.store.migrations import MIGRATIONS, Migrations, schema_version

MODEL = "text-embedding-3-small"


def vector(seed: int, size: int = 8) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(size).astype("<f4")


def test_vectors_round_trip_by_model_dimensions_and_text(tmp_path: Path) -> None:
    with Store(tmp_path / "s.sqlite3") as store:
        cache = store.embedding_cache()
        cache.put_many(MODEL, None, {"apple": vector(1), "pear": vector(2)})
        cache.put_many(MODEL, 4, {"apple": vector(3, 4)})
        found = cache.get_many(MODEL, None, ["apple", "pear", "plum"])
        assert set(found) == {"apple", "pear"}
        assert np.array_equal(found["apple"], vector(1)) and found["apple"].dtype == np.dtype("<f4")
        assert np.array_equal(cache.get_many(MODEL, 4, ["apple"])["apple"], vector(3, 4))
        assert cache.get_many("text-embedding-3-large", None, ["apple"]) == {}
        assert len(cache) == 3
        rows = store.query("SELECT model, dimensions, key FROM embeddings ORDER BY dimensions, key")
        assert {(r["model"], r["dimensions"], bytes(r["key"])) for r in rows} == {
            (MODEL, 0, text_key("apple")), (MODEL, 0, text_key("pear")), (MODEL, 4, text_key("apple"))}
        assert b"apple" not in Path(store.path).read_bytes()  # the text is not kept, only its hash
        assert cache.clear() == 3 and len(cache) == 0


def test_a_lookup_of_many_texts_is_chunked(tmp_path: Path) -> None:
    with Store(":memory:") as store:
        cache = store.embedding_cache()
        texts = [f"t{i}" for i in range(1234)]
        cache.put_many(MODEL, None, {text: vector(i, 2) for i, text in enumerate(texts)})
        assert len(cache.get_many(MODEL, None, texts)) == 1234


def test_a_bot_attached_to_a_store_keeps_its_vectors_across_kernels(loopback, tmp_path: Path) -> None:
    path = tmp_path / "kept.sqlite3"
    texts = ["one", "two", "three"]
    with Store(path) as store:
        bot = Chatbot("gpt-4o-mini", base_url=loopback.base_url, api_key="k")
        store.attach(bot, "s")
        assert isinstance(bot.embedding_cache, EmbeddingStore)
        first = bot.embed(texts, progress=False)
    assert bot.embedding_cache is None  # a closed store answers no lookups
    with Store(path) as store:  # as a new kernel would
        fresh = Chatbot("gpt-4o-mini", base_url=loopback.base_url, api_key="k")
        store.attach(fresh, "s")
        again = fresh.embed(list(reversed(texts)), progress=False)
        ledger = store.usage_summary(by="model")
    assert np.array_equal(again, first[::-1])
    assert [r.path for r in loopback.requests] == ["/v1/embeddings"]
    (row,) = ledger  # one ledger row: the one request, priced from the model table
    assert (row.keys["model"], row.requests, row.unpriced) == (MODEL, 1, 0)
    assert row.cost == pytest.approx(row.prompt_tokens * 0.02 / 1e6) and row.prompt_tokens > 0


def test_migration_7_adds_the_table_to_a_schema_6_file(tmp_path: Path) -> None:
    path = tmp_path / "v6.sqlite3"
    Database(path, migrations=Migrations(list(MIGRATIONS)[:6])).close()
    with sqlite3.connect(path) as db:
        assert schema_version(db) == 6
        db.execute("INSERT INTO conversations (session, created, updated, model) VALUES ('kept', 1, 1, 'gpt-4o')")
    with Store(path) as store:
        assert schema_version(store.database._db) == MIGRATIONS.version >= 7
        assert [c.session for c in store.sessions()] == ["kept"]
        store.embedding_cache().put_many(MODEL, None, {"x": vector(0)})
        assert len(store.embedding_cache()) == 1


def test_a_failing_store_is_a_miss_and_one_warning(tmp_path: Path) -> None:
    store = Store(tmp_path / "gone.sqlite3")
    cache = store.embedding_cache()
    store.close()
    with pytest.warns(StoreWarning) as warned:
        assert cache.get_many(MODEL, None, ["a"]) == {}
        assert cache.get_many(MODEL, None, ["b"]) == {}
        cache.put_many(MODEL, None, {"a": vector(0)})
        cache.put_many(MODEL, None, {"b": vector(0)})
    (said,) = [str(w.message) for w in warned]  # the same failure is told once
    assert "could not read the embedding cache" in said
