"""Two real operator processes sharing one Lease: one acts, the other stands by and takes over.

The leader is paused with SIGSTOP (a hung process or a partitioned node: it stops renewing but
does not exit), so the test sees the standby take over, act, and the old leader exit on waking
instead of acting beside the new one; a graceful stop hands the Lease over without waiting.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from conftest import start_operator
from test_operator import model

if TYPE_CHECKING:
    from conftest import Kubectl, OperatorProcess

Wait = Callable[..., Any]

pytestmark = pytest.mark.cluster

LEASE_SECONDS = 6


def holder(kubectl: Kubectl) -> str | None:
    lease = kubectl.get("lease", "kuberank-operator")
    value = ((lease or {}).get("spec") or {}).get("holderIdentity")
    return str(value) if value else None


def candidate(kubeconfig: Path, namespace: str, tmp_path: Path, name: str) -> OperatorProcess:
    """An operator replica; it is healthy (liveness answers) while it waits to lead."""
    return start_operator(
        kubeconfig, namespace, tmp_path / f"{name}.log", "--leader-elect",
        "--lease-namespace", namespace, "--lease-seconds", str(LEASE_SECONDS),
        "--identity", name,
    )


def test_standby_takes_over_from_a_stalled_leader_which_then_exits(
    kubeconfig: Path, namespace: str, crds: Path, tmp_path: Path, kubectl: Kubectl,
    wait_for: Wait,
) -> None:
    first = candidate(kubeconfig, namespace, tmp_path, "first")
    second: OperatorProcess | None = None
    try:
        wait_for("first to lead", lambda: holder(kubectl) == "first")
        second = candidate(kubeconfig, namespace, tmp_path, "second")
        kubectl.apply(model("before"))
        wait_for("leader reconciles", lambda: kubectl.get("deployment", "rrm-before"))
        assert holder(kubectl) == "first"
        assert "waiting to lead" in second.logs()
        assert "reconcile" not in second.logs(), "the standby acted"

        first.proc.send_signal(signal.SIGSTOP)
        stalled = time.monotonic()
        wait_for("standby to lead", lambda: holder(kubectl) == "second",
                 timeout=4 * LEASE_SECONDS)
        took_over = time.monotonic() - stalled
        assert took_over < 3 * LEASE_SECONDS, took_over
        kubectl.apply(model("after"))
        wait_for("new leader reconciles", lambda: kubectl.get("deployment", "rrm-after"))
        # Stalled a whole lease at least, so that its last renewal (before the stall) is that
        # old: the standby may take over sooner (it times the lease from when it saw it), and
        # a leader woken before its lease ran out rightly retries until its renew deadline.
        time.sleep(max(0.0, LEASE_SECONDS - (time.monotonic() - stalled)))

        first.proc.send_signal(signal.SIGCONT)
        woke = time.monotonic()
        assert first.proc.wait(timeout=4 * LEASE_SECONDS) == 1, first.logs()[-2000:]
        # Its last renewal is a lease old: it gives up at its first attempt, not after retrying
        # for a renew deadline, and refuses writes meanwhile.
        assert time.monotonic() - woke < LEASE_SECONDS / 2, time.monotonic() - woke
        assert "lost lease" in first.logs()
        assert second.alive() and holder(kubectl) == "second"
        print(f"standby led {took_over:.1f}s after the leader stalled (lease {LEASE_SECONDS}s)")
    finally:
        first.proc.send_signal(signal.SIGCONT)
        first.stop()
        if second is not None:
            assert second.stop() == 0, second.logs()[-2000:]
    assert holder(kubectl) is None, "a graceful stop hands the lease back"


def test_graceful_stop_hands_the_lease_over_without_waiting_it_out(
    kubeconfig: Path, namespace: str, crds: Path, tmp_path: Path, kubectl: Kubectl,
    wait_for: Wait,
) -> None:
    first = start_operator(kubeconfig, namespace, tmp_path / "first.log", "--leader-elect",
                           "--lease-namespace", namespace, "--lease-seconds", "60",
                           "--identity", "first")
    try:
        wait_for("first to lead", lambda: holder(kubectl) == "first")
        second = start_operator(kubeconfig, namespace, tmp_path / "second.log",
                                "--leader-elect", "--lease-namespace", namespace,
                                "--lease-seconds", "60", "--identity", "second")
    finally:
        assert first.stop() == 0, first.logs()[-2000:]
    try:
        stopped = time.monotonic()
        wait_for("standby to lead", lambda: holder(kubectl) == "second", timeout=30)
        assert time.monotonic() - stopped < 30  # a minute's lease was not waited out
        kubectl.apply(model("handed-over"))
        wait_for("new leader reconciles", lambda: kubectl.get("deployment", "rrm-handed-over"))
    finally:
        assert second.stop() == 0, second.logs()[-2000:]
