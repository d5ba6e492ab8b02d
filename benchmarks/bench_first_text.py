"""Time to the first text of an answer, from nothing: a fresh kernel (ours vs ChatLab), or a fresh process.

Kernels (the default): each run starts a new kernel with jupyter_client, sends ONE execute
request that loads the library and asks (ours: ``%load_ext jupyter_llmchat`` then the ``%%chat``
magic through ``run_cell_magic``, one cell; ChatLab: ``from chatlab import Chat`` then
``await Chat(...)(question)``), and times the execute request to the first IOPub message that
shows answer text (a display, update or stream holding the answer's first words). Both stream
the same scripted reply from a loopback server that runs warm in its own process; runs of the two
alternate, and the table gives the median of each. ChatLab needs openai<2 (we use openai 3.x), so
its kernel runs from a venv of its own under benchmarks/.peers/chatlab (made on first use with
``pip install chatlab ipykernel``; gitignored).

Process (``--process``): each run is a new Python process (nothing imported, no vocabulary
loaded) doing ``Chatbot(...)`` and ``ask()``, timed to the sink's first ``write()``: only the
client's first-use work (importing the SDK, building the client, counting the prompt).

    python benchmarks/bench_first_text.py                  # ours vs ChatLab in fresh kernels
    python benchmarks/bench_first_text.py --runs 9 --ours-only
    python benchmarks/bench_first_text.py --process        # the client alone, fresh processes
    python benchmarks/bench_first_text.py --process --root /tmp/old  # another checkout
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CLIENT = r"""
import json, sys, time
started = time.perf_counter()
from jupyter_llmchat.core import tokens
from jupyter_llmchat.core.chatbot import Chatbot
imported = time.perf_counter()

class FirstWrite:
    first = None
    loaded = None
    def start(self, model): pass
    def write(self, text):
        if self.first is None:
            self.first = time.perf_counter()
            self.loaded = "o200k_base" in getattr(tokens, "_LOADED", {}) or bool(
                getattr(getattr(tokens, "get_encoding", None), "cache_info", lambda: None)() and
                tokens.get_encoding.cache_info().currsize)
    def finish(self, reply): pass

made = time.perf_counter()
bot = Chatbot("gpt-4o", base_url=sys.argv[1], api_key="sk-bench", system="You are a helpful assistant.")
sink = FirstWrite()
asked = time.perf_counter()
reply = bot.ask("Explain in two sentences what a context window is.", sink=sink)
done = time.perf_counter()
print(json.dumps({"import_s": imported - started, "ask_to_first_write_s": sink.first - asked,
                  "bot_to_first_write_s": sink.first - made,
                  "ask_to_end_s": done - asked, "vocabulary_loaded_at_first_write": sink.loaded,
                  "status": reply.status, "usage": [reply.usage.prompt_tokens, reply.usage.completion_tokens]}))
"""


def start_server() -> tuple[subprocess.Popen[str], str]:
    server = subprocess.Popen([sys.executable, "-m", "jupyter_llmchat.server", "--tokens", "60"], cwd=ROOT,
                              stdout=subprocess.PIPE, text=True)
    assert server.stdout is not None
    for line in server.stdout:
        if line.startswith("base URL: "):
            return server, line.split(": ", 1)[1].strip()
    raise RuntimeError("the loopback server did not start")


def run_client(root: Path, base_url: str) -> dict[str, object]:
    env = {**os.environ, "PYTHONPATH": str(root)}
    done = subprocess.run([sys.executable, "-c", CLIENT, base_url], env=env, capture_output=True, text=True,
                          timeout=120, check=True, cwd="/")
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def process_main(args: argparse.Namespace) -> None:
    """Fresh processes: Chatbot() and ask() to the sink's first write()."""
    server, base_url = start_server()
    try:
        run_client(args.root, base_url)  # warms the server (its own vocabulary) and the disk cache
        results = [run_client(args.root, base_url) for _ in range(args.runs)]
    finally:
        server.terminate()
        server.wait(timeout=10)
    print(f"checkout: {args.root} ({len(results)} fresh processes)")
    for label, key in (("Chatbot() + ask() -> first write()", "bot_to_first_write_s"),
                       ("ask() -> first write()", "ask_to_first_write_s"), ("ask() -> return", "ask_to_end_s")):
        times = [float(r[key]) * 1000 for r in results if key in r]  # type: ignore[arg-type]
        if times:
            print(f"{label:36} median {statistics.median(times):4.0f} ms, min {min(times):4.0f} ms, "
                  f"max {max(times):4.0f} ms")
    loaded = sorted({r["vocabulary_loaded_at_first_write"] for r in results}, key=str)
    print(f"vocabulary loaded before the first write: {loaded}")
    print(f"usage (prompt, completion) of the last run: {results[-1]['usage']}")


# -- fresh kernels: ours vs ChatLab ------------------------------------------------------------------
PEERS = Path(__file__).resolve().parent / ".peers"
QUESTION = "Explain in two sentences what a context window is."
REPLY = ("Context windows are the amount of text, counted in tokens, that a model can read at once: "
         "the prompt and the answer together must fit in one.\n\nWhen a conversation grows past it, "
         "the oldest turns have to be dropped or summarised.")
