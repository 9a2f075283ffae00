"""Replicas from the load the gateways report (operator side, pure)."""

from datetime import UTC, datetime, timedelta

import pytest
from kuberank.crd.rerankmodel import Autoscaling
from kuberank.operator.status.autoscale import (
    Autoscaler,
    current_load,
    forgotten_reporters,
    next_replicas,
    wanted_replicas,
)
from pydantic import ValidationError

pytestmark = pytest.mark.unit

T0 = datetime(2026, 1, 1, tzinfo=UTC)
POLICY = Autoscaling(min_replicas=1, max_replicas=5, target_in_flight=4,
                     scale_down_delay_seconds=60)


def stamp(seconds_ago: float) -> str:
    return (T0 - timedelta(seconds=seconds_ago)).isoformat().replace("+00:00", "Z")


def test_fresh_reports_of_every_gateway_add_up_and_stale_ones_count_nothing() -> None:
    status = {"gatewayLoad": {
        "gw-a": {"inFlight": 6.5, "time": stamp(5)},
        "gw-b": {"inFlight": 3, "time": stamp(29)},
        "gw-gone": {"inFlight": 40, "time": stamp(31)},
        "gw-odd": {"inFlight": "many", "time": stamp(1)},
        "gw-old": {"inFlight": 1, "time": stamp(601)},
        "gw-untimed": {"inFlight": 1},
    }}
    assert current_load(status, T0) == pytest.approx(9.5)
    assert forgotten_reporters(status, T0) == ["gw-old", "gw-untimed"]
    assert current_load({}, T0) == 0 and current_load(None, T0) == 0
    # a model that just woke from 0 replicas counts only what was measured since
    assert current_load(status, T0, not_before=T0 - timedelta(seconds=10)) == pytest.approx(6.5)
    assert forgotten_reporters({"gatewayLoad": "junk"}, T0) == []


def test_wanted_replicas_meet_the_target_within_the_bounds() -> None:
    assert [wanted_replicas(load, POLICY) for load in (0, 4, 4.01, 8, 11.9, 100)] == [
        1, 1, 2, 2, 3, 5]


def test_scale_up_is_immediate_and_scale_down_waits_out_the_delay() -> None:
    def at(seconds: float) -> datetime:
        return T0 + timedelta(seconds=seconds)

    assert next_replicas(2, [(at(0), 4)], at(0), POLICY) == 4
    # fewer wanted, but not for a whole delay yet (nor watched that long)
    assert next_replicas(4, [(at(0), 4), (at(30), 1)], at(30), POLICY) == 4
    # 70 s later the most wanted within the last 60 s is 2
    samples = [(at(0), 4), (at(30), 2), (at(70), 1)]
    assert next_replicas(4, samples, at(70), POLICY) == 2
    assert next_replicas(4, [*samples, (at(95), 1)], at(95), POLICY) == 1
    # a model scaled to zero is left there: requests wake it, not load
    assert next_replicas(0, [(at(0), 3)], at(0), POLICY) == 0


def test_bounds_must_be_in_order() -> None:
    with pytest.raises(ValidationError, match="minReplicas"):
        Autoscaling(min_replicas=3, max_replicas=2)


def test_the_daemons_memory_samples_trims_and_forgets_load_from_before_a_wake() -> None:
    memory = Autoscaler()
    busy = {"gatewayLoad": {"gw": {"inFlight": 9, "time": stamp(0)}}}
    assert memory.look(1, POLICY, busy, T0, 5.0) == (3, 9.0)
    # scaled to zero meanwhile: left there whatever the load
    later = T0 + timedelta(seconds=5)
    assert memory.look(0, POLICY, busy, later, 5.0)[0] == 0
    # woken: the report from before does not count
    woke = T0 + timedelta(seconds=10)
    assert memory.look(1, POLICY, busy, woke, 5.0) == (1, 0.0)
    # samples older than the delay and two periods are dropped
    memory.look(1, POLICY, {}, T0 + timedelta(seconds=200), 5.0)
    assert [at for at, _ in memory.samples] == [T0 + timedelta(seconds=200)]
