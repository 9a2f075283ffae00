"""The bound on request bodies held at once: what each request is counted at, and who fits."""

from __future__ import annotations

import pytest
from kuberank.protocol.budget import COMPRESSION_ALLOWANCE, BodyBudget, body_size

pytestmark = pytest.mark.unit

CAP = 1 << 20


@pytest.mark.parametrize(("headers", "size"), [
    ([(b"content-length", b"1234")], 1234),
    ([(b"content-length", b"1234"), (b"content-encoding", b"identity")], 1234),
    ([(b"content-encoding", b"gzip"), (b"content-length", b"1000")],
     1000 * COMPRESSION_ALLOWANCE),
    ([(b"content-encoding", b"gzip"), (b"content-length", b"900000")], CAP),  # inflates ≤ cap
    ([(b"transfer-encoding", b"chunked")], CAP),  # no length declared: the most it may be
    ([(b"content-length", b"99999999")], CAP),  # refused at the cap anyway (413)
    ([(b"content-length", b"twelve")], CAP),
])
def test_a_request_is_counted_at_what_its_body_may_grow_to(
    headers: list[tuple[bytes, bytes]], size: int
) -> None:
    assert body_size(headers, CAP) == size


def test_requests_fit_until_the_budget_is_spent_and_a_lone_one_always_fits() -> None:
    budget = BodyBudget(100)
    assert budget.try_reserve(500)  # alone: larger than the budget, still served
    assert not budget.try_reserve(1)
    budget.release(500)
    assert budget.try_reserve(60) and budget.try_reserve(40)
    assert not budget.try_reserve(1)
    budget.release(60)
    assert budget.try_reserve(60) and budget.reserved == 100