FIRST_WORDS = "Context"  # the reply's first token: in whatever first shows answer text, and nowhere else
CELLS = {
    "ours": ("%load_ext jupyter_llmchat\n"
             f"get_ipython().run_cell_magic('chat', '--no-history', {QUESTION!r})"),
    "chatlab": ("from chatlab import Chat\n"
                f"await Chat(model='gpt-4o-mini')({QUESTION!r})"),
}


def peer_python(name: str = "chatlab") -> Path:
    """The Python of the peer's own venv (made on first use: ChatLab pins openai<2)."""
    venv = PEERS / name
    python = venv / "bin" / "python"
    if not python.exists():
        print(f"making {venv} (pip install chatlab ipykernel) ...", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "chatlab", "ipykernel"], check=True)
    return python


def kernel_spec_dir(name: str, python: Path) -> Path:
    """A kernelspec (in the gitignored peers folder) that runs ``python``'s ipykernel."""
    folder = PEERS / "kernels" / name
    folder.mkdir(parents=True, exist_ok=True)
    spec = {"argv": [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": f"first-text {name}", "language": "python"}
    (folder / "kernel.json").write_text(json.dumps(spec))
    return folder.parent


def time_first_text(library: str, base_url: str, data_home: str) -> dict[str, float]:
    """Start a fresh kernel, run the library's cell once; seconds from the execute request to the
    first IOPub message showing answer text, and to the cell's end."""
    import time

    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager

    if library == "ours":
        python = Path(sys.executable)
        env_path = {"PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    else:
        python = peer_python(library)
        env_path = {}
    drop = ("OPENAI_", "LLMCHAT_", "PYTHONPATH", "PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    # Installed packages run from compiled bytecode; an editable checkout (or a machine with
    # PYTHONDONTWRITEBYTECODE) would compile ours from source in every fresh kernel. Each library
    # gets a bytecode cache of its own, filled by the first (uncounted) run.
    env.update(env_path, OPENAI_BASE_URL=base_url, OPENAI_API_KEY="sk-bench", XDG_DATA_HOME=data_home,
               PYTHONPYCACHEPREFIX=os.path.join(data_home, "pycache", library))
    specs = KernelSpecManager(kernel_dirs=[str(kernel_spec_dir(f"first-text-{library}", python))])
    manager = KernelManager(kernel_name=f"first-text-{library}", kernel_spec_manager=specs)
    manager.start_kernel(env=env, cwd=data_home)
    client = manager.client()
    client.start_channels()
    try:
        client.wait_for_ready(timeout=120)
        sent = time.perf_counter()
        msg_id = client.execute(CELLS[library])
        first = None
        while True:
            msg = client.get_iopub_msg(timeout=120)
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            kind, content = msg["msg_type"], msg["content"]
            if kind == "error":
                raise RuntimeError(f"{library}: " + "\n".join(content["traceback"]))
            shown = content.get("text", "") if kind == "stream" else json.dumps(content.get("data", {}))
            if first is None and kind in ("stream", "display_data", "update_display_data") and FIRST_WORDS in shown:
                first = time.perf_counter() - sent
            if kind == "status" and content["execution_state"] == "idle":
                if first is None:
                    raise RuntimeError(f"{library}: the cell ended without showing the answer")
                return {"first_text_s": first, "cell_s": time.perf_counter() - sent}
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)


def kernels_main(args: argparse.Namespace) -> None:
    import tempfile

    libraries = ["ours"] if args.ours_only else ["ours", "chatlab"]
    for library in libraries[1:]:
        peer_python(library)  # made before any timing
    from jupyter_llmchat.server import LoopbackServer

    results: dict[str, list[dict[str, float]]] = {library: [] for library in libraries}
    with LoopbackServer() as server, tempfile.TemporaryDirectory(prefix="llmchat-first-text-") as data_home:
        server.queue(reply=REPLY)  # warms the server (its vocabulary) before any timing
        import openai

        openai.OpenAI(base_url=server.base_url, api_key="sk-bench").chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "warm up"}])

        def run(library: str) -> dict[str, float]:
            server.queue(reply=REPLY, rate=60.0)
            return time_first_text(library, server.base_url, data_home)

        for library in libraries:  # a first run of each warms the disk cache; not counted
            run(library)
        for _ in range(args.runs):
            for library in libraries:  # alternating, so drift hits both alike
                results[library].append(run(library))
    print(f"| library | first text (median of {args.runs}) | min | max | cell done (median) |")
    print("|---|---|---|---|---|")
    for library, runs in results.items():
        first = sorted(r["first_text_s"] for r in runs)
        done = statistics.median(r["cell_s"] for r in runs)
        print(f"| {library} | {statistics.median(first):.2f} s | {first[0]:.2f} s | {first[-1]:.2f} s | {done:.2f} s |")
    print("\n(fresh kernel per run; execute request -> first IOPub message showing answer text; the same "
          f"reply streamed at 60 tokens/s by a warm loopback server in this process; {os.cpu_count()} CPUs)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--process", action="store_true", help="time the client alone in fresh processes")
    parser.add_argument("--root", type=Path, default=ROOT, help="(--process) the checkout to measure")
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--ours-only", action="store_true", help="(kernels) skip ChatLab")
    args = parser.parse_args()
    if args.process:
        process_main(args)
    else:
        kernels_main(args)


if __name__ == "__main__":
    main()
