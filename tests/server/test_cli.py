"""``python -m jupyter_llmchat.server`` (server/cli.py): serve until Ctrl-C, report a busy port and
bad options in one line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from openai import OpenAI
from support.loopback_client import KEY, QUESTION, encode

import jupyter_llmchat
from jupyter_llmchat.server import DISCLOSURE, LoopbackServer
from jupyter_llmchat.server.cli import main


def test_module_entry_point_serves_until_ctrl_c(tmp_path):
    process = subprocess.Popen([sys.executable, "-m", "jupyter_llmchat.server", "--tokens", "20"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        banner = [process.stdout.readline() for _ in range(3)]
        assert "not from a model" in banner[0]
        base_url = banner[1].split("base URL: ")[1].strip()
        assert base_url.startswith("http://127.0.0.1:") and base_url.endswith("/v1")
        client = OpenAI(base_url=base_url, api_key=KEY, max_retries=0)
        response = client.chat.completions.create(model="gpt-4o-mini", messages=QUESTION)
        assert response.choices[0].message.content.startswith(DISCLOSURE)
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=20) == 0
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate()  # waits, and closes its pipes


def test_module_entry_point_reports_a_busy_port():
    with LoopbackServer() as busy:
        port = busy.port
        result = subprocess.run([sys.executable, "-m", "jupyter_llmchat.server", "--port", str(port)],
                                capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr.splitlines()[-1]


def test_module_entry_point_rejects_bad_options():
    result = subprocess.run([sys.executable, "-m", "jupyter_llmchat.server", "--rate", "-1"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "--rate must be > 0 tokens/s" in result.stderr


def test_cli_refuses_a_negative_latency(capsys):
    from jupyter_llmchat.server.cli import main

    with pytest.raises(SystemExit):
        main(["--latency", "-1"])
    assert "--latency must be >= 0 seconds, got -1.0" in capsys.readouterr().err


ROOT = Path(jupyter_llmchat.__file__).resolve().parent.parent  # the subprocess imports this checkout
HELP = """\
usage: python -m jupyter_llmchat server [-h] [--port PORT] [--tokens TOKENS] [--rate RATE]
                                        [--latency LATENCY]

OpenAI-compatible loopback server on 127.0.0.1. Replies are generated placeholder Markdown from
the jupyter_llmchat offline demo server, not from a model.

options:
  -h, --help         show this help message and exit
  --port PORT        TCP port (default: a free one)
  --tokens TOKENS    length of default replies in tokens
  --rate RATE        streaming speed in tokens/s (default: as fast as possible)
  --latency LATENCY  seconds each answer waits before it begins, as a model does (default: 0)
"""


def run_server_command(*args: str, **kwargs: Any) -> subprocess.Popen[str]:
    """``python -m jupyter_llmchat server ARGS`` (the package's entry point, which hands over to cli.main)."""
    env = {**os.environ, "COLUMNS": "100", "PYTHONPATH": str(ROOT)}  # argparse wraps help at COLUMNS
    return subprocess.Popen([sys.executable, "-m", "jupyter_llmchat", "server", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def test_help_names_every_option_and_says_the_replies_are_not_from_a_model():
    process = run_server_command("--help")
    stdout, stderr = process.communicate(timeout=60)
    assert (process.returncode, stdout, stderr) == (0, HELP, "")


def test_package_entry_point_serves_on_a_free_port_with_the_options_given_until_ctrl_c():
    process = run_server_command("--port", "0", "--tokens", "30")
    try:
        banner = [process.stdout.readline() for _ in range(3)]
        port = int(banner[1].removeprefix("base URL: http://127.0.0.1:").removesuffix("/v1\n"))
        assert banner == ["jupyter_llmchat loopback server (offline demo; replies are not from a model)\n",
                          f"base URL: http://127.0.0.1:{port}/v1\n", "Press Ctrl-C to stop.\n"]
        assert 0 < port < 65536
        client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=KEY, max_retries=0)
        response = client.chat.completions.create(model="gpt-4o-mini", messages=QUESTION)
        text = response.choices[0].message.content
        assert text.startswith(DISCLOSURE + " You asked: “Hi there”")
        assert response.usage.completion_tokens == len(encode(text)) >= 30  # --tokens 30, ended at a block edge
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=20)
        assert (process.returncode, stdout, stderr) == (0, "", "")  # Ctrl-C stops it quietly
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.mark.parametrize("argv, error", [
    (["--port", "70000"], "--port must be 0..65535, got 70000"),
    (["--port", "-1"], "--port must be 0..65535, got -1"),
    (["--tokens", "0"], "--tokens must be >= 1, got 0"),
    (["--rate", "0"], "--rate must be > 0 tokens/s, got 0.0"),
    (["--latency", "inf"], "--latency must be >= 0 seconds, got inf"),
    (["--latency", "nan"], "--latency must be >= 0 seconds, got nan"),
    (["--port", "eighty"], "argument --port: invalid int value: 'eighty'"),
])
def test_a_bad_option_is_one_line_naming_it_and_exit_status_2(capsys, argv, error):
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.splitlines()[-1] == f"python -m jupyter_llmchat.server: error: {error}"
