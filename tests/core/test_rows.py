"""A row's key is its request's identity: equal requests share it, any difference changes it."""

from __future__ import annotations

from jupyter_llmchat.core.rows import RowRequest, RowResult, request_key


def test_equal_requests_share_a_key_whatever_the_dict_order() -> None:
    a = RowRequest(0, "gpt-4o-mini", [{"role": "user", "content": "hi"}], {"temperature": 0, "seed": 1})
    b = RowRequest(7, "gpt-4o-mini", [{"content": "hi", "role": "user"}], {"seed": 1, "temperature": 0})
    assert a.key == b.key == request_key("gpt-4o-mini", [{"role": "user", "content": "hi"}],
                                         {"temperature": 0, "seed": 1})
    assert len(a.key) == 64


def test_any_difference_changes_the_key() -> None:
    base = RowRequest(0, "gpt-4o-mini", [{"role": "user", "content": "hi"}])
    assert base.key != RowRequest(0, "gpt-4o", [{"role": "user", "content": "hi"}]).key
    assert base.key != RowRequest(0, "gpt-4o-mini", [{"role": "user", "content": "hi!"}]).key
    assert base.key != RowRequest(0, "gpt-4o-mini", [{"role": "user", "content": "hi"}],
                                  {"response_format": {"type": "json_object"}}).key


def test_a_result_starts_pending() -> None:
    result = RowResult(3, "k")
    assert (result.status, result.text, result.error, result.attempts) == ("pending", None, None, 0)
