"""Run a benchmark's measurements inside a real IPython kernel (jupyter_client) and collect JSON."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def run_in_kernel(code: str, *, timeout: float = 900.0, env: dict[str, str] | None = None) -> list[Any]:
    """Execute ``code`` in a fresh python3 kernel; return every JSON line it printed after 'RESULT '."""
    from jupyter_client.manager import start_new_kernel

    kernel_env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    kernel_env.update(env or {})
    manager, client = start_new_kernel(kernel_name="python3", env=kernel_env, cwd=str(ROOT))
    results: list[Any] = []
    try:
        msg_id = client.execute(code)
        while True:
            msg = client.get_iopub_msg(timeout=timeout)
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            kind, content = msg["msg_type"], msg["content"]
            if kind == "stream":
                for line in content["text"].splitlines():
                    if line.startswith("RESULT "):
                        results.append(json.loads(line[7:]))
                    else:
                        print(line, file=sys.stderr)
            elif kind == "error":
                raise RuntimeError("\n".join(content["traceback"]))
            elif kind == "status" and content["execution_state"] == "idle":
                break
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)
    return results


def run_script_in_kernel(script: str, *args: Any) -> dict[str, Any]:
    """Run ``kernel_main(*args)`` of the benchmark ``script`` in a fresh kernel; merge its RESULTs."""
    code = (f"import runpy; runpy.run_path({str(Path(script).resolve())!r}, run_name='__kernel__')"
            f"['kernel_main'](*{args!r})")
    return {key: value for result in run_in_kernel(code) for key, value in result.items()}
