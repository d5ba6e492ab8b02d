"""``python -m jupyter_llmchat.server`` (server/cli.py): serve until Ctrl-C, report a busy port and
bad options in one line."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest
from openai import OpenAI
from support.loopback_client import KEY, QUESTION

from jupyter_llmchat.server import DISCLOSURE, LoopbackServer


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
            process.wait()


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
