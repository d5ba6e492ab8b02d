"""``python -m jupyter_llmchat.server``: serve the loopback API from a terminal until Ctrl-C."""

from __future__ import annotations

import argparse
import threading
from collections.abc import Sequence

from .loopback import LoopbackServer


def main(argv: Sequence[str] | None = None, *, prog: str = "python -m jupyter_llmchat.server") -> int:
    """``prog``: how the command was typed, for the usage line (``python -m jupyter_llmchat server`` too)."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="OpenAI-compatible loopback server on 127.0.0.1. Replies are generated placeholder "
                    "Markdown from the jupyter_llmchat offline demo server, not from a model.")
    parser.add_argument("--port", type=int, default=0, help="TCP port (default: a free one)")
    parser.add_argument("--tokens", type=int, default=150, help="length of default replies in tokens")
    parser.add_argument("--rate", type=float, default=None,
                        help="streaming speed in tokens/s (default: as fast as possible)")
    parser.add_argument("--latency", type=float, default=0.0,
                        help="seconds each answer waits before it begins, as a model does (default: 0)")
    args = parser.parse_args(argv)
    if args.port < 0 or args.port > 65535:
        parser.error(f"--port must be 0..65535, got {args.port}")
    if args.tokens < 1:
        parser.error(f"--tokens must be >= 1, got {args.tokens}")
    if args.rate is not None and args.rate <= 0:
        parser.error(f"--rate must be > 0 tokens/s, got {args.rate}")
    if not 0 <= args.latency < float("inf"):
        parser.error(f"--latency must be >= 0 seconds, got {args.latency}")
    try:
        server = LoopbackServer(port=args.port, default_tokens=args.tokens, default_rate=args.rate,
                                latency=args.latency).start()
    except OSError as error:
        parser.error(f"cannot listen on 127.0.0.1:{args.port}: {error.strerror or error}")
    print(f"jupyter_llmchat loopback server (offline demo; replies are not from a model)\n"
          f"base URL: {server.base_url}\nPress Ctrl-C to stop.", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0
