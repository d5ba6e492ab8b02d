"""Base-URL secrets never show: redacted in URLs, found for scrubbing, hidden in library logs."""

from __future__ import annotations

import logging

import pytest

from jupyter_llmchat.core.redaction import hide_in_logs, redact_url, url_secrets


@pytest.mark.parametrize("url, shown", [
    ("https://api.openai.com/v1", "https://api.openai.com/v1"),
    ("https://ada:s3cret@gw.example/v1", "https://***@gw.example/v1"),
    ("https://tok3n-only@gw.example/v1", "https://***@gw.example/v1"),
    ("https://gw.example/v1?api-key=abc123&api-version=2024-10-21",
     "https://gw.example/v1?api-key=***&api-version=2024-10-21"),
    ("https://gw.example/v1?access_token=t0k&sig=xyz&x=1", "https://gw.example/v1?access_token=***&sig=***&x=1"),
])
def test_redact_url_hides_userinfo_and_secret_query_values(url, shown):
    assert redact_url(url) == shown


def test_url_secrets_are_found_as_written_and_decoded():
    assert url_secrets("https://ada:p%40ss-word@gw.example/v1?api-key=k%2Fey-1&v=2") == [
        "ada", "p%40ss-word", "k%2Fey-1", "p@ss-word", "k/ey-1"]
    assert url_secrets("https://gw.example/v1") == []


def test_hidden_secrets_never_reach_a_log(caplog):
    caplog.set_level(logging.INFO)
    hide_in_logs(["hunter2-secret"])
    logging.getLogger("httpx2").info('HTTP Request: POST %s "%s"', "https://u:hunter2-secret@h/v1", "200 OK")
    logging.getLogger("openai").info("nothing secret here")
    assert 'HTTP Request: POST https://u:***@h/v1 "200 OK"' in caplog.text
    assert "hunter2-secret" not in caplog.text and "nothing secret here" in caplog.text
