"""The Embeddings API over HTTP: one request embeds a list of texts (``POST /embeddings``).

Through the ChatClient's SDK client (one connection pool, its key, its retries: the SDK re-sends
on 429 and 5xx, honouring retry-after). Vectors are asked for as base64 (float32 bytes, a quarter
of the JSON) and decoded with numpy; a server that sends lists of floats anyway is read too.
Failures become the ChatClient's one-line ChatErrors; ``cut`` ends the requests in flight (the
``wire`` a stopped answer uses). Nothing of the SDK leaves this module.
"""

from __future__ import annotations

import base64
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .. import errors
from .chat import _retries_taken
from .wire import CURRENT_WIRE, Abandoned, Wire

if TYPE_CHECKING:
    import numpy as np

    from .chat import ChatClient


@dataclass(frozen=True)
class EmbeddedBatch:
    """The vectors of one request, in the order of its texts, and the tokens it was billed."""

    vectors: np.ndarray  # float32, one row per text
    prompt_tokens: int | None  # None: the server reported no usage
    model: str | None


class EmbeddingClient:
    """The Embeddings API of the endpoint a ChatClient talks to (thread-safe, like the SDK client).

    ``cut()`` ends every request in flight at once (their connections are shut, as a stopped
    answer's are) and refuses new ones: a call that was interrupted or failed leaves nothing
    running behind it. A ready ``openai.OpenAI`` given as ``client=`` cannot be cut that way: its
    requests in flight finish on their own.
    """

    def __init__(self, client: ChatClient) -> None:
        self.client = client
        self._lock = threading.Lock()
        self._wires: set[Wire] = set()
        self._cut = False

    def cut(self) -> None:
        """End the requests in flight now and send no more (from any thread)."""
        with self._lock:
            self._cut = True
            wires = list(self._wires)
        for wire in wires:
            wire.cut()

    def embed(self, model: str, texts: list[str], *, dimensions: int | None = None) -> EmbeddedBatch:
        """Embed ``texts`` in one request; ChatError with one line if it fails (after the SDK's retries)."""
        import numpy as np
        import openai

        extra: dict[str, Any] = {"dimensions": dimensions} if dimensions is not None else {}
        wire = Wire()
        with self._lock:
            if self._cut:
                raise errors.ChatError("the embeddings were stopped: this request is not sent")
            self._wires.add(wire)
        token = CURRENT_WIRE.set(wire)  # the connection registers with it as it sends
        try:
            response = self.client.sdk.embeddings.create(model=model, input=texts, encoding_format="base64", **extra)
        except (openai.APIError, Abandoned) as error:
            if wire.is_cut:
                raise errors.ChatError("the embeddings were stopped: this request was cut") from None
            raise self.client.map_error(error, model=model, retries=_retries_taken(error),
                                        path="/embeddings") from None
        finally:
            CURRENT_WIRE.reset(token)
            wire.release()
            with self._lock:
                self._wires.discard(wire)
        rows = sorted(response.data, key=lambda item: item.index)
        if len(rows) != len(texts):
            raise errors.StreamError(f"{self.client.base_url} returned {len(rows)} embeddings for {len(texts)} texts: "
                                     "check that base_url= is an OpenAI-compatible endpoint")
        vectors = np.stack([_vector(row.embedding) for row in rows]) if rows else np.zeros((0, 0), "<f4")
        usage = getattr(response, "usage", None)
        tokens = getattr(usage, "prompt_tokens", None)
        return EmbeddedBatch(vectors, tokens if isinstance(tokens, int) else None, getattr(response, "model", None))


def _vector(value: Any) -> np.ndarray:
    """One embedding as float32: base64 of little-endian float32 bytes, or a list of numbers."""
    import numpy as np

    if isinstance(value, str):
        return np.frombuffer(base64.b64decode(value), dtype="<f4")
    return np.asarray(value, dtype="<f4")
