"""Stop latency: ``bot.stop()`` -> ``ask()`` returned, at each moment an answer can be in.

Against the loopback server (real SDK, real HTTP), several runs per moment:

  before the request is built   stop() as soon as ask() has begun
  while images are prepared     stop() while a matplotlib figure is being drawn
  waiting for headers           stop() once the server holds the request (it answers after 3 s)
  in a retry-after sleep        stop() once the server has answered 429 (retry-after 2 s: the SDK sleeps)
  mid-stream                    stop() after 20 deltas of a long answer at 200 tokens/s

    python benchmarks/bench_stop.py               # 10 runs per moment
    python benchmarks/bench_stop.py --runs 3
    python benchmarks/bench_stop.py --root /tmp/old   # another checkout, e.g. before a change

Also shown per moment: the status the answer ended with and whether any request reached the server
after stop() (it never should).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

HEADERS_DELAY = 3.0
RETRY_AFTER = 2.0


class Sink:
    """Sets ``streaming`` after ``after`` deltas."""

    def __init__(self, after: int = 0) -> None:
        self.after, self.count, self.streaming = after, 0, threading.Event()

    def start(self, model: str) -> None:
        pass

    def write(self, text: str) -> None:
        self.count += 1
        if self.after and self.count >= self.after:
            self.streaming.set()

    def finish(self, reply: Any) -> None:
        pass


def slow_figure(release: threading.Event, drawing: threading.Event) -> Any:
    from matplotlib.artist import Artist
    from matplotlib.figure import Figure

    class SlowArtist(Artist):
        def draw(self, renderer: Any) -> None:
            drawing.set()
            release.wait(10)

    figure = Figure(figsize=(1, 1))
    figure.add_artist(SlowArtist())
    return figure


def wait_for(condition: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.001)


def one_run(server: Any, moment: str) -> tuple[float, str, int]:
    """(ms from stop() to ask() returning, the reply's status, requests that arrived after stop())."""
    from jupyter_llmchat.core.chatbot import Chatbot

    server.reset()
    bot = Chatbot("gpt-4o", base_url=server.base_url, api_key="sk-bench", max_retries=2)
    kwargs: dict[str, Any] = {}
    sink = Sink()
    release, drawing = threading.Event(), threading.Event()
    if moment == "while images are prepared":
        kwargs["images"] = [slow_figure(release, drawing)]
    elif moment == "waiting for headers":
        server.queue(fault="slow_first_byte", delay=HEADERS_DELAY)
    elif moment == "in a retry-after sleep":
        server.queue(fault="rate_limit", retry_after=RETRY_AFTER)
    elif moment == "mid-stream":
        server.queue(tokens=4000, rate=200.0)
        sink = Sink(after=20)

    def ready() -> bool:
        """The answer is in ``moment``: stop now."""
        if moment == "before the request is built":
            return bool(getattr(bot, "busy", True))  # ask() has begun (an old checkout has no busy)
        if moment == "while images are prepared":
            return drawing.is_set()
        if moment == "waiting for headers":
            return len(server.requests) == 1
        if moment == "in a retry-after sleep":
            return bool(server.requests) and server.requests[0].status == 429
        return sink.streaming.is_set()

    done: dict[str, Any] = {}

    def ask() -> None:
        try:
            done["reply"] = bot.ask("Tell me about stopping.", sink=sink, **kwargs)
        except Exception as error:  # reported in the table
            done["error"] = type(error).__name__
        done["returned"] = time.perf_counter()

    thread = threading.Thread(target=ask)
    thread.start()
    wait_for(ready)
    seen = len(server.requests)
    stopped = time.perf_counter()
    bot.stop()
    thread.join(60)
    release.set()
    time.sleep(RETRY_AFTER + 0.5 if moment == "in a retry-after sleep" else 0.05)  # would a retry be sent?
    reply = done.get("reply")
    status = reply.status if reply is not None else done.get("error", "?")
    return (done["returned"] - stopped) * 1000, status, len(server.requests) - seen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parent.parent,
                        help="checkout whose jupyter_llmchat is measured")
    args = parser.parse_args()
    sys.path.insert(0, str(args.root))
    from jupyter_llmchat.server import LoopbackServer

    moments = ["before the request is built", "while images are prepared", "waiting for headers",
               "in a retry-after sleep", "mid-stream"]
    print(f"checkout: {args.root}; {args.runs} runs per moment\n")
    print("| moment | median ms | max ms | statuses | requests after stop() |")
    print("|---|---:|---:|---|---:|")
    with LoopbackServer() as server:
        one_run(server, "mid-stream")  # warm: imports, the SDK client, the server's vocabulary
        for moment in moments:
            runs = [one_run(server, moment) for _ in range(args.runs)]
            latencies = [ms for ms, _, _ in runs]
            statuses = ", ".join(f"{status} x{count}" for status, count in sorted(
                {status: sum(1 for _, s, _ in runs if s == status) for _, status, _ in runs}.items()))
            print(f"| {moment} | {statistics.median(latencies):.2f} | {max(latencies):.2f} | {statuses} | "
                  f"{sum(after for _, _, after in runs)} |")


if __name__ == "__main__":
    main()
