"""Chatbot.map benchmarks (issue 13), measured inside a real IPython kernel against loopback servers
running in processes of their own (so the kernel's CPU and memory are the client's alone):

(a) Wall time: 1,000 rows at concurrency 16 and at 64, every answer taking 1 s to begin (the
    server's latency), against the ideal rows / concurrency x latency. Target: at most 1.2x.
(b) 10,000 short rows (5-token answers, no latency), concurrency 32: the kernel's memory growth
    (RSS with the results still held, and the peak sampled every 20 ms, over the RSS before; the
    first big run in the kernel) and our CPU per row against a bare asyncio loop over the SDK doing
    the same requests (AsyncOpenAI, a semaphore, gather), run alternately, the best of each.
    Targets: growth under 50 MB, at most 1.5x the CPU.
(c) Faults: 1,000 rows, 5% of requests failing (429 with retry-after 0.5 s, 500, a body cut
    mid-way), against a fault-free run of the same rows: no row lost or duplicated (each question
    answered exactly once in the server's log), results identical.
(d) Killed at 50%: a process running a 1,000-row map (latency 0.2 s, concurrency 16, recording into a
    store) is killed (SIGKILL) once half the rows are recorded; the same call in the kernel then sends
    only the rows not recorded (counted in the server's log).
(e) KeyboardInterrupt: interrupt_main() while 200 rows run (latency 1 s): time until map returns.

    python benchmarks/bench_map.py            # full run (about four minutes)
    python benchmarks/bench_map.py --quick    # smaller sizes, for a smoke test
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MODEL = "gpt-4o-mini"
FAULT_SHARE = 0.05


# -- the servers (their own processes) ---------------------------------------------------------------
def start_server(*args: str) -> tuple[subprocess.Popen[str], str]:
    """``python -m jupyter_llmchat.server ARGS`` on a free port; returns (process, base URL)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    process = subprocess.Popen([sys.executable, "-m", "jupyter_llmchat.server", *args], stdout=subprocess.PIPE,
                               text=True, env=env)
    assert process.stdout is not None
    for line in process.stdout:
        if line.startswith("base URL: "):
            return process, line.split(": ", 1)[1].strip()
    raise RuntimeError("the loopback server did not start")


