"""The concurrent runner of ``Chatbot.map``: asks rows on an event loop, each on its own, at an
adaptive concurrency, and hands every finished row to the caller's thread.

Each row is an independent request. Its attempts share the fleet's ``AdaptiveLimit`` (AIMD: a
429 halves it, answers grow it back); a failed attempt that may succeed later (429, 408, 409,
5xx, a dropped connection, a garbled body) is asked again after the wait the server asked for
(retry-after) or an exponential backoff with jitter, up to ``retries`` times. An answer that does
not match the schema gets one repair round (the validation error sent back). A failure no row
can escape (a rejected key, an unknown model, an endpoint that cannot be reached or is not an
API) ends the run: no further row is sent, and ``fatal`` says why.

Finished rows go into ``outbox`` (a thread-safe queue) as they come: the caller's thread records
them, so the loop never waits for SQLite or a progress bar. ``stop()`` (in the loop's thread)
cancels every row in flight at once; what finished before stays finished.
"""

from __future__ import annotations

import asyncio
import queue
import random
from collections import deque
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass, field
from typing import Any

from . import errors
from .client import AsyncChat, AttemptFailed, Completion
from .concurrency import AdaptiveLimit
from .models import ModelInfo
from .reply import STATUS_NOTICES, Usage
from .rows import RowRequest, RowResult
from .tokens import TokenCounter

BACKOFF = 0.5  # seconds before the first retry without retry-after; doubles each time
MAX_BACKOFF = 20.0  # the longest backoff between two attempts of a row (a retry-after is waited out as asked)
MAX_RETRY_AFTER = 60.0  # a retry-after longer than this fails the row (it would stall the run)
REPAIR = "That answer is not valid: {error}. Reply with only the corrected JSON object."

# One-line ChatError for an attempt's failure: ChatClient.map_error.
Describe = Callable[..., errors.ChatError]
# The row's parsed object from its answer, or StructuredAnswerError (structured.parse_answer).
Parse = Callable[[str], Any]


@dataclass(frozen=True)
class RunOptions:
    concurrency: int = 8
    retries: int = 5  # further attempts per row after the first
    backoff: float = BACKOFF


