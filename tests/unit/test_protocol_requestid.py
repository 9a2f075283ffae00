"""The request id a client presents is kept when it is safe to log and echo, else replaced."""

from __future__ import annotations

import re

import pytest
from kuberank.protocol.requestid import choose_request_id

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("presented", ["abc", "7f0c2e9a-1b2c-4d5e-8f90-a1b2c3d4e5f6",
                                       "trace:span/1+2=3_x.y", "x" * 128])
def test_a_usable_id_is_kept(presented: str) -> None:
    assert choose_request_id(presented) == presented


@pytest.mark.parametrize("presented", [None, "", "x" * 129, "two words", "line\r\nbreak",
                                       "quote\"d", "ünïcode"])
def test_a_missing_or_unsafe_id_is_replaced_by_a_fresh_one(presented: str | None) -> None:
    chosen = choose_request_id(presented)
    assert re.fullmatch(r"[0-9a-f]{32}", chosen)
    assert chosen != choose_request_id(presented)
