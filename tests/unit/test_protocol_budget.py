"""The bound on request bodies worked on at once: what each is counted at, and who fits."""

from __future__ import annotations

import pytest
from kuberank.protocol.budget import COMPRESSION_ALLOWANCE, BodyBudget, reserved_size

pytestmark = pytest.mark.unit

CAP = 1 << 20


@pytest.mark.parametrize(("received", "compressed", "size"), [
    (1234, False, 1234),
    (1000, True, 1000 * COMPRESSION_ALLOWANCE),  # it inflates
    (900_000, True, CAP),  # inflating stops at the cap (413)
    (0, False, 0),
])
def test_a_body_is_counted_at_what_it_may_grow_to(received: int, compressed: bool,
                                                  size: int) -> None:
    assert reserved_size(received, compressed, CAP) == size


def test_bodies_fit_until_the_budget_is_spent_and_a_lone_one_always_fits() -> None:
    budget = BodyBudget(100)
    assert budget.try_reserve(500)  # alone: larger than the budget, still served
    assert not budget.try_reserve(1)
    budget.release(500)
    assert budget.try_reserve(60) and budget.try_reserve(40)
    assert not budget.try_reserve(1)
    budget.release(60)
    assert budget.try_reserve(60) and budget.reserved == 100


def test_a_request_grows_its_reservation_and_only_others_can_make_it_not_fit() -> None:
    budget = BodyBudget(100)
    assert budget.try_reserve(80)  # a body arriving: its first chunk
    assert budget.try_reserve(500, holding=True)  # its own later chunks: it is alone
    assert not budget.try_reserve(1)  # another request's first chunk
    budget.release(580)
    assert budget.try_reserve(50) and budget.try_reserve(30)  # two requests
    assert not budget.try_reserve(21, holding=True)  # the second grows past: the first holds
    assert budget.try_reserve(20, holding=True) and budget.reserved == 100
