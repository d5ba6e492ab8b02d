"""CPU per display update in a real kernel: IPython's public publish vs the sink's publisher.

Decides whether ``notebook.publish.IPythonPublisher`` keeps its path for updates, which is
ipykernel's ``ZMQDisplayPublisher.publish`` without the stdout/stderr flush it runs first (two
round trips to ipykernel's IO thread per message). Each way sends the same ``update_display_data``
messages (a live Markdown piece of ``--size`` characters) ``--updates`` times, in one kernel,
interleaved, several rounds; the least CPU per update of the rounds is reported.

    public     IPython.display.publish_display_data(..., update=True)
    ours       IPythonPublisher().show(..., update=True) (no flush; everything else publish does)

    python benchmarks/bench_publish.py            # 2,000 updates of 1,000 characters, 5 rounds
    python benchmarks/bench_publish.py --quick    # a smoke run
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def kernel_main(updates: int, size: int, rounds: int) -> None:
    """In the kernel: time both ways; print one RESULT line."""
    from IPython.display import publish_display_data

    from jupyter_llmchat.notebook.publish import IPythonPublisher

    ours = IPythonPublisher()
    text = ("word " * (size // 5 + 1))[:size]

    def public(display_id: str, data: dict[str, str]) -> None:
        publish_display_data(data, metadata={}, transient={"display_id": display_id}, update=True)

    def fast(display_id: str, data: dict[str, str]) -> None:
        ours.show(display_id, data, update=True)

    ways = {"public": public, "ours": fast}
    for way in ways:  # the output each way updates
        publish_display_data({"text/markdown": way}, metadata={}, transient={"display_id": f"bench-{way}"})
    best: dict[str, float] = {}
    for _ in range(rounds):
        for way, send in ways.items():
            cpu = time.process_time()
            for i in range(updates):
                send(f"bench-{way}", {"text/markdown": f"{i} {text}"})
            per_update = (time.process_time() - cpu) / updates
            best[way] = min(best.get(way, per_update), per_update)
    print("RESULT " + json.dumps({way: best[way] * 1e6 for way in ways}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer updates and rounds (smoke run)")
    parser.add_argument("--updates", type=int, default=2000)
    parser.add_argument("--size", type=int, default=1000, help="characters of Markdown per update")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    updates, rounds = (200, 2) if args.quick else (args.updates, args.rounds)
    from _kernel import run_script_in_kernel

    result = run_script_in_kernel(__file__, updates, args.size, rounds)
    print("| way | kernel CPU per update |\n|---|---|")
    for way, micros in result.items():
        print(f"| {way} | {micros:.0f} µs |")
    print(f"\n(least of {rounds} rounds of {updates:,} updates of {args.size:,} characters; "
          f"public / ours = {result['public'] / result['ours']:.2f}x)")


if __name__ == "__main__":
    main()
