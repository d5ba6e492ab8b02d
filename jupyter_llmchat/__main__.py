"""``python -m jupyter_llmchat demo``: run the quickstart notebook in a real kernel and show its answers.

Offline by default: the kernel gets no OPENAI_API_KEY / OPENAI_BASE_URL, so the magics start the
loopback demo server and say so. ``--online`` keeps the environment (real endpoint, real cost).
Either way the demo's conversations go to a store of their own (``store.database.demo_path()``),
never into the user's default store. ``python -m jupyter_llmchat server`` runs the loopback
server on its own.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .store.database import STORE_ENV, demo_path

DEFAULT_NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "quickstart.ipynb"
ENDPOINT_VARIABLES = ("OPENAI_API_KEY", "OPENAI_BASE_URL", "AZURE_OPENAI_API_KEY", "AZURE_OPENAI_ENDPOINT")


def run_demo(notebook: Path, output: Path, *, online: bool = False, timeout: int = 600) -> int:
    """Execute ``notebook`` with nbclient, save it to ``output``, print each cell's text result."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    if not notebook.is_file():
        print(f"error: notebook {notebook} not found; pass its path as an argument", file=sys.stderr)
        return 2
    nb = nbformat.read(notebook, as_version=4)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(notebook.parent)}})
    try:
        client.execute(env=demo_environment(online=online))
        status = 0
    except CellExecutionError as error:
        print(f"error: a cell failed: {error.ename}: {error.evalue}", file=sys.stderr)  # no colour codes
        status = 1
    finally:
        nbformat.write(nb, output)
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        print(f"\n>>> {cell.source.strip()}")
        for out in cell.get("outputs", []):
            text = out.get("text") or out.get("data", {}).get("text/markdown") or out.get("data", {}).get("text/plain")
            if text:
                print(text.rstrip())
    print(f"\nexecuted notebook saved to {output}; its conversations are in the demo's own store, {demo_path()}")
    return status


def demo_environment(*, online: bool) -> dict[str, str]:
    """The demo kernel's environment: ours, with the demo's own store, and (offline) no endpoint."""
    env = {name: value for name, value in os.environ.items() if online or name not in ENDPOINT_VARIABLES}
    env[STORE_ENV] = str(demo_path())
    return env


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jupyter_llmchat")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="run the quickstart notebook (offline unless --online)")
    demo.add_argument("notebook", nargs="?", type=Path, default=DEFAULT_NOTEBOOK)
    demo.add_argument("--output", type=Path, default=Path("llmchat-demo.ipynb"),
                      help="where to save the executed notebook (default: ./llmchat-demo.ipynb)")
    demo.add_argument("--online", action="store_true",
                      help="keep OPENAI_API_KEY / OPENAI_BASE_URL: talk to the real endpoint")
    commands.add_parser("server", help="run the loopback OpenAI-compatible server", add_help=False)
    args, rest = parser.parse_known_args(argv)
    if args.command == "server":
        from .server import main as server_main

        return server_main(rest, prog="python -m jupyter_llmchat server") or 0
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    return run_demo(args.notebook, args.output, online=args.online)


if __name__ == "__main__":
    sys.exit(main())
