"""``Chatbot.embed``: vectors for many texts, in input order, each text paid for once.

Texts come as a string, a list, a pandas Series or a DataFrame column. Identical texts are sent
once, and texts whose vector is cached (keyed by model, dimensions and text: the bot's
``embedding_cache``, the store's table when a store is attached, else one in memory) are not sent
at all. The rest go in batches within the API's limits (``MAX_INPUTS`` texts and
``MAX_REQUEST_TOKENS`` tokens per request), ``concurrency`` requests at a time, each batch's
vectors cached as soon as it arrives, so an interrupted or failed run resumes where it stopped.
A progress bar (``progress.RowProgress``) shows texts done, tokens and cost when there is more
than one request to wait for. What was paid goes to the bot's reply listeners (the ledger) as
one Reply per call, priced from the model table.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from .errors import ConfigurationError
from .models import ModelInfo, model_info
from .params import check_whole
from .reply import Reply, Usage
from .tokens import TokenCounter

if TYPE_CHECKING:
    import numpy as np

    from .client import ChatClient, EmbeddedBatch

__all__ = ["DEFAULT_MODEL", "EmbeddingCache", "MemoryEmbeddingCache", "embed", "texts_of"]

DEFAULT_MODEL = "text-embedding-3-small"
MAX_INPUTS = 2048  # texts per request (OpenAI's limit)
MAX_REQUEST_TOKENS = 300_000  # tokens per request, all texts together (OpenAI's limit)
DEFAULT_BATCH = 512  # texts per request unless batch_size= says otherwise
DEFAULT_CONCURRENCY = 4
MEMORY_CACHE_BYTES = 256 << 20  # vectors an in-memory cache keeps (least recently used go first)


class EmbeddingCache(Protocol):
    """Vectors already paid for, keyed by model, dimensions (None: the model's own) and text.
    Called from several threads at once."""

    def get_many(self, model: str, dimensions: int | None, texts: Sequence[str]) -> dict[str, np.ndarray]: ...

    def put_many(self, model: str, dimensions: int | None, vectors: dict[str, np.ndarray]) -> None: ...


class MemoryEmbeddingCache:
    """An EmbeddingCache in this process's memory, bounded to ``max_bytes`` of vectors."""

    def __init__(self, max_bytes: int = MEMORY_CACHE_BYTES) -> None:
        self.max_bytes = max_bytes
        self._vectors: OrderedDict[tuple[str, int | None, str], np.ndarray] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get_many(self, model: str, dimensions: int | None, texts: Sequence[str]) -> dict[str, np.ndarray]:
        found = {}
        with self._lock:
            for text in texts:
                vector = self._vectors.get((model, dimensions, text))
                if vector is not None:
                    self._vectors.move_to_end((model, dimensions, text))
                    found[text] = vector
        return found

    def put_many(self, model: str, dimensions: int | None, vectors: dict[str, np.ndarray]) -> None:
        with self._lock:
            for text, vector in vectors.items():
                old = self._vectors.pop((model, dimensions, text), None)
                self._bytes += vector.nbytes - (old.nbytes if old is not None else 0)
                self._vectors[(model, dimensions, text)] = vector
            while self._bytes > self.max_bytes and self._vectors:
                self._bytes -= self._vectors.popitem(last=False)[1].nbytes

    def __len__(self) -> int:
        return len(self._vectors)


class Embedder(Protocol):
    """What ``embed`` needs of a Chatbot (a Protocol: this module does not import chatbot)."""

    client: ChatClient
    embedding_cache: EmbeddingCache | None
    reply_listeners: list[Callable[[Reply], None]]


def embed(bot: Embedder, items: Any, *, model: str = DEFAULT_MODEL, dimensions: int | None = None,
          column: str | None = None, batch_size: int | None = None, concurrency: int = DEFAULT_CONCURRENCY,
          progress: bool | None = None) -> np.ndarray:
    """A float32 array with one row per item, in input order (see the module docstring).

    ``dimensions`` is passed to the API (text-embedding-3 models shorten their vectors);
    ``progress`` None shows a bar when more than one request is needed. Bad input is one
    ConfigurationError line, raised before anything is sent.
    """
    import numpy as np

    check_whole("dimensions", dimensions, 1)
    check_whole("batch_size", batch_size, 1)
    check_whole("concurrency", concurrency, 1)
    if batch_size is not None and batch_size > MAX_INPUTS:
        raise ConfigurationError(f"batch_size must be at most {MAX_INPUTS:,} (texts per request the API takes), "
                                 f"got {batch_size:,}")
    texts = texts_of(items, column)
    info = model_info(model)
    if bot.embedding_cache is None:
        bot.embedding_cache = MemoryEmbeddingCache()
    cache = bot.embedding_cache
    unique = list(dict.fromkeys(texts))
    vectors = cache.get_many(model, dimensions, unique)
    missing = [text for text in unique if text not in vectors]
    counts = _token_counts(missing, info)
    batches = _batches(missing, counts, batch_size or DEFAULT_BATCH)
    show = progress if progress is not None else len(batches) > 1
    run = _Run(bot, info, dimensions, cache, counts)
    from .progress import RowProgress

    with RowProgress(len(unique), description=f"embed {model}", resumed=len(vectors), show=show) as bar:
        run.bar = bar
        try:
            vectors.update(run.send_all(batches, concurrency))
        except KeyboardInterrupt:
            bar.note("interrupted: the vectors received are cached, the same call asks only the rest")
            raise
        finally:
            run.close()
    if not texts:
        return np.zeros((0, dimensions or 0), dtype="<f4")
    return np.stack([vectors[text] for text in texts])


def texts_of(items: Any, column: str | None = None) -> list[str]:
    """The texts of ``items``: a string, an iterable of strings, a pandas Series, or a DataFrame
    (its ``column``, or its only column). Anything that is not a non-empty string is one line."""
    if hasattr(items, "columns") and hasattr(items, "iloc"):  # a DataFrame
        names = list(items.columns)
        if column is None and len(names) != 1:
            raise ConfigurationError(f"embed: the DataFrame has {len(names)} columns; name the one to embed with "
                                     f"column= (e.g. column={names[0]!r})" if names else "embed: the DataFrame "
                                     "has no columns")
        name = names[0] if column is None else column
        if name not in names:
            raise ConfigurationError(f"embed: no column {name!r} in the DataFrame (columns: "
                                     f"{', '.join(map(str, names))})")
        items = items[name]
    elif column is not None:
        raise ConfigurationError("embed: column= applies to a DataFrame only")
    if isinstance(items, str):
        values: list[Any] = [items]
    elif hasattr(items, "tolist") and hasattr(items, "index"):  # a Series: its values, not its index
        values = items.tolist()
    elif isinstance(items, Iterable) and not isinstance(items, (bytes, dict)):
        values = list(items)
    else:
        raise ConfigurationError(f"embed takes a string, a list of strings, a Series or a DataFrame column, got "
                                 f"{type(items).__name__}")
    for position, value in enumerate(values):
        if not isinstance(value, str):
            raise ConfigurationError(f"embed: item {position} is not text ({type(value).__name__} {value!r:.40}): "
                                     "drop or fill missing values first")
        if not value:
            raise ConfigurationError(f"embed: item {position} is empty: the Embeddings API rejects empty texts")
    return values


def _token_counts(texts: list[str], info: ModelInfo) -> dict[str, int]:
    """Each text's tokens; a text over the model's input limit is one line, before anything is sent."""
    counter = TokenCounter(info)
    counts = {text: counter.count_text(text) for text in texts}
    if info.known:
        for position, (text, count) in enumerate(counts.items()):
            if count > info.context_window:
                raise ConfigurationError(
                    f"embed: a text of {count:,} tokens is over {info.name}'s {info.context_window:,}-token limit "
                    f"(unique text {position}: {text[:40]!r}…): shorten or split it")
    return counts


def _batches(texts: list[str], counts: dict[str, int], size: int) -> list[list[str]]:
    """``texts`` cut into requests of at most ``size`` texts and ``MAX_REQUEST_TOKENS`` tokens."""
    batches: list[list[str]] = []
    current: list[str] = []
    tokens = 0
    for text in texts:
        if current and (len(current) >= size or tokens + counts[text] > MAX_REQUEST_TOKENS):
            batches.append(current)
            current, tokens = [], 0
        current.append(text)
        tokens += counts[text]
    if current:
        batches.append(current)
    return batches


@dataclass
class _Run:
    """One call's requests: sent from a thread pool, each batch cached as it arrives, usage tallied
    for the ledger (a batch that arrives after the call gave up is recorded on its own)."""

    bot: Embedder
    info: ModelInfo
    dimensions: int | None
    cache: EmbeddingCache
    counts: dict[str, int]
    bar: Any = None
    tokens: int = 0
    counted: bool = False  # some batch's usage is our own count (the server reported none)
    requests: int = 0
    done: int = 0
    started: float = field(default_factory=time.perf_counter)
    closed: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def send_all(self, batches: list[list[str]], concurrency: int) -> dict[str, np.ndarray]:
        from .client import EmbeddingClient

        received: dict[str, np.ndarray] = {}
        if not batches:
            return received
        client = EmbeddingClient(self.bot.client)
        waiting = iter(batches)
        workers = min(concurrency, len(batches))
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="llmchat-embed")
        # Only ``concurrency`` requests are handed to the pool at a time, so once one fails (or the
        # user interrupts) no new request starts: only those already in flight finish.
        pending: set[Future[dict[str, np.ndarray]]] = {pool.submit(self._send, client, batch)
                                                        for batch in itertools.islice(waiting, workers)}
        try:
            while pending:
                finished, pending = wait(pending, timeout=0.25, return_when=FIRST_COMPLETED)
                for future in finished:
                    received.update(future.result())  # a ChatError of one batch ends the call
                    pending |= {pool.submit(self._send, client, batch) for batch in itertools.islice(waiting, 1)}
        except BaseException:
            client.cut()  # interrupted or failed: the requests in flight end now, nothing runs behind
            raise
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
        return received

    def _send(self, client: Any, batch: list[str]) -> dict[str, np.ndarray]:
        answer: EmbeddedBatch = client.embed(self.info.name, batch, dimensions=self.dimensions)
        vectors = dict(zip(batch, answer.vectors))
        self.cache.put_many(self.info.name, self.dimensions, vectors)  # paid for: kept whatever happens next
        tokens = answer.prompt_tokens
        counted = tokens is None
        if tokens is None:
            tokens = sum(self.counts[text] for text in batch)
        with self._lock:
            late = self.closed
            if not late:
                self.tokens += tokens
                self.counted = self.counted or counted
                self.requests += 1
                self.done += len(batch)
                if self.bar is not None:
                    self.bar.set_counts(done=self.bar.resumed + self.done, failed=0, tokens=self.tokens,
                                        cost=self._cost(self.tokens) or 0.0)
        if late:
            self._notify(tokens, counted, 1, len(batch))
        return vectors

    def close(self) -> None:
        """The call is over: tell the listeners what it paid (once)."""
        with self._lock:
            self.closed = True
            tokens, counted, requests, done = self.tokens, self.counted, self.requests, self.done
        if requests:
            self._notify(tokens, counted, requests, done)

    def _cost(self, tokens: int) -> float | None:
        return self.info.cost(tokens, 0)

    def _notify(self, tokens: int, counted: bool, requests: int, texts: int) -> None:
        reply = Reply(text="", model=self.info.name, usage=Usage(tokens, 0, 0, "counted" if counted else "reported"),
                      cost=self._cost(tokens), total_time=time.perf_counter() - self.started,
                      request={"model": self.info.name, "endpoint": "embeddings", "texts": texts,
                               "requests": requests, "dimensions": self.dimensions})
        for listener in list(self.bot.reply_listeners):
            listener(reply)
