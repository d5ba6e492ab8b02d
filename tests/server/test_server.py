"""The package-level API of jupyter_llmchat.server (server/__init__.py): the offline demo server.

The server's modules have their own test files beside their names (test_handler.py, test_completions.py,
test_validation.py, test_loopback.py, test_cli.py, ...).
"""

from __future__ import annotations

from support.loopback_client import QUESTION, sdk

from jupyter_llmchat.server import DEMO_RATE, DISCLOSURE, start_demo_server


def test_start_demo_server_is_one_lazy_singleton():
    demo = start_demo_server()
    assert start_demo_server() is demo
    assert demo.default_rate == DEMO_RATE
    response = sdk(demo).chat.completions.create(model="gpt-4o-mini", messages=QUESTION)
    text = response.choices[0].message.content
    assert text.startswith(DISCLOSURE)
