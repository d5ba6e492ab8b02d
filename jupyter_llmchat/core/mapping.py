"""``Chatbot.map``: one prompt over many rows, each an independent question, answers in input order.

Each row's request is the bot's system message (plus the schema's instruction in JSON mode) and
the row's question, with the bot's parameters and the schema's ``response_format``: no history
is read or written. A row's key is the SHA-256 of that request (``rows``), so:

- resuming: rows answered before are taken from the row store (``store=``, or the one a Store
  attached to the bot) and the response cache, and only the others are asked. Answers are
  recorded as they arrive (a batch per moment, one transaction), so after a crash, an interrupt
  or a kernel restart the same call asks only what is missing;
- identical rows are asked once.

The rows are asked concurrently (``map_runner``: adaptive concurrency, retries with backoff,
one repair round for an answer that does not match the schema) on an event loop in a helper
thread, while this thread records answers, updates the progress bar and listens for
KeyboardInterrupt or ``Chatbot.stop()``: either ends the run within a moment and returns what
is done (the other rows "pending"). ``mode="batch"`` sends the same rows through the provider's
Batch API instead (``batch``). ``estimate`` (``dry_run=True``) counts the prompt tokens exactly and
prices the run from nothing to every answer ``max_tokens`` long, before anything is sent.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import queue
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from . import errors
from .client import AsyncChat
from .concurrency import LimitStats
from .map_items import Items, MapResults, frame_of, questions, read_items, value_of
from .map_runner import BACKOFF, MapRunner, RunOptions
from .messages import clean_text
from .models import ModelInfo, format_cost
from .params import check_params, check_whole
from .progress import RowProgress
from .reply import Reply
from .rows import RowRequest, RowResult
from .stopping import WAIT_SLICE, StopToken
from .structured import answer_schema, parse_answer, response_format_for, schema_instruction
from .tokens import TokenCounter

if TYPE_CHECKING:
    from .client import ChatClient

MODES = ("concurrent", "batch")
Notify = Callable[[Reply], None]  # the bot's reply listeners (the ledger, the demo marker)
DEFAULT_CONCURRENCY = 8
DEFAULT_RETRIES = 5
STOP_GRACE = 1.0  # seconds a stopped run may take to hand over what finished
SAVE_EVERY = 0.25  # seconds between store writes while rows arrive (one transaction each)
NOT_ASKED = "not asked: the map was interrupted; the same call asks it"


class RowStore(Protocol):
    """Where answered rows are kept for resuming (``store.map_rows.MapRows``)."""

    def answered(self, keys: Sequence[str]) -> dict[str, RowResult]: ...

    def save(self, rows: Sequence[tuple[RowRequest, RowResult]]) -> None: ...


class _Cache(Protocol):
    def lookup(self, request: dict[str, Any]) -> Reply | None: ...

    def save(self, request: dict[str, Any], reply: Reply) -> None: ...


class MapBot(Protocol):
    """What ``map`` needs of a Chatbot (a Protocol: this module does not import chatbot)."""

    client: ChatClient
    routes: Any  # providers.Routes: where a model (a provider-prefixed one too) is sent
    vision: bool | None
    params: dict[str, Any]
    context_window: int | None
    cache: Any
    row_store: Any
    batch_jobs: Any

    @property
    def model(self) -> str: ...

    @property
    def system(self) -> str | None: ...


@dataclass
class MapPlan:
    """Every row's request, decided before anything is sent."""

    items: Items
    requests: list[RowRequest]
    keys: list[str]
    model: str  # as the caller named it ("groq:llama-3.1-8b-instant"); the requests carry the name sent
    info: ModelInfo
    client: ChatClient  # the endpoint the model is served at
    schema: Any = None
    json_schema: dict[str, Any] | None = None
    max_tokens: int | None = None


@dataclass(frozen=True)
class MapEstimate:
    """What a map would send and cost, before it runs: exact prompt tokens of the rows to ask, and
    the cost from answers of no tokens (``cost_low``) to answers all ``max_tokens`` long (``cost_high``)."""

    model: str
    rows: int
    answered: int  # found in the row store or the response cache: not asked again
    to_ask: int  # distinct requests to send (identical rows are asked once)
    prompt_tokens: int
    max_tokens: int  # per answer: max_tokens, or the model's output limit when max_tokens is unset
    max_tokens_set: bool
    cost_low: float | None
    cost_high: float | None

    def __str__(self) -> str:
        bound = "max_tokens" if self.max_tokens_set else "the model's output limit: set max_tokens= for a tighter bound"
        before = f", {self.answered:,} answered before" if self.answered else ""
        return (f"{self.model}: {self.rows:,} rows{before}, {self.to_ask:,} to ask; "
                f"{self.prompt_tokens:,} prompt tokens; cost {format_cost(self.cost_low)} to "
                f"{format_cost(self.cost_high)} (answers of 0 to {self.max_tokens:,} tokens each, {bound})")

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(str(self))  # IPython shows the sentence, as plain text


