"""The embedding cache in the store file: vectors ``Chatbot.embed`` paid for, kept across kernels.

Implements ``core.embedding.EmbeddingCache`` on the ``embeddings`` table (migration 7): a row per
model, dimensions (0: the model's own) and SHA-256 of the text (the text itself is not kept), the
vector as little-endian float32 bytes. A store that cannot be read or written is a miss (the text
is sent as if there were no cache) and a warning once, never a failed call.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from .cache_table import CacheTable
from .errors import StoreError

if TYPE_CHECKING:
    import numpy as np

LOOKUP_CHUNK = 500  # keys per SELECT (SQLite's limit on parameters is far above)


def text_key(text: str) -> bytes:
    """The row key of ``text``: its SHA-256 (UTF-8; a lone surrogate kept as it is)."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()


class EmbeddingStore(CacheTable):
    """Vectors in a store's database (thread-safe through the database's lock)."""

    table = "embeddings"

    def get_many(self, model: str, dimensions: int | None, texts: Sequence[str]) -> dict[str, np.ndarray]:
        import numpy as np

        keys = {text_key(text): text for text in texts}
        found: dict[str, np.ndarray] = {}
        wanted = list(keys)
        try:
            for start in range(0, len(wanted), LOOKUP_CHUNK):
                chunk = wanted[start:start + LOOKUP_CHUNK]
                marks = ",".join("?" * len(chunk))
                rows = self.database.query(
                    f"SELECT key, vector FROM embeddings WHERE model = ? AND dimensions = ? AND key IN ({marks})",
                    (model, dimensions or 0, *chunk))
                for row in rows:
                    found[keys[bytes(row["key"])]] = np.frombuffer(row["vector"], dtype="<f4")
        except StoreError as error:
            self.database.warn_once("read the embedding cache", error)
        return found

    def put_many(self, model: str, dimensions: int | None, vectors: dict[str, np.ndarray]) -> None:
        now = time.time()
        rows = [(model, dimensions or 0, text_key(text), vector.astype("<f4").tobytes(), now)
                for text, vector in vectors.items()]
        try:
            with self.database.transaction() as db:
                db.executemany("INSERT OR REPLACE INTO embeddings (model, dimensions, key, vector, created) "
                               "VALUES (?, ?, ?, ?, ?)", rows)
        except StoreError as error:
            self.database.warn_once("save vectors in the embedding cache", error)

    def __repr__(self) -> str:
        return f"EmbeddingStore({self.database.path!r})"
