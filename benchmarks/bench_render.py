"""Live Markdown rendering in a real kernel: bare SDK loop vs the reference recipe vs ours, one run.

Starts the loopback server here and an ipykernel with jupyter_client, then for each answer size
and speed streams the SAME reply (same question) through each recipe inside the kernel:

  bare       openai SDK loop that only concatenates the text (no display)
  reference  DisplayHandle.update(Markdown(answer_so_far)) on every token
  ours       the same SDK loop feeding display.MarkdownDisplaySink
  chatbot    Chatbot.ask(sink=make_sink()): the whole product path, for information

Measured: kernel CPU (time.process_time in the kernel around the call, all kernel threads),
IOPub display messages and their wire bytes (counted here as they arrive), peak messages per
1-s window and average per 3-s window (Jupyter Server drops IOPub messages above 1,000/s
averaged over 3 s; "dropped" simulates that rule), and lag: for every text delta, the time
from receiving it in the kernel to sending the first display message that shows it.

    python benchmarks/bench_render.py            # 500 / 2,000 / 8,000 tokens, full speed and 50 tok/s
    python benchmarks/bench_render.py --quick    # small sizes, a smoke run of a minute
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DISPLAY_TYPES = ("display_data", "update_display_data", "clear_output", "stream")
RATE_LIMIT, RATE_WINDOW = 1000.0, 3.0  # Jupyter Server defaults: iopub_msg_rate_limit, rate_limit_window

KERNEL_SETUP = r'''
import json, time
import openai
from IPython.display import Markdown, display
from jupyter_llmchat import Chatbot
from jupyter_llmchat.notebook.display import MarkdownDisplaySink, make_sink
from jupyter_llmchat.core.reply import Reply

_client = openai.OpenAI(base_url=BASE_URL, api_key="bench-key", max_retries=0)
_bot = Chatbot("gpt-4o-mini", base_url=BASE_URL, api_key="bench-key")


def _deltas(question):
    stream = _client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": question}], stream=True)
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            yield chunk.choices[0].delta.content


def bare(question):
    text = ""
    for delta in _deltas(question):
        text += delta
    return text, [], []


def reference(question):
    text, received, shown = "", [], []
    handle = display(Markdown(""), display_id=True)
    for delta in _deltas(question):
        text += delta
        received.append((time.monotonic(), len(text)))
        handle.update(Markdown(text))
        shown.append((time.monotonic(), len(text)))
    return text, received, shown


def ours(question):
    text, received = "", []
    sink = MarkdownDisplaySink(trace=True, **OPTIONS)
    started = time.monotonic()
    sink.start("gpt-4o-mini")
    for delta in _deltas(question):
        text += delta
        received.append((time.monotonic(), len(text)))
        sink.write(delta)
    sink.finish(Reply(text=text, model="gpt-4o-mini", total_time=time.monotonic() - started))
    return text, received, sink.trace


class _TracingSink(MarkdownDisplaySink):
    """The sink make_sink() gives in a kernel, also noting when each delta arrived."""

    def __init__(self):
        super().__init__(trace=True)
        self.received, self._n = [], 0

    def write(self, text):
        self._n += len(text)
        self.received.append((time.monotonic(), self._n))
        super().write(text)


def chatbot(question):
    assert type(make_sink()) is MarkdownDisplaySink
    sink = _TracingSink()
    reply = _bot.ask(question, sink=sink, history=False)
    return reply.text, sink.received, sink.trace


def _lags(received, shown):
    lags, j, best = [], 0, -1
    for t_received, n in received:
        while best < n and j < len(shown):
            best = max(best, shown[j][1])
            t_shown = shown[j][0]
            j += 1
        if best >= n:
            lags.append(max(0.0, t_shown - t_received))
    return lags


def measure(recipe, question):
    cpu, wall = time.process_time(), time.perf_counter()
    text, received, shown = globals()[recipe](question)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    lags = sorted(_lags(received, shown))
    return {"recipe": recipe, "cpu": cpu, "wall": wall, "chars": len(text),
            "text_bytes": len(text.encode()), "text": text,
            "lag_max": lags[-1] if lags else None,
            "lag_p95": lags[int(0.95 * (len(lags) - 1))] if lags else None}
'''


class KernelRunner:
    def __init__(self) -> None:
        from jupyter_client.manager import start_new_kernel

        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
        self.manager, self.client = start_new_kernel(kernel_name="python3", env=env, cwd=str(ROOT))

    def execute(self, code: str, timeout: float = 900) -> list[tuple[dict[str, Any], int]]:
        """Run ``code``; return its IOPub messages with their wire sizes, raising on an error."""
        msg_id = self.client.execute(code)
        got: list[tuple[dict[str, Any], int]] = []
        while True:
            msg = self.client.get_iopub_msg(timeout=timeout)
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            if msg["msg_type"] == "error":
                raise RuntimeError("\n".join(msg["content"]["traceback"]))
            got.append((msg, sum(len(frame) for frame in self.client.session.serialize(msg))))
            if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                return got

    def value(self, expression: str) -> Any:
        out = "".join(m["content"]["text"] for m, _ in self.execute(f"print(json.dumps({expression}))")
                      if m["msg_type"] == "stream")
        return json.loads(out)

    def close(self) -> None:
        self.client.stop_channels()
        self.manager.shutdown_kernel(now=True)


def message_stats(messages: list[tuple[dict[str, Any], int]], text: str) -> dict[str, Any]:
    shown = [(m, size) for m, size in messages if m["msg_type"] in DISPLAY_TYPES]
    times = sorted(m["header"]["date"].timestamp() for m, _ in shown)
    peak1 = peak3 = dropped = 0
    lo1 = lo3 = 0
    for i, t in enumerate(times):
        while times[lo1] < t - 1.0:
            lo1 += 1
        while times[lo3] < t - RATE_WINDOW:
            lo3 += 1
        in1, in3 = i - lo1 + 1, i - lo3 + 1
        peak1, peak3 = max(peak1, in1), max(peak3, in3)
        dropped += in3 / RATE_WINDOW > RATE_LIMIT  # Jupyter Server counts, then drops above the limit
    # the answer's final display: the message whose text/plain is the answer (its Markdown is the
    # display-safe form of it, which may differ)
    finals = [size for m, size in shown if m["content"].get("data", {}).get("text/plain") == text]
    return {"messages": len(shown), "bytes": sum(size for _, size in shown), "peak_1s": peak1,
            "peak_3s_avg": peak3 / RATE_WINDOW, "dropped": dropped,
            "final_display_bytes": finals[0] if finals else None}


def run(sizes: list[int], rates: list[float | None], recipes: list[str],
        options: dict[str, Any] | None = None, repeat: int = 3) -> list[dict[str, Any]]:
    """Measure every recipe on every case, ``repeat`` times (fewer where a case takes over 1.5 min).

    ``options`` go to the "ours" sink (for tuning).
    """
    options = options or {}
    from jupyter_llmchat.server import LoopbackServer

    rows: list[dict[str, Any]] = []
    with LoopbackServer() as server:
        kernel = KernelRunner()
        try:
            kernel.execute(f"BASE_URL = {server.base_url!r}\nOPTIONS = {options!r}\n" + KERNEL_SETUP)
            server.queue(tokens=50)
            server.queue(tokens=50)
            kernel.execute("_ = bare('warm up'); _ = _bot.ask('warm up', sink=make_sink(kind='print'), history=False)")
            for tokens in sizes:
                for rate in rates:
                    question = f"Benchmark answer of {tokens} tokens"
                    repeats = max(1, min(repeat, int(90 * (rate or 1e9) / tokens)))  # <= ~1.5 min each
                    runs: dict[str, list[dict[str, Any]]] = {recipe: [] for recipe in recipes}
                    for _ in range(repeats):  # interleaved, so drift hits every recipe alike
                        for recipe in recipes:
                            server.queue(tokens=tokens, rate=rate)
                            messages = kernel.execute(f"_result = measure({recipe!r}, {question!r})")
                            result = kernel.value("_result")
                            runs[recipe].append({"tokens": tokens, "rate": rate, **result,
                                                 **message_stats(messages, result["text"])})
                    case_rows = []
                    for recipe in recipes:  # the least-CPU run stands for the recipe (noise only adds)
                        row = min(runs[recipe], key=lambda r: r["cpu"])
                        row["repeats"], row["cpu_all"] = repeats, [round(r["cpu"], 3) for r in runs[recipe]]
                        case_rows.append(row)
                        print(f"  {recipe:9} {tokens:5} tok {'full speed' if rate is None else f'{rate:g} tok/s':>10}: "
                              f"cpu {row['cpu_all']} s, {row['messages']} msgs, {row['bytes']:,} B", file=sys.stderr)
                    texts = {r.pop("text") for r in case_rows}
                    assert len(texts) == 1, "every recipe must stream the same reply"
                    final = next((r["final_display_bytes"] for r in case_rows if r["recipe"] == "ours"), None)
                    bare_cpu = next((r["cpu"] for r in case_rows if r["recipe"] == "bare"), None)
                    for r in case_rows:
                        r["vs_final_display"] = r["bytes"] / final if final else None
                        r["vs_text"] = r["bytes"] / r["text_bytes"]
                        r["cpu_vs_bare"] = r["cpu"] / bare_cpu if bare_cpu else None
                    rows.extend(case_rows)
        finally:
            kernel.close()
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    head = ("| recipe | answer | wall | kernel CPU | CPU vs bare | display msgs | peak msgs/s (1 s) "
            "| avg msgs/s (3 s peak) | dropped by server | IOPub bytes | vs final display | vs answer text "
            "| lag max | lag p95 |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        speed = "full speed" if r["rate"] is None else f"{r['rate']:g} tok/s"
        shown = r["messages"] > 0

        def lag(v):
            return "-" if v is None else f"{v * 1000:.0f} ms"

        def ratio(v, d=1, shown=shown):
            return "-" if v is None or not shown else f"{v:.{d}f}x"
        lines.append(
            f"| {r['recipe']} | {r['tokens']:,} tok, {speed} ({r['text_bytes']:,} B) | {r['wall']:.2f} s "
            f"| {r['cpu']:.2f} s | {ratio(r['cpu_vs_bare'], 2) if r['recipe'] != 'bare' else '1.00x'} "
            f"| {r['messages']:,} | {r['peak_1s']} | {r['peak_3s_avg']:.1f} | {r['dropped']:,} "
            f"| {r['bytes']:,} | {ratio(r['vs_final_display'])} | {ratio(r['vs_text'])} "
            f"| {lag(r['lag_max'])} | {lag(r['lag_p95'])} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes only (smoke run)")
    parser.add_argument("--sizes", type=int, nargs="*", help="answer sizes in tokens")
    parser.add_argument("--rates", type=str, nargs="*", help="tokens/s per case; 'full' for full speed")
    parser.add_argument("--recipes", nargs="*", default=["bare", "reference", "ours", "chatbot"],
                        choices=["bare", "reference", "ours", "chatbot"])
    parser.add_argument("--interval", type=float, help='repaint interval of the "ours" sink (tuning)')
    parser.add_argument("--repeat", type=int, default=5, help="runs per recipe (fewer for cases over 1.5 min)")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON here")
    args = parser.parse_args()
    sizes = args.sizes or ([200, 500] if args.quick else [500, 2000, 8000])
    rates = [None if r == "full" else float(r) for r in (args.rates or ["full", "50"])]
    started = time.perf_counter()
    rows = run(sizes, rates, args.recipes, {"interval": args.interval} if args.interval else None, args.repeat)
    print(table(rows))
    print(f"\n({time.perf_counter() - started:.0f} s; each row is the least-CPU run of up to {args.repeat} "
          "(others on this machine add noise); final display = our answer's display_data message, "
          "text/markdown + text/plain, wire bytes; bytes are all display/stream messages of the call)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
