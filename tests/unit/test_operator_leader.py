"""Lease timing derived from the lease duration: client-go's proportions, always a timing the
kubernetes client's leader election accepts (its Config exits the process otherwise); and lease
calls that cannot hang."""

from __future__ import annotations

import socket
import time

import pytest
import urllib3
from kuberank.operator.leader import LeaseTiming, timed_leases
from kubernetes import client
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


def test_a_lease_call_on_a_connection_that_never_answers_times_out() -> None:
    """A partition that drops packets leaves the renewal's connection open and silent: without
    a timeout the call never returned, and the leader never learnt it had lost the lease."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()  # accepts (in the kernel) and never answers
        config = client.Configuration()
        config.host = f"http://127.0.0.1:{silent.getsockname()[1]}"
        leases = timed_leases(client.ApiClient(config), 1)
        for call in (lambda: leases.read_namespaced_lease("kuberank-operator", "ns"),
                     lambda: leases.replace_namespaced_lease("kuberank-operator", "ns", {})):
            started = time.monotonic()
            with pytest.raises(urllib3.exceptions.HTTPError, match="timed out"):
                call()
            took = time.monotonic() - started
            assert 0.9 < took < 2.5, took  # once: urllib3 retried it to 4 s