def map_items(bot: MapBot, items: Any, template: str | None = None, *, schema: Any = None,
              concurrency: int = DEFAULT_CONCURRENCY, mode: str = "concurrent", store: Any = None,
              resume: bool = True, retries: int = DEFAULT_RETRIES, progress: bool = True, dry_run: bool = False,
              stop: StopToken | None = None, notify: Notify | None = None, backoff: float = BACKOFF,
              **overrides: Any) -> Any:
    """``Chatbot.map``: plan the rows, then estimate them (``dry_run``) or run them."""
    plan = plan_map(bot, items, template, schema=schema, **overrides)
    rows = row_store_of(bot, store)
    if dry_run:
        return estimate(bot, plan, store=rows, resume=resume)
    return run_map(bot, plan, concurrency=concurrency, retries=retries, store=rows, resume=resume, progress=progress,
                   mode=mode, stop=stop, notify=notify, backoff=backoff)


def estimate_items(bot: MapBot, items: Any, template: str | None = None, *, schema: Any = None, store: Any = None,
                   resume: bool = True, **overrides: Any) -> MapEstimate:
    """``Chatbot.estimate_map``: what ``map`` with the same arguments would send and cost."""
    plan = plan_map(bot, items, template, schema=schema, **overrides)
    return estimate(bot, plan, store=row_store_of(bot, store), resume=resume)


def plan_map(bot: MapBot, items: Any, template: str | None, *, schema: Any = None,
             **overrides: Any) -> MapPlan:
    """Each row's request (see the module docstring); a ConfigurationError before anything is sent."""
    read = read_items(items)
    texts = questions(read, template)
    model = overrides.pop("model", None) or bot.model
    system = overrides.pop("system", True)
    if schema is not None and overrides.get("response_format") is not None:
        raise errors.ConfigurationError("schema= sets response_format itself: leave response_format out")
    check_params(overrides)
    params = {**bot.params, **{k: v for k, v in overrides.items() if v is not None}}
    route = bot.routes.route(model, bot.client, context_window=bot.context_window, vision=bot.vision)
    info = route.info  # (a local server is asked about the model once)
    system_text = bot.system if system is True else (system if isinstance(system, str) and system else None)
    json_schema = None
    if schema is not None:
        spec = answer_schema(schema)
        format_params, strict = response_format_for(spec, info)
        params.update(format_params)
        if not strict:  # JSON mode: the model learns the schema from the system message
            instruction = schema_instruction(spec)
            system_text = f"{system_text}\n\n{instruction}" if system_text else instruction
        json_schema = spec.json_schema
    max_tokens = params.get("max_tokens")
    if info.reasoning and "max_tokens" in params:
        params["max_completion_tokens"] = params.pop("max_tokens")
    head = [{"role": "system", "content": clean_text(system_text)}] if system_text else []
    requests = [RowRequest(index, route.model, [*head, {"role": "user", "content": clean_text(text)}], params)
                for index, text in enumerate(texts)]
    return MapPlan(read, requests, [request.key for request in requests], model, info, route.client, schema,
                   json_schema, max_tokens)


def estimate(bot: MapBot, plan: MapPlan, *, store: RowStore | None = None, resume: bool = True) -> MapEstimate:
    """Tokens and the cost range of ``plan``'s rows not answered yet."""
    found = _answered_before(bot, plan, store) if resume else {}
    unique: dict[str, RowRequest] = {}
    for request, key in zip(plan.requests, plan.keys):
        if key not in found:
            unique.setdefault(key, request)
    counter = TokenCounter(plan.info)
    prompt = sum(counter.count_api_messages(request.messages) for request in unique.values())
    per_answer = plan.max_tokens if plan.max_tokens is not None else plan.info.max_output
    low = plan.info.cost(prompt, 0)
    high = plan.info.cost(prompt, per_answer * len(unique))
    answered = sum(1 for key in plan.keys if key in found)
    return MapEstimate(plan.model, len(plan.requests), answered, len(unique), prompt, per_answer,
                       plan.max_tokens is not None, low, high)


