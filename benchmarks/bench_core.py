"""Core benchmarks, measured side by side in one run inside a real kernel.

(a) Trimming a 10,000-message history to the budget: ours (each message counted once, when it
    entered the history) against the reference recipe (re-encode the whole history after every
    dropped message).
(b) Client time per streamed token: Chatbot.ask against a bare openai SDK loop that only joins
    the text, both on the loopback server at full speed.

    python benchmarks/bench_core.py            # full run
    python benchmarks/bench_core.py --quick    # smaller sizes, for a smoke test
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def reference_trim(encoding, messages: list[dict], budget: int, *, max_seconds: float) -> tuple[int, float, int]:
    """The common recipe: count everything, drop the oldest, count everything again.

    Runs until it fits or ``max_seconds`` pass; returns (messages dropped, seconds, tokens encoded)
    so the full cost can be extrapolated from the measured encoding rate.
    """
    def count(msgs):
        return 3 + sum(3 + len(encoding.encode(m["role"])) + len(encoding.encode(m["content"])) for m in msgs)

    kept, encoded, started = list(messages), 0, time.perf_counter()
    while kept:
        total = count(kept)
        encoded += total
        if total <= budget or time.perf_counter() - started > max_seconds:
            break
        kept.pop(0)
    return len(messages) - len(kept), time.perf_counter() - started, encoded


def measure_trimming(n_messages: int, repeats: int) -> dict:
    from jupyter_llmchat.core.conversation import Conversation
    from jupyter_llmchat.core.tokens import TokenCounter

    counter = TokenCounter("gpt-4o")
    counter.count_text("")  # load the vocabulary first (a counter loads it on its first count)
    texts = [f"message {i}: " + "some words about the topic " * (5 + i % 20) for i in range(n_messages)]
    conversation = Conversation(counter)
    started = time.perf_counter()
    for i, text in enumerate(texts):
        conversation.append(conversation.make("user" if i % 2 == 0 else "assistant", text))
    fill = time.perf_counter() - started
    question = conversation.make("user", "What now?")
    budget = 128_000 - 4096
    ours = []
    for _ in range(repeats):
        t = time.perf_counter()
        window = conversation.window(question, budget)
        ours.append(time.perf_counter() - t)
    everything = [m.to_api() for m in conversation.messages]
    dropped, seconds, encoded = reference_trim(counter.encoding, everything, budget - question.tokens,
                                               max_seconds=10.0)
    # Tokens the full recipe would encode: the whole remaining history once per dropped message.
    sizes = [m.tokens for m in conversation.messages]
    remaining, full_tokens, must_drop = sum(sizes), 0, 0
    for size in sizes:
        full_tokens += remaining
        if remaining + question.tokens + 3 <= budget:
            break
        remaining -= size
        must_drop += 1
    reference_estimate = seconds / encoded * full_tokens
    return {"messages": n_messages, "kept_ours": len(window) - 1, "kept_reference": n_messages - must_drop,
            "ours_ms": statistics.median(ours) * 1000, "reference_ms": reference_estimate * 1000,
            "reference_measured_drops": dropped, "reference_drops_needed": must_drop,
            "counting_on_entry_ms_total": fill * 1000}


def measure_streaming(tokens: int, repeats: int) -> dict:
    import openai

    from jupyter_llmchat.core.chatbot import Chatbot
    from jupyter_llmchat.core.reply import NullSink
    from jupyter_llmchat.server import LoopbackServer

    with LoopbackServer() as server:
        sdk = openai.OpenAI(base_url=server.base_url, api_key="bench", max_retries=0)
        bot = Chatbot("gpt-4o", base_url=server.base_url, api_key="bench")
        bare, ours, chunks = [], [], 0
        for _ in range(repeats):
            for kind in ("bare", "ours"):
                server.queue(tokens=tokens)
                t0 = time.process_time()
                if kind == "bare":
                    parts = []
                    stream = sdk.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}],
                                                         stream=True, stream_options={"include_usage": True})
                    for chunk in stream:
                        if chunk.choices and chunk.choices[0].delta.content:
                            parts.append(chunk.choices[0].delta.content)
                    text = "".join(parts)
                    bare.append(time.process_time() - t0)
                    chunks = len(parts)
                else:
                    reply = bot.ask("hi", sink=NullSink(), history=False)
                    ours.append(time.process_time() - t0)
                    assert reply.text == text
    per_token = lambda xs: statistics.median(xs) / chunks * 1e6  # noqa: E731
    return {"tokens": chunks, "bare_us_per_token": per_token(bare), "ours_us_per_token": per_token(ours),
            "ratio": statistics.median(ours) / statistics.median(bare)}


def kernel_main(quick: bool) -> None:
    trimming = measure_trimming(2_000 if quick else 10_000, 3 if quick else 7)
    print("RESULT " + json.dumps({"trimming": trimming}), flush=True)
    streaming = measure_streaming(2_000 if quick else 8_000, 2 if quick else 5)
    print("RESULT " + json.dumps({"streaming": streaming}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    from _kernel import run_script_in_kernel

    results = run_script_in_kernel(__file__, args.quick)
    t, s = results["trimming"], results["streaming"]
    print("| measure | ours | reference | ratio |")
    print("|---|---|---|---|")
    print(f"| trim {t['messages']:,}-message history (ms) | {t['ours_ms']:.2f} | {t['reference_ms']:.0f} "
          f"(re-encode per drop; {t['reference_measured_drops']} of {t['reference_drops_needed']:,} drops run, "
          f"rest extrapolated at the measured encoding rate) | {t['reference_ms'] / t['ours_ms']:.0f}x faster |")
    print(f"| counting on entry, all {t['messages']:,} messages (ms, paid once as they arrive) | "
          f"{t['counting_on_entry_ms_total']:.0f} | - | - |")
    print(f"| client CPU per streamed token, {s['tokens']:,} tokens full speed (us) | {s['ours_us_per_token']:.1f} "
          f"| {s['bare_us_per_token']:.1f} (bare SDK loop) | {s['ratio']:.2f}x |")
    print(f"\nkept: ours {t['kept_ours']:,} messages, reference {t['kept_reference']:,}")


if __name__ == "__main__":
    main()
