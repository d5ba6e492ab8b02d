"""Time to the first text in a fresh process: ``Chatbot(...)`` and ``ask()`` to the sink's first ``write()``.

Each run is a new Python process (nothing imported, no vocabulary loaded), asking one question of
a loopback server that runs in its own, already warm, process, so only the client's first-use work
is measured: importing the SDK, building the client and, before the fast path, loading the o200k
vocabulary to count the prompt (which the old code did in ``Chatbot(...)``, so both the time from
making the bot and the time from ``ask()`` are shown).

    python benchmarks/bench_first_text.py                  # this checkout
    python benchmarks/bench_first_text.py --root /tmp/old  # another checkout (e.g. before a change)
    python benchmarks/bench_first_text.py --runs 5
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CLIENT = r"""
import json, sys, time
started = time.perf_counter()
from jupyter_llmchat.core import tokens
from jupyter_llmchat.core.chatbot import Chatbot
imported = time.perf_counter()

class FirstWrite:
    first = None
    loaded = None
    def start(self, model): pass
    def write(self, text):
        if self.first is None:
            self.first = time.perf_counter()
            self.loaded = "o200k_base" in getattr(tokens, "_LOADED", {}) or bool(
                getattr(getattr(tokens, "get_encoding", None), "cache_info", lambda: None)() and
                tokens.get_encoding.cache_info().currsize)
    def finish(self, reply): pass

made = time.perf_counter()
bot = Chatbot("gpt-4o", base_url=sys.argv[1], api_key="sk-bench", system="You are a helpful assistant.")
sink = FirstWrite()
asked = time.perf_counter()
reply = bot.ask("Explain in two sentences what a context window is.", sink=sink)
done = time.perf_counter()
print(json.dumps({"import_s": imported - started, "ask_to_first_write_s": sink.first - asked,
                  "bot_to_first_write_s": sink.first - made,
                  "ask_to_end_s": done - asked, "vocabulary_loaded_at_first_write": sink.loaded,
                  "status": reply.status, "usage": [reply.usage.prompt_tokens, reply.usage.completion_tokens]}))
"""


def start_server() -> tuple[subprocess.Popen[str], str]:
    server = subprocess.Popen([sys.executable, "-m", "jupyter_llmchat.server", "--tokens", "60"], cwd=ROOT,
                              stdout=subprocess.PIPE, text=True)
    assert server.stdout is not None
    for line in server.stdout:
        if line.startswith("base URL: "):
            return server, line.split(": ", 1)[1].strip()
    raise RuntimeError("the loopback server did not start")


def run_client(root: Path, base_url: str) -> dict[str, object]:
    env = {**os.environ, "PYTHONPATH": str(root)}
    done = subprocess.run([sys.executable, "-c", CLIENT, base_url], env=env, capture_output=True, text=True,
                          timeout=120, check=True, cwd="/")
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=ROOT, help="checkout whose jupyter_llmchat is measured")
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    server, base_url = start_server()
    try:
        run_client(args.root, base_url)  # warms the server (its own vocabulary) and the disk cache
        results = [run_client(args.root, base_url) for _ in range(args.runs)]
    finally:
        server.terminate()
        server.wait(timeout=10)
    print(f"checkout: {args.root} ({len(results)} fresh processes)")
    for label, key in (("Chatbot() + ask() -> first write()", "bot_to_first_write_s"),
                       ("ask() -> first write()", "ask_to_first_write_s"), ("ask() -> return", "ask_to_end_s")):
        times = [float(r[key]) * 1000 for r in results if key in r]  # type: ignore[arg-type]
        if times:
            print(f"{label:36} median {statistics.median(times):4.0f} ms, min {min(times):4.0f} ms, "
                  f"max {max(times):4.0f} ms")
    loaded = sorted({r["vocabulary_loaded_at_first_write"] for r in results}, key=str)
    print(f"vocabulary loaded before the first write: {loaded}")
    print(f"usage (prompt, completion) of the last run: {results[-1]['usage']}")


if __name__ == "__main__":
    main()
