"""Lease timing derived from the lease duration: client-go's proportions, always a timing the
kubernetes client's leader election accepts (its Config exits the process otherwise)."""

from __future__ import annotations

import pytest
from kuberank.operator.leader import LeaseTiming
from kubernetes.leaderelection import electionconfig

pytestmark = pytest.mark.unit


def test_fifteen_seconds_is_client_gos_default_timing() -> None:
    assert LeaseTiming.for_lease(15) == LeaseTiming(15, 10, 2)


@pytest.mark.parametrize("lease", [3, 4, 6, 7, 15, 60, 137, 3600])
def test_every_lease_of_three_seconds_or_more_gives_a_timing_the_library_accepts(
    lease: int,
) -> None:
    timing = LeaseTiming.for_lease(lease)
    assert timing.lease_seconds > timing.renew_deadline_seconds > timing.retry_seconds >= 1
    electionconfig.Config(  # type: ignore[no-untyped-call]
        lock=object(), lease_duration=timing.lease_seconds,
        renew_deadline=timing.renew_deadline_seconds, retry_period=timing.retry_seconds,
        onstarted_leading=lambda: None, onstopped_leading=None)


def test_a_shorter_lease_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 3 seconds"):
        LeaseTiming.for_lease(2)