@dataclass(eq=False, repr=False)  # a runner is one run: compared by identity, not shown field by field
class MapRunner:
    """Asks ``rows`` (see the module docstring); ``await run()``, from the AsyncChat's loop."""

    chat: AsyncChat
    rows: list[RowRequest]
    keys: list[str]  # the request key of each row, in the same order
    outbox: queue.SimpleQueue[RowResult]
    _: KW_ONLY
    describe: Describe
    info: ModelInfo  # the model's prices and encoding (all rows ask the same model)
    parse: Parse | None = None
    options: RunOptions = RunOptions()
    limit: AdaptiveLimit | None = field(default=None, init=False)  # made by run(), in the loop
    fatal: errors.ChatError | None = field(default=None, init=False)  # why the run ended before every row was asked
    _workers: list[asyncio.Task[None]] = field(default_factory=list, init=False)
    _stopped: bool = field(default=False, init=False)

    async def run(self) -> None:
        """Ask every row; returns when all are finished, stopped, or a fatal failure ended the run."""
        self.limit = AdaptiveLimit(self.options.concurrency)
        todo = deque(zip(self.rows, self.keys))
        # More workers than the limit: a row waiting out its backoff does not hold back the others.
        count = min(len(todo), 2 * self.options.concurrency)
        self._workers = [asyncio.ensure_future(self._work(todo)) for _ in range(count)]
        if self._stopped:
            self.stop()
        await asyncio.gather(*self._workers, return_exceptions=True)
        for worker in self._workers:  # a bug in a worker is raised, not lost
            if not worker.cancelled() and worker.exception() is not None:
                raise worker.exception()  # type: ignore[misc]

    def stop(self) -> None:
        """Cancel every row in flight now (call in the loop's thread)."""
        self._stopped = True
        for worker in self._workers:
            worker.cancel()

    async def _work(self, todo: deque[tuple[RowRequest, str]]) -> None:
        limit = self.limit
        assert limit is not None
        while not self._stopped and self.fatal is None:
            epoch = await limit.acquire()  # a place first, then a row: rows go out in input order
            if not todo or self.fatal is not None:
                await limit.release()
                return
            row, key = todo.popleft()
            result = await self._ask(row, key, epoch)
            if result is not None:
                self.outbox.put(result)

    async def _ask(self, row: RowRequest, key: str, epoch: int) -> RowResult | None:
        """The row's result; None when the run ended before it was answered (it stays pending).
        The caller holds a place for its first attempt, taken in ``epoch``."""
        result = RowResult(row.index, key)
        answer = await self._attempts(row, row.messages, result, held=epoch)
        if answer is None:
            return self._unanswered(result)
        if self._finish(row.messages, answer, result):  # whole, but not the schema's: one repair round
            repair = [*row.messages, {"role": "assistant", "content": answer.text},
                      {"role": "user", "content": REPAIR.format(error=result.error)}]
            again = await self._attempts(row, repair, result)
            if again is None:
                return self._unanswered(result)
            self._finish(repair, again, result, repaired=True)
        return result

    def _unanswered(self, result: RowResult) -> RowResult | None:
        """A row whose attempts ended without an answer: failed with its error, or (the run ended
        before it got one) not asked at all."""
        return result if result.error is not None else None

    async def _attempts(self, row: RowRequest, messages: list[dict[str, Any]], result: RowResult, *,
                        held: int | None = None) -> Completion | None:
        """Send until answered or out of retries; None when the row failed (``result.error`` set)
        or the run ended first. ``held``: the epoch of a place already taken for the first attempt."""
        limit = self.limit
        assert limit is not None
        tries = 0
        while True:
            epoch = held if held is not None else await limit.acquire()
            held = None
            try:
                if self.fatal is not None:
                    return None
                tries += 1
                result.attempts += 1
                try:
                    outcome: Completion | AttemptFailed = await self.chat.complete(row.model, messages, row.params)
                except AttemptFailed as failed:
                    if failed.throttled:
                        limit.throttled(epoch)
                    outcome = failed
                else:
                    limit.succeeded()
            finally:
                await limit.release()
            if isinstance(outcome, Completion):
                return outcome
            wait = self._wait(outcome, tries)
            if wait is None:
                error = self.describe(outcome.cause, model=row.model, retries=tries - 1, stage=outcome.stage)
                if _fatal(error, outcome) and self.fatal is None:
                    self.fatal = error
                result.status, result.error = "failed", str(error)
                return None
            await asyncio.sleep(wait)

    def _wait(self, failed: AttemptFailed, tries: int) -> float | None:
        """Seconds before the next attempt, or None when the row should not be asked again."""
        if not failed.retryable or tries > self.options.retries:
            return None
        after = failed.retry_after
        if after is not None and after > MAX_RETRY_AFTER:
            return None
        if after is not None and after > 0:  # as the server asked, plus a little: not all at once
            return after + random.uniform(0, 0.1 * after)
        backoff = min(self.options.backoff * 2 ** (tries - 1), MAX_BACKOFF)
        return random.uniform(backoff / 2, backoff)  # jitter: rows that failed together do not return together

    def _finish(self, messages: list[dict[str, Any]], answer: Completion, result: RowResult, *,
                repaired: bool = False) -> bool:
        """Fill ``result`` from a whole answer: done, or failed with the reason (its text kept).
        True when the answer did not match the schema and a repair round may help."""
        usage = answer.usage
        if usage is None and answer.text:  # the endpoint reported none: our own exact counts
            counter = TokenCounter(self.info)
            usage = Usage(counter.count_api_messages(messages), counter.count_text(answer.text), 0, source="counted")
        cost = self.info.cost(usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens) if usage else None
        if repaired and result.usage is not None and usage is not None:  # both rounds were paid for
            cost = None if cost is None or result.cost is None else cost + result.cost
            usage = _sum(result.usage, usage)
        result.text, result.usage, result.cost = answer.text, usage, cost
        result.status, result.error, result.parsed = "failed", None, None
        if answer.refusal is not None:
            result.text = answer.refusal
            result.error = errors.one_line(f"the model refused: {answer.refusal}")
        elif answer.finish_reason == "length":
            result.error = STATUS_NOTICES["truncated"] + ": raise max_tokens"
        elif answer.finish_reason == "content_filter":
            result.error = STATUS_NOTICES["filtered"]
        elif self.parse is not None:
            try:
                result.parsed = self.parse(answer.text)
            except errors.StructuredAnswerError as invalid:
                after = " (after one repair round; the raw answer is the row's text)" if repaired else ""
                result.error = errors.one_line(f"{invalid}{after}", 400)
                return not repaired
            result.status = "done"
        else:
            result.status = "done"
        return False


def _fatal(error: errors.ChatError, failed: AttemptFailed) -> bool:
    """A failure every other row would meet too: no use sending them."""
    if isinstance(error, (errors.AuthenticationError, errors.ModelNotFoundError)):
        return True
    if isinstance(error, errors.RateLimitError) and error.code == "insufficient_quota":
        return True
    return not failed.reachable or (failed.status is None and isinstance(failed.cause, errors.ChatError))


def _sum(a: Usage, b: Usage) -> Usage:
    counted = "counted" in (a.source, b.source)
    return Usage(a.prompt_tokens + b.prompt_tokens, a.completion_tokens + b.completion_tokens,
                 a.cached_tokens + b.cached_tokens, source="counted" if counted else "reported")