def run_map(bot: MapBot, plan: MapPlan, *, concurrency: int = DEFAULT_CONCURRENCY, retries: int = DEFAULT_RETRIES,
            store: RowStore | None = None, resume: bool = True, progress: bool = True, mode: str = "concurrent",
            stop: StopToken | None = None, notify: Notify | None = None, backoff: float = BACKOFF) -> Any:
    """Ask ``plan``'s rows; the results in input order (a list, or a DataFrame for a DataFrame).
    ``notify`` hears of every row that was asked, as a Reply (the ledger counts it)."""
    check_whole("concurrency", concurrency, 1)
    check_whole("retries", retries, 0)
    if mode not in MODES:
        raise errors.ConfigurationError(f"mode must be \"concurrent\" or \"batch\", got {mode!r}")
    stop = stop or StopToken()
    results: list[RowResult | None] = [None] * len(plan.requests)
    found = _answered_before(bot, plan, store) if resume else {}
    seen: set[str] = set()
    for position, key in enumerate(plan.keys):
        if key in found:
            results[position] = _placed(found[key], position, first=key not in seen)
            seen.add(key)
    pending: dict[str, RowRequest] = {}
    for request, key in zip(plan.requests, plan.keys):
        if key not in found:
            pending.setdefault(key, request)
    where: dict[str, list[int]] = {key: [] for key in pending}  # key -> positions asking it
    for position, key in enumerate(plan.keys):
        if key in where:
            where[key].append(position)
    recorder = _Recorder(bot, plan, store, where, results, notify)
    bar = RowProgress(len(results), resumed=len(results) - sum(len(p) for p in where.values()), show=progress)
    interrupted = False
    stopped: str | None = None
    job_id: str | None = None
    stats: LimitStats | None = None
    with bar:
        if pending:
            if mode == "batch":
                interrupted, job_id = _run_batch(bot, plan, list(pending.values()), recorder, bar, stop)
            else:
                interrupted, stopped, stats = _run_concurrent(bot, plan, pending, recorder, bar, stop,
                                                              RunOptions(concurrency, retries, backoff))
        with HeldInterrupts():
            recorder.flush()
        interrupted = interrupted and any(result is None for result in results)  # a stop after the last row is none
        if interrupted:
            bar.note("interrupted", "interrupted: the same call asks the rows not answered")
        elif stopped:
            bar.note("stopped", f"stopped, no further row asked: {stopped}")
    rows = [result if result is not None else RowResult(position, plan.keys[position], "pending",
                                                        error=f"not asked: {stopped}" if stopped else NOT_ASKED)
            for position, result in enumerate(results)]
    if stopped:
        rows = [row if row.status != "pending" else RowResult(row.index, row.key, "failed", error=row.error)
                for row in rows]
    if plan.items.kind == "frame":
        frame = frame_of(plan.items, rows, plan.json_schema if plan.schema is not None else None)
        frame.attrs["map"] = {"interrupted": interrupted, "stopped": stopped, "job_id": job_id, "rows": len(rows),
                              "failed": sum(1 for row in rows if row.status != "done")}
        return frame
    return MapResults([value_of(row, plan.schema) for row in rows], rows, interrupted=interrupted, stopped=stopped,
                      job_id=job_id, stats=stats)


# -- the concurrent run -----------------------------------------------------------------------------
def _run_concurrent(bot: MapBot, plan: MapPlan, pending: dict[str, RowRequest], recorder: _Recorder,
                    bar: RowProgress, stop: StopToken,
                    options: RunOptions) -> tuple[bool, str | None, LimitStats | None]:
    """Ask the pending rows on an AsyncChat's loop; record them here as they come. Returns
    (interrupted, why the run stopped early if it did, what the concurrency did)."""
    outbox: queue.SimpleQueue[RowResult] = queue.SimpleQueue()
    schema = plan.schema
    parse = (lambda text: parse_answer(text, schema)) if schema is not None else None
    interrupted = False
    with AsyncChat(plan.client.sdk) as chat:
        runner = MapRunner(chat, list(pending.values()), list(pending), outbox, describe=plan.client.map_error,
                           info=plan.info, parse=parse, options=options)
        future = chat.submit(runner.run())
        halt = _halter(chat, runner)
        stop.on_stop(halt)
        try:
            _pump(future, outbox, recorder, bar, stop)
        except KeyboardInterrupt:
            interrupted = True
        finally:
            stop.forget(halt)
            if not future.done():
                interrupted = True
                halt()
                _wait_quietly(future, STOP_GRACE)
            with HeldInterrupts():  # interrupted already: a second Ctrl-C must not lose what finished
                recorder.take(_drained(outbox), bar=bar)
        if future.done() and not future.cancelled() and future.exception() is not None:
            raise future.exception()  # type: ignore[misc]
    fatal = runner.fatal
    stats = runner.limit.stats if runner.limit is not None else None
    return interrupted or stop.stopped, str(fatal) if fatal is not None else None, stats


