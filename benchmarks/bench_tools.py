"""Our overhead per tool round against a bare openai SDK loop doing the same calls, in one run.

Both sides talk to the same loopback server (its own process, so the client's CPU is measured
alone), with the same tool definitions (ours, strict), the same scripted answers and the same
functions: each answer takes ``--rounds`` rounds of two parallel calls (arguments streamed in
4-character fragments), then a short text answer. The bare loop is what a careful user writes
with the SDK: stream, put the calls together by index, json.loads the arguments, call, append
the assistant and tool messages, ask again. Ours is ``Chatbot.ask(..., tools=[...])``: pydantic
checks, helper threads (stop), exact token counts, the events, the cache lookup (no cache here).

    python benchmarks/bench_tools.py              # 30 answers of 3 tool rounds each side
    python benchmarks/bench_tools.py --quick      # fewer, for a smoke test

Reported: client CPU (process_time, every thread) and wall time per request (a round), medians
over answers measured alternately, and the ratio ours / bare.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any, Literal

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

QUESTION = "What is the weather in Paris, and 2+3?"
ANSWER = "Sunny in Paris; 2+3 is 5."


# The benchmark's own tools, not tests/core/test_tool_loop.py's: it runs as a script with only the
# repository root on its path, and its unit is a Literal (an enum in the schema, as real tools have).
def get_weather(city: str, unit: Literal["c", "f"] = "c") -> str:
    """The weather now.

    Args:
        city: The city.
        unit: Celsius or Fahrenheit.
    """
    return f"sunny in {city}, 21{unit}"


def add(a: int, b: int) -> int:
    """Add two whole numbers."""
    return a + b


CALLS = [{"name": "get_weather", "arguments": {"city": "Paris", "unit": None}},
         {"name": "add", "arguments": {"a": 2, "b": 3}}]


def start_server() -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen([sys.executable, "-m", "jupyter_llmchat.server"], stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    for line in process.stdout:
        if line.startswith("base URL: "):
            return process, line.split(": ", 1)[1].strip()
    raise RuntimeError("the loopback server did not start")


def queue(root: str, rounds: int) -> None:
    """Script one answer (untimed): ``rounds`` rounds of the two calls, then the text."""
    scripts = [{"tool_calls": CALLS, "fragment": 4, "times": rounds}, {"reply": ANSWER}]
    request = urllib.request.Request(f"{root}/_loopback/queue", data=json.dumps(scripts).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
    urllib.request.urlopen(request).read()


def bare_loop(sdk: Any, specs: list[dict[str, Any]], functions: dict[str, Any]) -> tuple[str, int]:
    """The SDK loop a user writes: returns the answer and the requests it took."""
    messages: list[dict[str, Any]] = [{"role": "user", "content": QUESTION}]
    requests = 0
    while True:
        requests += 1
        stream = sdk.chat.completions.create(model="gpt-4o", messages=messages, tools=specs, stream=True,
                                             stream_options={"include_usage": True})
        text: list[str] = []
        calls: dict[int, dict[str, Any]] = {}
        finish = None
        for chunk in stream:
            if not chunk.choices:
                continue
            choice = chunk.choices[0]
            delta = choice.delta
            if delta.content:
                text.append(delta.content)
            for call in delta.tool_calls or []:
                slot = calls.setdefault(call.index, {"id": "", "name": "", "arguments": ""})
                if call.id:
                    slot["id"] = call.id
                if call.function and call.function.name:
                    slot["name"] = call.function.name
                if call.function and call.function.arguments:
                    slot["arguments"] += call.function.arguments
            finish = choice.finish_reason or finish
        if finish != "tool_calls":
            return "".join(text), requests
        ordered = [calls[index] for index in sorted(calls)]
        messages.append({"role": "assistant", "content": "".join(text) or None, "tool_calls": [
            {"id": c["id"], "type": "function", "function": {"name": c["name"], "arguments": c["arguments"]}}
            for c in ordered]})
        for call in ordered:
            arguments = {k: v for k, v in json.loads(call["arguments"]).items() if v is not None}
            result = functions[call["name"]](**arguments)
            messages.append({"role": "tool", "tool_call_id": call["id"], "content": json.dumps(result)
                             if not isinstance(result, str) else result})


def measure(answers: int, rounds: int) -> dict[str, Any]:
    import openai

    from jupyter_llmchat.core.chatbot import Chatbot
    from jupyter_llmchat.core.reply import NullSink
    from jupyter_llmchat.core.tools import Toolbox

    process, base_url = start_server()
    root = base_url.rsplit("/v1", 1)[0]
    try:
        sdk = openai.OpenAI(base_url=base_url, api_key="bench", max_retries=0)
        bot = Chatbot("gpt-4o", base_url=base_url, api_key="bench")
        specs = Toolbox([get_weather, add]).specs(strict=True)
        functions = {"get_weather": get_weather, "add": add}
        for _ in range(2):  # warm up both (the SDK, connections, our vocabulary) before timing
            queue(root, rounds)
            bare_loop(sdk, specs, functions)
            queue(root, rounds)
            bot.ask(QUESTION, tools=[get_weather, add], sink=NullSink(), history=False)
        cpu: dict[str, list[float]] = {"bare": [], "ours": []}
        wall: dict[str, list[float]] = {"bare": [], "ours": []}
        requests = rounds + 1
        for _ in range(answers):
            for kind in ("bare", "ours"):
                queue(root, rounds)
                c0, w0 = time.process_time(), time.perf_counter()
                if kind == "bare":
                    text, taken = bare_loop(sdk, specs, functions)
                else:
                    reply = bot.ask(QUESTION, tools=[get_weather, add], sink=NullSink(), history=False)
                    text, taken = reply.text, reply.rounds
                    assert [c.outcome for c in reply.calls] == ["ok"] * (2 * rounds)
                cpu[kind].append((time.process_time() - c0) / requests)
                wall[kind].append((time.perf_counter() - w0) / requests)
                assert (text, taken) == (ANSWER, requests), (text, taken)
    finally:
        process.terminate()
        process.wait(10)
    med = {kind: statistics.median(values) * 1000 for kind, values in cpu.items()}
    med_wall = {kind: statistics.median(values) * 1000 for kind, values in wall.items()}
    return {"answers": answers, "rounds": rounds, "requests_per_answer": requests,
            "cpu_ms": med, "wall_ms": med_wall, "cpu_ratio": med["ours"] / med["bare"],
            "wall_ratio": med_wall["ours"] / med_wall["bare"]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of tool calls per answer")
    args = parser.parse_args()
    result = measure(8 if args.quick else 30, args.rounds)
    cpu, wall = result["cpu_ms"], result["wall_ms"]
    print(f"{result['answers']} answers each side, {result['rounds']} rounds of 2 parallel calls + 1 text "
          f"answer = {result['requests_per_answer']} requests per answer; medians per request (round)\n")
    print("| per request (round) | ours | bare SDK loop | ratio | our overhead |")
    print("|---|---|---|---|---|")
    print(f"| client CPU (ms) | {cpu['ours']:.2f} | {cpu['bare']:.2f} | {result['cpu_ratio']:.2f}x | "
          f"{cpu['ours'] - cpu['bare']:+.2f} ms |")
    print(f"| wall time (ms) | {wall['ours']:.2f} | {wall['bare']:.2f} | {result['wall_ratio']:.2f}x | "
          f"{wall['ours'] - wall['bare']:+.2f} ms |")


if __name__ == "__main__":
    main()
