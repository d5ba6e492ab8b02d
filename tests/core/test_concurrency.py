"""AdaptiveLimit: AIMD between 1 and the ceiling, one cut per round of 429s, slots held to the limit."""

from __future__ import annotations

import asyncio

import pytest

from jupyter_llmchat.core.concurrency import AdaptiveLimit


def test_a_429_halves_the_limit_once_per_epoch_and_answers_grow_it_back() -> None:
    limit = AdaptiveLimit(8)
    assert (limit.limit, limit.epoch) == (8.0, 0)
    for _ in range(8):  # eight requests sent in epoch 0 all come back 429: one cut, not eight
        limit.throttled(0)
    assert (limit.limit, limit.epoch, limit.stats.throttled, limit.stats.cuts) == (4.0, 1, 8, 1)
    limit.throttled(1)  # a request sent after the cut is news: cut again
    assert (limit.limit, limit.stats.cuts, limit.stats.lowest, limit.stats.history) == (2.0, 2, 2.0, [4.0, 2.0])
    limit.succeeded()  # +1/limit per answer: one more request per limit's worth of answers
    limit.succeeded()
    assert limit.limit == pytest.approx(2 + 1 / 2 + 1 / 2.5)
    for _ in range(200):
        limit.succeeded()
    assert limit.limit == 8.0  # never above the ceiling


def test_the_limit_never_falls_below_one() -> None:
    limit = AdaptiveLimit(2)
    for epoch in range(5):
        limit.throttled(epoch)
    assert limit.limit == 1.0 and limit.stats.cuts == 5 and limit.stats.lowest == 1.0
    with pytest.raises(ValueError, match="ceiling must be >= 1, got 0"):
        AdaptiveLimit(0)


def test_slots_keep_requests_in_flight_under_the_limit_and_a_cut_holds_new_ones_back() -> None:
    async def scenario() -> list[str]:
        limit = AdaptiveLimit(4)
        log: list[str] = []
        release = asyncio.Event()

        async def request(name: str) -> None:
            async with limit.slot() as epoch:
                log.append(f"{name} sent in epoch {epoch} with {limit.in_flight} in flight")
                await release.wait()
                if name == "r0":
                    limit.throttled(epoch)

        first = [asyncio.ensure_future(request(f"r{n}")) for n in range(4)]
        await asyncio.sleep(0)
        later = asyncio.ensure_future(request("r4"))
        await asyncio.sleep(0)
        log.append(f"r4 waits: {not later.done()} at {limit.in_flight} in flight")
        release.set()
        await asyncio.gather(*first, later)
        log.append(f"peak {limit.stats.peak_in_flight}, limit {limit.limit}")
        return log

    assert asyncio.run(scenario()) == [
        "r0 sent in epoch 0 with 1 in flight", "r1 sent in epoch 0 with 2 in flight",
        "r2 sent in epoch 0 with 3 in flight", "r3 sent in epoch 0 with 4 in flight",
        "r4 waits: True at 4 in flight",
        # r0's 429 cut the limit to 2: r4 waits until fewer than 2 are in flight
        "r4 sent in epoch 1 with 1 in flight",
        "peak 4, limit 2.0"]