def _halter(chat: AsyncChat, runner: MapRunner) -> Callable[[], None]:
    def halt() -> None:
        chat.call_soon(runner.stop)

    return halt


def _pump(future: concurrent.futures.Future[None], outbox: queue.SimpleQueue[RowResult], recorder: _Recorder,
          bar: RowProgress, stop: StopToken) -> None:
    """Record rows as they arrive until the run ends (or is stopped: returns at once). Ctrl-C is
    held back while rows are taken and recorded (a row taken from the queue is never dropped): it
    lands between two looks at the queue, a slice apart at most."""
    while not stop.stopped:
        with HeldInterrupts() as held:
            try:
                first: RowResult | None = outbox.get(timeout=WAIT_SLICE)
            except queue.Empty:
                first = None
            if first is not None:
                recorder.take([first, *_drained(outbox)], bar=bar)
        if held.caught:
            raise KeyboardInterrupt
        if first is None and future.done():
            return


def _drained(outbox: queue.SimpleQueue[RowResult]) -> list[RowResult]:
    taken = []
    while True:
        try:
            taken.append(outbox.get_nowait())
        except queue.Empty:
            return taken


def _wait_quietly(future: concurrent.futures.Future[None], seconds: float) -> None:
    """Give a stopped run up to ``seconds`` to hand over what finished (a second Ctrl-C ends the wait)."""
    deadline = time.monotonic() + seconds
    while not future.done() and time.monotonic() < deadline:
        try:
            future.result(timeout=min(WAIT_SLICE, max(deadline - time.monotonic(), 0)))
        except concurrent.futures.TimeoutError:
            continue
        except KeyboardInterrupt:
            return
        except BaseException:
            return  # the run's own failure: the caller raises it


# -- the Batch API run ------------------------------------------------------------------------------
def _run_batch(bot: MapBot, plan: MapPlan, requests: list[RowRequest], recorder: _Recorder, bar: RowProgress,
               stop: StopToken) -> tuple[bool, str]:
    """Send the rows through the provider's Batch API (``batch``): each row is recorded as its
    batch is collected, the bar follows the job. Returns (interrupted, the job's id)."""
    from .batch import BatchRunner, parse_rows, show_on

    def record(row: RowResult) -> None:
        with HeldInterrupts() as held:  # recorded whole, or not at all
            recorder.take([row], bar=None, notify=False)
        if held.caught:
            raise KeyboardInterrupt

    # The runner tells the ledger of each row itself (at the batch price), so the recorder does not.
    runner = BatchRunner(plan.client, bot.batch_jobs, notify=recorder.notify, on_result=record,
                         progress=show_on(bar, resumed=bar.resumed))
    stop.on_stop(runner.stop)
    try:
        # Rows a running job already carries (this call was made before and its kernel died, or its
        # wait was stopped) are waited for, not sent and paid again; the others go out as a new job.
        job_ids, rows = runner.run(requests)
        rows = parse_rows(rows, plan.schema)
    finally:
        stop.forget(runner.stop)
    recorder.place([row for row in rows if row.status != "pending"])
    return any(row.status == "pending" for row in rows) or stop.stopped, job_ids[-1]


