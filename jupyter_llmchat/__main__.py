"""``python -m jupyter_llmchat demo``: run the quickstart notebook in a real kernel and show its answers.

Offline by default: the kernel gets no OPENAI_API_KEY / OPENAI_BASE_URL, so the magics start the
loopback demo server and say so. ``--online`` keeps the environment (real endpoint, real cost).
``python -m jupyter_llmchat server`` runs the loopback server on its own.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

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
    saved = {name: os.environ.pop(name) for name in ENDPOINT_VARIABLES if not online and name in os.environ}
    nb = nbformat.read(notebook, as_version=4)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(notebook.parent)}})
    try:
        client.execute()
        status = 0
    except CellExecutionError as error:
        print(f"error: a cell failed: {str(error).strip().splitlines()[-1]}", file=sys.stderr)
        status = 1
    finally:
        os.environ.update(saved)
        nbformat.write(nb, output)
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        print(f"\n>>> {cell.source.strip()}")
        for out in cell.get("outputs", []):
            text = out.get("text") or out.get("data", {}).get("text/markdown") or out.get("data", {}).get("text/plain")
            if text:
                print(text.rstrip())
    print(f"\nexecuted notebook saved to {output}")
    return status


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

        return server_main(rest) or 0
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    return run_demo(args.notebook, args.output, online=args.online)


if __name__ == "__main__":
    sys.exit(main())
