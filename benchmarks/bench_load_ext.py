"""How light is ``%load_ext jupyter_llmchat``? Measured beside a bare ``import openai``, same run.

Each round starts fresh kernels (nothing imported yet) and times, inside the kernel:
  (a) ``%load_ext jupyter_llmchat`` (registers %%chat / %chat; heavy modules stay unloaded),
  (b) ``import openai`` (the SDK every chat tool needs sooner or later),
  (c) the first ``%%chat`` afterwards, against an in-kernel loopback server (pays the lazy imports:
      openai, tiktoken, the token vocab, the renderer), to show where the cost went.
Rounds alternate which kernel starts first. Medians are reported.

    python benchmarks/bench_load_ext.py            # 7 rounds
    python benchmarks/bench_load_ext.py --rounds 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _kernel import ROOT, run_in_kernel  # noqa: E402

HEAVY = ("openai", "httpx", "tiktoken", "pydantic", "jupyter_llmchat.chatbot", "jupyter_llmchat.client",
         "jupyter_llmchat.render", "PIL", "markdown")

LOAD_EXT = f"""
import json, sys, time
ip = get_ipython()
start = time.perf_counter()
ip.run_line_magic("load_ext", "jupyter_llmchat")
load_s = time.perf_counter() - start
loaded = [m for m in {HEAVY!r} if m in sys.modules]
from jupyter_llmchat.server import LoopbackServer
srv = LoopbackServer().start()
srv.queue(reply="ok")
ip.run_line_magic("config", f"ChatMagics.base_url = '{{srv.base_url}}'")
ip.run_line_magic("config", "ChatMagics.footer = False")
start = time.perf_counter()
ip.run_cell_magic("chat", "", "hello")
first_s = time.perf_counter() - start
print("RESULT " + json.dumps({{"load_ext_s": load_s, "first_chat_s": first_s, "heavy_loaded": loaded}}), flush=True)
"""

IMPORT_OPENAI = """
import json, time
start = time.perf_counter()
import openai
print("RESULT " + json.dumps({"import_openai_s": time.perf_counter() - start}), flush=True)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    load, first, openai_s, heavy = [], [], [], set()
    for round_ in range(args.rounds):
        order = [LOAD_EXT, IMPORT_OPENAI] if round_ % 2 == 0 else [IMPORT_OPENAI, LOAD_EXT]
        for code in order:
            for result in run_in_kernel(code, timeout=300):
                if "load_ext_s" in result:
                    load.append(result["load_ext_s"])
                    first.append(result["first_chat_s"])
                    heavy.update(result["heavy_loaded"])
                else:
                    openai_s.append(result["import_openai_s"])
    med_load, med_openai, med_first = (statistics.median(x) * 1000 for x in (load, openai_s, first))
    print(f"fresh kernels, {args.rounds} rounds, medians (min-max):\n")
    print("| measure | ms |")
    print("|---|---:|")
    print(f"| `%load_ext jupyter_llmchat` | {med_load:.1f} ({min(load)*1000:.1f}-{max(load)*1000:.1f}) |")
    print(f"| `import openai` | {med_openai:.1f} ({min(openai_s)*1000:.1f}-{max(openai_s)*1000:.1f}) |")
    print(f"| first `%%chat` after loading (lazy imports + one loopback request) | {med_first:.1f} |")
    print(f"\n%load_ext / import openai = {med_load / med_openai:.3f} "
          f"({med_openai / med_load:.0f}x lighter)")
    print(f"heavy modules loaded by %load_ext: {sorted(heavy) or 'none'} (checked: {', '.join(HEAVY)})")
    out = ROOT / "benchmarks" / "results"
    out.mkdir(exist_ok=True)
    (out / "load_ext.json").write_text(json.dumps({
        "rounds": args.rounds, "load_ext_ms": [x * 1000 for x in load],
        "import_openai_ms": [x * 1000 for x in openai_s], "first_chat_ms": [x * 1000 for x in first],
        "heavy_loaded": sorted(heavy), "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}, indent=1))


if __name__ == "__main__":
    main()
