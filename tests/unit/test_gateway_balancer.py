"""Least-outstanding-requests balancing across a model's replicas."""

from __future__ import annotations

from collections import Counter

import pytest
from kuberank.gateway.balancer import Balancer

pytestmark = pytest.mark.unit

REPLICAS = ["10.0.0.1:8080", "10.0.0.2:8080", "10.0.0.3:8080"]


def test_idle_replicas_are_used_in_turn() -> None:
    balancer = Balancer()
    picks = Counter(balancer.pick(REPLICAS) for _ in range(30))
    assert picks == Counter({r: 10 for r in REPLICAS})


def test_busy_replica_is_avoided_while_others_have_fewer_in_flight() -> None:
    balancer = Balancer()
    with balancer.track(REPLICAS[0]), balancer.track(REPLICAS[1]), balancer.track(REPLICAS[1]):
        assert {balancer.pick(REPLICAS) for _ in range(5)} == {REPLICAS[2]}
        with balancer.track(REPLICAS[2]):
            assert {balancer.pick(REPLICAS) for _ in range(5)} == {REPLICAS[0], REPLICAS[2]}
    assert all(balancer.outstanding(r) == 0 for r in REPLICAS)


def test_outstanding_count_is_released_when_the_request_fails() -> None:
    balancer = Balancer()
    with pytest.raises(ConnectionError), balancer.track(REPLICAS[0]):
        raise ConnectionError
    assert balancer.outstanding(REPLICAS[0]) == 0


def test_excluded_replicas_are_not_picked_for_a_retry() -> None:
    balancer = Balancer()
    assert balancer.pick(REPLICAS, exclude=frozenset(REPLICAS[:2])) == REPLICAS[2]
    assert balancer.pick(REPLICAS, exclude=frozenset(REPLICAS)) is None
    assert balancer.pick([]) is None


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_replica_that_refused_a_connection_is_skipped_during_the_cooldown() -> None:
    clock = FakeClock()
    balancer = Balancer(cooldown=5.0, clock=clock)
    balancer.mark_failed(REPLICAS[0])
    assert REPLICAS[0] not in {balancer.pick(REPLICAS) for _ in range(10)}
    clock.now += 5.0
    assert REPLICAS[0] in {balancer.pick(REPLICAS) for _ in range(10)}


def test_cooling_replica_is_still_used_when_it_is_the_only_one_left() -> None:
    balancer = Balancer(cooldown=5.0, clock=FakeClock())
    balancer.mark_failed(REPLICAS[0])
    assert balancer.pick(REPLICAS[:1]) == REPLICAS[0]