def control(base_url: str, path: str, data: Any = None) -> Any:
    root = base_url.rsplit("/v1", 1)[0]
    request = urllib.request.Request(f"{root}/_loopback/{path}", method="POST" if data is not None else "GET",
                                     data=json.dumps(data).encode() if data is not None else None,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def logged(base_url: str) -> list[dict[str, Any]]:
    return [entry for entry in control(base_url, "requests")["requests"] if entry["path"] == "/v1/chat/completions"]


# -- in the kernel -------------------------------------------------------------------------------------------
def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


class PeakRSS:
    """Samples the RSS every 20 ms while it runs (a context manager); ``peak`` is the highest seen."""

    def __init__(self) -> None:
        self.peak = rss_mb()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._done.wait(0.02):
            self.peak = max(self.peak, rss_mb())

    def __enter__(self) -> PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()
        self.peak = max(self.peak, rss_mb())


def measure_wall(base_url: str, rows: int, concurrency: int, latency: float, *, bare: bool) -> dict[str, Any]:
    from jupyter_llmchat.core.chatbot import Chatbot

    bot = Chatbot(MODEL, base_url=base_url, api_key="bench")
    started = time.perf_counter()
    results = bot.map([f"wall {concurrency} row {n}" for n in range(rows)], concurrency=concurrency)
    wall = time.perf_counter() - started
    ideal = rows / concurrency * latency
    assert not results.errors, results.errors
    measured = {"rows": rows, "concurrency": concurrency, "wall_s": wall, "ideal_s": ideal, "ratio": wall / ideal,
                "peak_in_flight": results.stats.peak_in_flight, "bare_s": None}
    if bare:  # the same rows by a bare asyncio loop over the SDK, for reference
        started = time.perf_counter()
        bare_loop(base_url, [f"bare {concurrency} row {n}" for n in range(rows)], concurrency)
        measured["bare_s"] = time.perf_counter() - started
    return measured


def bare_loop(base_url: str, questions: list[str], concurrency: int) -> list[str]:
    """What a notebook user would write by hand: AsyncOpenAI, a semaphore, gather, in a thread of its
    own (the kernel's own loop is busy running the cell)."""
    import asyncio

    import openai

    async def run() -> list[str]:
        client = openai.AsyncOpenAI(base_url=base_url, api_key="bench", max_retries=0)
        gate = asyncio.Semaphore(concurrency)

        async def one(question: str) -> str:
            async with gate:
                answer = await client.chat.completions.create(
                    model=MODEL, messages=[{"role": "user", "content": question}])
                return answer.choices[0].message.content or ""

        try:
            return await asyncio.gather(*(one(question) for question in questions))
        finally:
            await client.close()

    box: list[list[str]] = []
    thread = threading.Thread(target=lambda: box.append(asyncio.run(run())))
    thread.start()
    thread.join()
    return box[0]


def measure_cpu_and_memory(base_url: str, rows: int, concurrency: int) -> dict[str, Any]:
    import gc

    from jupyter_llmchat.core.chatbot import Chatbot
    from jupyter_llmchat.store.store import Store

    control(base_url, "queue", {"tokens": 5, "times": rows * 8 + 1_000})  # every answer 5 tokens
    questions = [f"short {n}" for n in range(rows)]
    bot = Chatbot(MODEL, base_url=base_url, api_key="bench")
    bot.map(questions[:200], concurrency=concurrency, progress=False)  # warm: imports, pools, vocabularies
    bare_loop(base_url, questions[:200], concurrency)
    cpu: dict[str, list[float]] = {"bare": [], "ours": []}
    # memory first, in a kernel that has run nothing big yet: the growth while the results are alive
    gc.collect()
    before = rss_mb()
    t0 = time.process_time()
    with PeakRSS() as sampler:
        results = bot.map(questions, concurrency=concurrency)
    cpu["ours"].append(time.process_time() - t0)
    assert not results.errors and len(results) == rows
    growth, peak = rss_mb() - before, sampler.peak - before
    del results
    for _ in range(2):  # then CPU, alternating, the best of each
        gc.collect()
        t0 = time.process_time()
        bare_loop(base_url, questions, concurrency)
        cpu["bare"].append(time.process_time() - t0)
        gc.collect()
        t0 = time.process_time()
        bot.map(questions, concurrency=concurrency)
        cpu["ours"].append(time.process_time() - t0)
    # the same with a store recording every row (not part of the target: what resuming costs)
    with tempfile.TemporaryDirectory() as folder:
        store = Store(Path(folder) / "rows.sqlite3")
        t0 = time.process_time()
        bot.map([f"stored {n}" for n in range(rows)], concurrency=concurrency, store=store, progress=False)
        stored = time.process_time() - t0
        store.close()
    return {"rows": rows, "concurrency": concurrency, "bare_us": min(cpu["bare"]) / rows * 1e6,
            "ours_us": min(cpu["ours"]) / rows * 1e6, "ratio": min(cpu["ours"]) / min(cpu["bare"]),
            "stored_us": stored / rows * 1e6, "growth_mb": growth, "peak_mb": peak,
            "all_cpu_s": {k: [round(v, 2) for v in vs] for k, vs in cpu.items()}}


def measure_faults(base_url: str, rows: int, concurrency: int) -> dict[str, Any]:
    from jupyter_llmchat.core.chatbot import Chatbot

    control(base_url, "reset", {})
    questions = [f"fault row {n}" for n in range(rows)]
    bot = Chatbot(MODEL, base_url=base_url, api_key="bench")
    clean = bot.map(questions, concurrency=concurrency, progress=False)
    control(base_url, "reset", {})
    rng = random.Random(13)
    kinds = [{"fault": "rate_limit", "retry_after": 0.5}, {"fault": "server_error"},
             {"fault": "disconnect", "after_tokens": 0}]
    faults = int(rows * FAULT_SHARE)
    scripts: list[dict[str, Any]] = [{} for _ in range(rows - faults)] + [kinds[n % 3] for n in range(faults)]
    rng.shuffle(scripts)
    control(base_url, "queue", scripts)  # the first `rows` requests: 5% of them fail
    started = time.perf_counter()
    faulty = bot.map(questions, concurrency=concurrency, backoff=0.2, progress=False)
    seconds = time.perf_counter() - started
    entries = logged(base_url)
    answered: dict[str, int] = {}
    for entry in entries:
        if entry["outcome"] == "complete":
            question = entry["body"]["messages"][-1]["content"]
            answered[question] = answered.get(question, 0) + 1
    return {"rows": rows, "faults_scripted": faults, "requests": len(entries),
            "failed_requests": sum(1 for e in entries if str(e["outcome"]).startswith("fault:")),
            "rows_answered_once": sum(1 for q in questions if answered.get(q) == 1),
            "rows_lost": sum(1 for row in faulty.rows if row.status != "done"),
            "identical": list(faulty) == list(clean), "attempts": sum(row.attempts for row in faulty.rows),
            "seconds": seconds, "throttled": faulty.stats.throttled, "cuts": faulty.stats.cuts}


KILLED_RUN = r"""
import sys
from jupyter_llmchat.core.chatbot import Chatbot
from jupyter_llmchat.store.store import Store
base_url, path, rows = sys.argv[1], sys.argv[2], int(sys.argv[3])
bot = Chatbot("gpt-4o-mini", base_url=base_url, api_key="bench")
bot.map([f"killed row {n}" for n in range(rows)], concurrency=16, store=Store(path), progress=False)
print("FINISHED", flush=True)
"""


def measure_kill(base_url: str, rows: int) -> dict[str, Any]:
    import sqlite3
    from contextlib import closing

    from jupyter_llmchat.core.chatbot import Chatbot
    from jupyter_llmchat.store.store import Store

    control(base_url, "reset", {})

    def recorded(path: Path) -> int:
        if not path.exists():  # connecting would make the file, with the default permissions
            return 0
        try:
            with closing(sqlite3.connect(path, timeout=5)) as db:
                return int(db.execute("SELECT COUNT(*) FROM map_rows").fetchone()[0])
        except sqlite3.OperationalError:
            return 0

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "killed.sqlite3"
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        child = subprocess.Popen([sys.executable, "-c", KILLED_RUN, base_url, str(path), str(rows)], env=env,
                                 stdout=subprocess.PIPE, text=True)
        while child.poll() is None and recorded(path) < rows // 2:
            time.sleep(0.02)
        child.send_signal(signal.SIGKILL)
        child.communicate()
        kept = recorded(path)
        sent_before = len(logged(base_url))
        with Store(path) as store:
            results = Chatbot(MODEL, base_url=base_url, api_key="bench").map(
                [f"killed row {n}" for n in range(rows)], concurrency=16, store=store, progress=False)
        resumed = logged(base_url)[sent_before:]
    asked_again = {entry["body"]["messages"][-1]["content"] for entry in resumed}
    return {"rows": rows, "kept_at_kill": kept, "sent_by_killed_run": sent_before, "sent_on_resume": len(resumed),
            "expected_on_resume": rows - kept, "distinct_on_resume": len(asked_again),
            "all_answered": not results.errors}


def measure_interrupt(base_url: str, rows: int) -> dict[str, Any]:
    import _thread

    from jupyter_llmchat.core.chatbot import Chatbot

    bot = Chatbot(MODEL, base_url=base_url, api_key="bench")
    fired: list[float] = []

    def interrupt() -> None:
        time.sleep(2.5)  # mid-run: some rows answered, 16 in flight
        fired.append(time.perf_counter())
        _thread.interrupt_main()

    threading.Thread(target=interrupt, daemon=True).start()
    results = bot.map([f"interrupt row {n}" for n in range(rows)], concurrency=16, progress=False)
    returned = time.perf_counter()
    return {"rows": rows, "done": sum(1 for row in results.rows if row.status == "done"),
            "interrupted": results.interrupted, "return_ms": (returned - fired[0]) * 1000}


PARTS = ("wall", "cpu", "faults", "kill", "interrupt")


def kernel_main(quick: bool, parts: list[str], slow_url: str, fast_url: str, kill_url: str) -> None:
    if "wall" in parts:
        for concurrency in (16, 64):
            wall = measure_wall(slow_url, 256 if quick else 1_000, concurrency, 1.0, bare=concurrency == 64)
            print("RESULT " + json.dumps({f"wall_{concurrency}": wall}), flush=True)
    if "cpu" in parts:
        cpu = measure_cpu_and_memory(fast_url, 1_000 if quick else 10_000, 32)
        print("RESULT " + json.dumps({"cpu": cpu}), flush=True)
    if "faults" in parts:
        faults = measure_faults(fast_url, 300 if quick else 1_000, 16)
        print("RESULT " + json.dumps({"faults": faults}), flush=True)
    if "kill" in parts:
        kill = measure_kill(kill_url, 200 if quick else 1_000)
        print("RESULT " + json.dumps({"kill": kill}), flush=True)
    if "interrupt" in parts:
        interrupt = measure_interrupt(slow_url, 200)
        print("RESULT " + json.dumps({"interrupt": interrupt}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", nargs="+", choices=PARTS, default=list(PARTS), help="measure only these")
    args = parser.parse_args()
    from _kernel import run_script_in_kernel

    servers = [start_server("--latency", "1"), start_server("--latency", "0"),
               start_server("--latency", "0.2")]
    try:
        results = run_script_in_kernel(__file__, args.quick, args.only, *(url for _, url in servers))
    finally:
        for process, _ in servers:
            process.terminate()
            process.wait(timeout=10)
    print("| measure | result | target | met |")
    print("|---|---|---|---|")
    for concurrency in (16, 64) if "wall" in args.only else ():
        w = results[f"wall_{concurrency}"]
        bare = f"; a bare asyncio + SDK loop: {w['bare_s']:.1f} s" if w["bare_s"] else ""
        print(f"| {w['rows']:,} rows at concurrency {concurrency}, 1 s per answer: wall time | {w['wall_s']:.1f} s "
              f"(ideal {w['ideal_s']:.1f} s: {w['ratio']:.3f}x; {w['peak_in_flight']} in flight at most{bare}) | "
              f"<= 1.2x | {'yes' if w['ratio'] <= 1.2 else 'NO'} |")
    if "cpu" in args.only:
        show_cpu(results["cpu"])
    if "faults" in args.only:
        show_faults(results["faults"])
    if "kill" in args.only:
        show_kill(results["kill"])
    if "interrupt" in args.only:
        show_interrupt(results["interrupt"])


def show_cpu(c: dict[str, Any]) -> None:
    print(f"| {c['rows']:,} short rows: kernel memory growth | {c['growth_mb']:.1f} MB after, peak "
          f"{c['peak_mb']:.1f} MB | < 50 MB | {'yes' if max(c['growth_mb'], c['peak_mb']) < 50 else 'NO'} |")
    print(f"| {c['rows']:,} short rows at concurrency {c['concurrency']}: client CPU per row | ours "
          f"{c['ours_us']:.0f} us (progress bar on) vs bare asyncio + SDK loop {c['bare_us']:.0f} us: "
          f"{c['ratio']:.2f}x | <= 1.5x | {'yes' if c['ratio'] <= 1.5 else 'NO'} |")
    print(f"| same, recording every row in a store (resumable) | {c['stored_us']:.0f} us per row | - | - |")
    print(f"| (CPU seconds per run: {c['all_cpu_s']}) | | | |")


def show_faults(f: dict[str, Any]) -> None:
    print(f"| {f['rows']:,} rows, {f['failed_requests']} of {f['requests']:,} requests failing (429 retry-after 0.5 s, "
          f"500, body cut) | {f['rows_answered_once']:,} rows answered exactly once, {f['rows_lost']} lost, results "
          f"{'identical' if f['identical'] else 'DIFFERENT'} to the fault-free run ({f['throttled']} 429s, "
          f"{f['cuts']} cuts, {f['seconds']:.1f} s) | none lost or duplicated, identical | "
          f"{'yes' if f['identical'] and f['rows_lost'] == 0 and f['rows_answered_once'] == f['rows'] else 'NO'} |")


def show_kill(k: dict[str, Any]) -> None:
    print(f"| {k['rows']:,}-row map killed (SIGKILL) with {k['kept_at_kill']} rows recorded | the resumed run sent "
          f"{k['sent_on_resume']} requests ({k['distinct_on_resume']} distinct; {k['rows']:,} - {k['kept_at_kill']} = "
          f"{k['expected_on_resume']} expected) | only the remaining rows | "
          f"{'yes' if k['sent_on_resume'] == k['expected_on_resume'] and k['all_answered'] else 'NO'} |")


def show_interrupt(i: dict[str, Any]) -> None:
    print(f"| KeyboardInterrupt during a {i['rows']}-row map (16 in flight, 1 s per answer) | returned in "
          f"{i['return_ms']:.0f} ms with {i['done']} rows done | within a second | "
          f"{'yes' if i['interrupted'] and i['return_ms'] < 1000 else 'NO'} |")


if __name__ == "__main__":
    main()