# -- recording ----------------------------------------------------------------------------------------
@dataclass(eq=False, repr=False)
class _Recorder:
    """Places each finished row at its positions and keeps it: the bot's reply listeners hear of
    it (the ledger), the row store keeps it (a batch per ``SAVE_EVERY`` seconds, one transaction),
    and so does the response cache."""

    bot: MapBot
    plan: MapPlan
    store: RowStore | None
    where: dict[str, list[int]]  # a row's request key -> its positions in ``results``
    results: list[RowResult | None]
    notify: Notify | None
    _unsaved: list[tuple[RowRequest, RowResult]] = field(default_factory=list, init=False)
    _saved_at: float = field(default_factory=time.monotonic, init=False)

    def take(self, finished: list[RowResult], *, bar: RowProgress | None, notify: bool = True) -> None:
        if not finished:
            return
        shown: list[RowResult] = []
        for result in finished:
            positions = self.where.get(result.key)
            if not positions:
                continue
            request = self.plan.requests[positions[0]]
            if notify and self.notify is not None and result.attempts:
                reply = _reply(request, result)
                self.notify(reply)
                result.cost = reply.cost  # a listener may price it (the offline demo's answers cost nothing)
            self._unsaved.append((request, result))
            self._cache(request, result)
            shown += self._place(result, positions)
        if bar is not None:
            bar.add_many(shown)
        if time.monotonic() - self._saved_at >= SAVE_EVERY:
            self.flush()

    def place(self, finished: list[RowResult]) -> None:
        """Put final versions of rows already taken (parsed after the fact) in their places."""
        for result in finished:
            self._place(result, self.where.get(result.key, []))

    def _place(self, result: RowResult, positions: list[int]) -> list[RowResult]:
        placed = [_placed(result, position, first=number == 0) for number, position in enumerate(positions)]
        for position, row in zip(positions, placed):
            self.results[position] = row
        return placed

    def flush(self) -> None:
        unsaved, self._unsaved = self._unsaved, []
        self._saved_at = time.monotonic()
        if self.store is not None and unsaved:
            self.store.save(unsaved)

    def _cache(self, request: RowRequest, result: RowResult) -> None:
        cache = self.bot.cache
        if cache is None or result.status != "done" or not result.attempts:
            return
        cache.save(_as_request(request), _reply(request, result))


def _reply(request: RowRequest, result: RowResult) -> Reply:
    """A row as a Reply, for the listeners and the cache (one row, one request, one reply)."""
    done = result.status == "done"
    return Reply(text=result.text or "", model=request.model, status="complete" if done else "failed",
                 finish_reason="stop" if done else None, usage=result.usage, cost=result.cost, error=result.error,
                 request={"model": request.model, "params": request.params, "map": True})


class HeldInterrupts:
    """Hold Ctrl-C (SIGINT) back while a block runs, so what it records is recorded whole; ``caught``
    says whether one came. Only in the main thread with a Python handler in place; elsewhere a no-op."""

    def __init__(self) -> None:
        self.caught = False
        self._previous: Any = None

    def __enter__(self) -> HeldInterrupts:
        if threading.current_thread() is threading.main_thread():
            previous = signal.getsignal(signal.SIGINT)
            if callable(previous):  # Python's own handler (or ipykernel's): ours stands in for it a moment
                signal.signal(signal.SIGINT, self._hold)
                self._previous = previous
        return self

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None

    def _hold(self, signum: int, frame: Any) -> None:
        self.caught = True


def _answered_before(bot: MapBot, plan: MapPlan, store: RowStore | None) -> dict[str, RowResult]:
    """Rows answered before, by key: from the row store, then the response cache; each parsed
    again with the plan's schema (one that no longer parses is asked again)."""
    found = dict(store.answered(list(dict.fromkeys(plan.keys)))) if store is not None else {}
    cache: _Cache | None = bot.cache
    if cache is not None:
        for request, key in zip(plan.requests, plan.keys):
            if key in found:
                continue
            reply = cache.lookup(_as_request(request))
            if reply is not None and reply.status == "complete":
                found[key] = RowResult(request.index, key, "done", text=reply.text, usage=reply.usage, cost=0.0)
    if plan.schema is not None:
        for key, result in list(found.items()):
            try:
                result.parsed = parse_answer(result.text or "", plan.schema)
            except errors.StructuredAnswerError:
                del found[key]
    return found


def _placed(result: RowResult, position: int, *, first: bool = True) -> RowResult:
    """``result`` at ``position``. Identical rows share one answer: the first carries its usage and
    cost, the others cost nothing (they were not asked)."""
    if first:
        return result if result.index == position else dataclasses.replace(result, index=position)
    return dataclasses.replace(result, index=position, usage=None, cost=0.0 if result.cost is not None else None,
                               attempts=0)


def _as_request(request: RowRequest) -> dict[str, Any]:
    """The request as the response cache keys it (what ``PreparedRequest.as_request`` gives)."""
    return {"model": request.model, "messages": request.messages, "params": request.params}


def row_store_of(bot: MapBot, store: Any) -> RowStore | None:
    """The row store a map uses: ``store=`` (a RowStore, or a Store: its ``map_rows()``), else
    the one a Store attached to the bot; ``store=False`` keeps nothing."""
    if store is False:
        return None
    if store is None:
        return bot.row_store
    if hasattr(store, "answered") and hasattr(store, "save"):
        return store
    make = getattr(store, "map_rows", None)
    if callable(make):
        return make()
    raise errors.ConfigurationError(f"store= takes a Store (or its map_rows()), None or False, got "
                                    f"{type(store).__name__}")
