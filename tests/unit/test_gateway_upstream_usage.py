"""Usage the gateway counts per key comes from each dialect's response body."""

from __future__ import annotations

import json

import pytest
from kuberank.gateway.upstream import header_tokens, usage_tokens

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("body", "tokens"),
    [
        ({"results": [], "usage": {"prompt_tokens": 69, "total_tokens": 69}}, 69),
        ({"results": [], "meta": {"tokens": {"input_tokens": 12, "output_tokens": 0}}}, 12),
        ([{"index": 0, "score": 0.3}], 0),
        ({"usage": {"total_tokens": "lots"}}, 0),
        ({"usage": {"total_tokens": -5}}, 0),
    ],
)
def test_usage_is_read_from_jina_and_cohere_bodies(body: object, tokens: int) -> None:
    assert usage_tokens(json.dumps(body).encode()) == tokens


def test_unparseable_body_counts_no_usage() -> None:
    assert usage_tokens(b"\xff not json") == 0


def test_only_a_count_in_the_usage_header_is_taken() -> None:
    assert header_tokens("17") == 17 and header_tokens(" 17 ") == 17
    assert header_tokens("not-a-number") is None and header_tokens("-3") is None
    # A runtime's header must never fail the request: int() refused 4301 digits (a 500).
    assert header_tokens("9" * 5000) is None and header_tokens("\u0663") is None
    assert header_tokens(None) is None and header_tokens("") is None
    assert header_tokens(None) is None
