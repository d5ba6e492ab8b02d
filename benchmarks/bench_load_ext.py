"""How light is ``%load_ext jupyter_llmchat``? Measured beside a bare ``import openai``, same run.

Each round starts fresh kernels (nothing imported yet) and times, inside the kernel:
  (a) ``%load_ext jupyter_llmchat`` (registers %%chat / %chat; heavy modules stay unloaded; with
      ``ChatMagics.preload`` on, the default, a background thread starts importing them),
  (b) ``import openai`` alone (the SDK every chat tool needs sooner or later),
  (c) the first ``%%chat`` against an in-kernel loopback server: right after loading, and after a
      pause (a user typing the question) with preload on and off, to show what the preload saves.
Rounds alternate the order of the kernels. Medians are reported, with min-max.

    python benchmarks/bench_load_ext.py            # 5 rounds
    python benchmarks/bench_load_ext.py --rounds 3 --pause 6
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _kernel import ROOT, run_in_kernel

HEAVY = ("openai", "httpx", "tiktoken", "pydantic", "jupyter_llmchat.core.chatbot", "jupyter_llmchat.core.client",
         "jupyter_llmchat.notebook.display", "jupyter_llmchat.store.store", "PIL", "markdown")

LOAD_EXT = """
import json, sys, time
ip = get_ipython()
ip.config.ChatMagics.preload = {preload}
start = time.perf_counter()
ip.run_line_magic("load_ext", "jupyter_llmchat")
load_s = time.perf_counter() - start
loaded = [m for m in {heavy!r} if m in sys.modules]
time.sleep({pause})
from jupyter_llmchat.server import LoopbackServer
srv = LoopbackServer().start()
srv.queue(reply="ok")
ip.run_line_magic("config", "ChatMagics.base_url = '" + srv.base_url + "'")
ip.run_line_magic("config", "ChatMagics.footer = False")
start = time.perf_counter()
ip.run_cell_magic("chat", "", "hello")
first_s = time.perf_counter() - start
print("RESULT " + json.dumps({{"variant": {variant!r}, "load_ext_s": load_s, "first_chat_s": first_s,
                              "heavy_loaded": loaded}}), flush=True)
"""

IMPORT_OPENAI = """
import json, time
start = time.perf_counter()
import openai
print("RESULT " + json.dumps({"variant": "import openai", "import_openai_s": time.perf_counter() - start}),
      flush=True)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--pause", type=float, default=8.0, help="seconds between %%load_ext and the first ask")
    args = parser.parse_args()
    variants = {
        "immediate": LOAD_EXT.format(preload=True, heavy=HEAVY, pause=0, variant="immediate"),
        "pause, preload on": LOAD_EXT.format(preload=True, heavy=HEAVY, pause=args.pause,
                                             variant="pause, preload on"),
        "pause, preload off": LOAD_EXT.format(preload=False, heavy=HEAVY, pause=args.pause,
                                              variant="pause, preload off"),
        "import openai": IMPORT_OPENAI,
    }
    results: dict[str, list[dict]] = {name: [] for name in variants}
    for round_ in range(args.rounds):
        order = list(variants) if round_ % 2 == 0 else list(reversed(variants))
        for name in order:
            results[name] += run_in_kernel(variants[name], timeout=300)

    def ms(name: str, key: str) -> list[float]:
        return [r[key] * 1000 for r in results[name]]

    def cell(values: list[float]) -> str:
        return f"{statistics.median(values):.1f} ({min(values):.1f}-{max(values):.1f})"

    load = ms("immediate", "load_ext_s") + ms("pause, preload on", "load_ext_s") + ms("pause, preload off",
                                                                                     "load_ext_s")
    openai_ms = ms("import openai", "import_openai_s")
    print(f"fresh kernels, {args.rounds} rounds, median (min-max), ms:\n")
    print("| measure | ms |")
    print("|---|---:|")
    print(f"| `%load_ext jupyter_llmchat` | {cell(load)} |")
    print(f"| `import openai` alone | {cell(openai_ms)} |")
    print(f"| first `%%chat`, asked right after `%load_ext` | {cell(ms('immediate', 'first_chat_s'))} |")
    print(f"| first `%%chat`, {args.pause:g} s later, preload on (default) | "
          f"{cell(ms('pause, preload on', 'first_chat_s'))} |")
    print(f"| first `%%chat`, {args.pause:g} s later, preload off | {cell(ms('pause, preload off', 'first_chat_s'))} |")
    ratio = statistics.median(load) / statistics.median(openai_ms)
    print(f"\n%load_ext / import openai = {ratio:.3f} ({1 / ratio:.0f}x lighter)")
    heavy = sorted({m for r in results["pause, preload off"] for m in r["heavy_loaded"]})
    print(f"heavy modules loaded by %load_ext itself (preload off): {heavy or 'none'} (checked: {', '.join(HEAVY)})")
    out = ROOT / "benchmarks" / "results"
    out.mkdir(exist_ok=True)
    (out / "load_ext.json").write_text(json.dumps({"rounds": args.rounds, "pause_s": args.pause, "results": results,
                                                   "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())},
                                                  indent=1))


if __name__ == "__main__":
    main()
