"""Scripts for the next requests (server/script.py): checked when queued, in one line."""

from __future__ import annotations

import pytest


def test_queue_rejects_bad_scripts_in_one_line(loopback):
    with pytest.raises(ValueError, match="unknown fault 'meltdown'; choose one of: rate_limit"):
        loopback.queue(fault="meltdown")
    with pytest.raises(ValueError, match="not both"):
        loopback.queue(reply="x", tokens=5)
    with pytest.raises(ValueError, match="rate must be > 0"):
        loopback.queue(rate=0)
    with pytest.raises(ValueError, match="times must be"):
        loopback.queue(times=0)
    assert loopback.pending == 0
