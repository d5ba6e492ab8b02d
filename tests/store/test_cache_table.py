"""CacheTable: each cache counts and forgets only the entries of its own table (the response cache
and the embedding cache share one store file)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from jupyter_llmchat.core.reply import Reply
from jupyter_llmchat.store import Store
from jupyter_llmchat.store.cache_table import CacheTable

REQUEST = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi?"}], "params": {"temperature": 0}}


def test_each_cache_counts_and_forgets_only_its_own_table(tmp_path: Path) -> None:
    with Store(tmp_path / "s.sqlite3") as store:
        answers, vectors = store.response_cache(), store.embedding_cache()
        assert isinstance(answers, CacheTable) and isinstance(vectors, CacheTable)
        assert (len(answers), len(vectors), answers.clear(), vectors.clear()) == (0, 0, 0, 0)
        answers.save(REQUEST, Reply(text="Hello.", model="gpt-4o-mini", status="complete"))
        vectors.put_many("text-embedding-3-small", None, {t: np.ones(4, dtype="<f4") for t in ("a", "b")})
        assert (len(answers), len(vectors)) == (1, 2)
        assert vectors.clear() == 2 and (len(answers), len(vectors)) == (1, 0)  # the answer stays
        assert answers.clear() == 1 and len(answers) == 0
        assert answers.lookup(REQUEST) is None
