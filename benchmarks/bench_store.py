"""Store benchmarks, measured side by side in one run inside a real kernel.

(a) An 8,000-token answer: streamed from the loopback server at full speed (a cache miss, which
    also saves it) against replayed from the response cache (no HTTP request), both through
    Chatbot.ask with the store attached.
(b) Store write overhead per message: Conversation.append with a store recording it (one WAL
    transaction per message) against the same append with nothing attached; and Chatbot.ask
    (a 200-token answer) with and without the store.
(c) Opening a store: a new file (every migration runs), an up-to-date file (the version check
    only) and ":memory:" (what the magics use when no store file is set).

    python benchmarks/bench_store.py            # full run
    python benchmarks/bench_store.py --quick    # smaller sizes, for a smoke test
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path


def measure_replay(tokens: int, repeats: int, folder: Path) -> dict:
    from jupyter_llmchat.core.chatbot import Chatbot
    from jupyter_llmchat.core.reply import NullSink
    from jupyter_llmchat.server import LoopbackServer
    from jupyter_llmchat.store.store import Store

    store = Store(folder / "replay.sqlite3", cache=True)
    with LoopbackServer() as server:
        bot = Chatbot("gpt-4o", base_url=server.base_url, api_key="bench", temperature=0)
        store.attach(bot, "bench")
        streamed, replayed, lookups = [], [], []
        for number in range(repeats):
            question = f"Write a long report, part {number}"
            server.queue(tokens=tokens)
            sent = len(server.requests)
            t0 = time.perf_counter()
            original = bot.ask(question, sink=NullSink(), history=False)
            streamed.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            hit = bot.ask(question, sink=NullSink(), history=False)
            replayed.append(time.perf_counter() - t0)
            assert hit.from_cache and hit.text == original.text and len(server.requests) == sent + 1
            request = bot.prepare(question, history=False).as_request()
            t0 = time.perf_counter()
            bot.cache.lookup(request)
            lookups.append(time.perf_counter() - t0)
    store.close()
    return {"tokens": original.usage.completion_tokens, "chars": len(original.text),
            "stream_ms": statistics.median(streamed) * 1000, "replay_ms": statistics.median(replayed) * 1000,
            "lookup_ms": statistics.median(lookups) * 1000}


def measure_writes(messages: int, repeats: int, folder: Path) -> dict:
    from jupyter_llmchat.core.chatbot import Chatbot
    from jupyter_llmchat.store.store import Store

    text = "A typical paragraph of a chat answer, about forty tokens long, with `code` and **bold**. " * 5
    plain_runs, stored_runs = [], []
    for run in range(repeats):
        for kind in ("plain", "stored"):
            bot = Chatbot("gpt-4o", base_url="http://127.0.0.1:9/v1", api_key="bench")
            store = None
            if kind == "stored":
                store = Store(folder / f"writes-{run}.sqlite3")
                store.attach(bot, "bench")
            conversation = bot.conversation
            made = [conversation.make("user", f"{n} {text}") for n in range(messages)]  # counting not timed
            t0 = time.perf_counter()
            for message in made:
                conversation.append(message)
            (stored_runs if store else plain_runs).append(time.perf_counter() - t0)
            if store:
                assert store.conversation("bench").messages == messages
                store.close()
    def per_message(xs):
        return statistics.median(xs) / messages * 1e6
    return {"messages": messages, "plain_us": per_message(plain_runs), "stored_us": per_message(stored_runs)}


def measure_ask(tokens: int, repeats: int, folder: Path) -> dict:
    from jupyter_llmchat.core.chatbot import Chatbot
    from jupyter_llmchat.core.reply import NullSink
    from jupyter_llmchat.server import LoopbackServer
    from jupyter_llmchat.store.store import Store

    times: dict[str, list[float]] = {"plain": [], "stored": []}
    store = Store(folder / "ask.sqlite3")
    with LoopbackServer() as server:
        bots = {kind: Chatbot("gpt-4o", base_url=server.base_url, api_key="bench", max_history=20)
                for kind in times}
        store.attach(bots["stored"], "bench")
        for number in range(repeats):
            for kind, bot in bots.items():
                server.queue(tokens=tokens)
                t0 = time.perf_counter()
                bot.ask(f"question {number}", sink=NullSink())
                times[kind].append(time.perf_counter() - t0)
    store.close()
    return {"tokens": tokens, "plain_ms": statistics.median(times["plain"]) * 1000,
            "stored_ms": statistics.median(times["stored"]) * 1000}


def measure_open(repeats: int, folder: Path) -> dict:
    from jupyter_llmchat.store.store import MEMORY, Store

    fresh, again, memory = [], [], []
    for number in range(repeats):
        path = folder / f"open-{number}.sqlite3"
        t0 = time.perf_counter()
        Store(path).close()  # creates the file and applies every migration
        fresh.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        Store(path).close()
        again.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        Store(MEMORY).close()
        memory.append(time.perf_counter() - t0)
    return {key: statistics.median(values) * 1000 for key, values in
            (("new_ms", fresh), ("current_ms", again), ("memory_ms", memory))}


def kernel_main(quick: bool) -> None:
    with tempfile.TemporaryDirectory() as folder:
        replay = measure_replay(2_000 if quick else 8_000, 2 if quick else 5, Path(folder))
        print("RESULT " + json.dumps({"replay": replay}), flush=True)
        writes = measure_writes(300 if quick else 2_000, 2 if quick else 5, Path(folder))
        print("RESULT " + json.dumps({"writes": writes}), flush=True)
        ask = measure_ask(200, 5 if quick else 30, Path(folder))
        print("RESULT " + json.dumps({"ask": ask}), flush=True)
        opened = measure_open(5 if quick else 30, Path(folder))
        print("RESULT " + json.dumps({"open": opened}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    from _kernel import run_script_in_kernel

    results = run_script_in_kernel(__file__, args.quick)
    r, w, a, o = results["replay"], results["writes"], results["ask"], results["open"]
    print("| measure | store | without | ratio |")
    print("|---|---|---|---|")
    print(f"| {r['tokens']:,}-token answer ({r['chars']:,} chars): cache-hit replay vs streamed from loopback "
          f"at full speed (ms, median) | {r['replay_ms']:.1f} | {r['stream_ms']:.1f} | "
          f"{r['stream_ms'] / r['replay_ms']:.0f}x faster |")
    print(f"| cache lookup alone (ms) | {r['lookup_ms']:.2f} | - | - |")
    print(f"| write overhead per message, {w['messages']:,} appends (us, WAL, one transaction each) | "
          f"{w['stored_us']:.0f} | {w['plain_us']:.1f} (deque only) | +{w['stored_us'] - w['plain_us']:.0f} us |")
    print(f"| Chatbot.ask, {a['tokens']}-token answer (ms, median) | {a['stored_ms']:.2f} | {a['plain_ms']:.2f} | "
          f"{a['stored_ms'] / a['plain_ms']:.2f}x |")
    print(f"| open a new file, every migration applied (ms, median) | {o['new_ms']:.2f} | - | - |")
    print(f"| open an up-to-date file (ms, median) | {o['current_ms']:.2f} | {o['memory_ms']:.2f} (':memory:') | "
          f"{o['current_ms'] / o['memory_ms']:.1f}x |")


if __name__ == "__main__":
    main()
