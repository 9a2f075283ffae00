"""When an idle scaleToZero model is due to go to 0 replicas (operator side, pure)."""

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kuberank.crd import RerankModelSpec
from kuberank.operator.status.idle import (
    available_since,
    created_time,
    last_request_time,
    seconds_until_scale_down,
)
from pydantic import ValidationError

pytestmark = pytest.mark.unit

T0 = datetime(2026, 1, 1, tzinfo=UTC)
SOURCE = {"pvc": {"claimName": "c", "path": "m.gguf"}}


def spec(**fields: Any) -> RerankModelSpec:
    return RerankModelSpec.model_validate({"source": SOURCE, **fields})


def test_without_scale_to_zero_or_at_zero_replicas_nothing_is_due() -> None:
    long_ago = T0 - timedelta(days=30)
    assert seconds_until_scale_down(spec(), [long_ago], T0) is None
    idle = spec(replicas=0, scaleToZero={"afterIdleSeconds": 60})
    assert seconds_until_scale_down(idle, [long_ago], T0) is None


def test_idle_time_counts_from_the_latest_activity() -> None:
    s = spec(replicas=2, scaleToZero={"afterIdleSeconds": 600})
    request, scaled_up = T0 - timedelta(seconds=500), T0 - timedelta(seconds=100)
    # (+1: recorded times are whole seconds, so a spell ends a second after its last one)
    assert seconds_until_scale_down(s, [request, None], T0) == 101
    # a manual scale-up after the last request gets a full idle spell
    assert seconds_until_scale_down(s, [request, scaled_up], T0) == 501
    assert seconds_until_scale_down(s, [T0 - timedelta(seconds=602)], T0) == -1


def test_without_any_known_activity_the_full_spell_starts_now() -> None:
    s = spec(scaleToZero={})
    assert s.scale_to_zero is not None and s.scale_to_zero.after_idle_seconds == 900
    assert seconds_until_scale_down(s, [None, None], T0) == 901


def test_times_are_read_from_status_and_metadata_and_junk_is_ignored() -> None:
    body = {
        "metadata": {"creationTimestamp": "2026-01-01T00:00:00Z"},
        "status": {"lastRequestTime": "2026-01-01T00:05:00Z"},
    }
    assert last_request_time(body) == T0 + timedelta(minutes=5)
    assert created_time(body) == T0
    assert last_request_time({"status": {"lastRequestTime": "yesterday"}}) is None
    assert last_request_time({"status": {"lastRequestTime": 5}}) is None
    assert last_request_time({}) is None


def test_scale_to_zero_bounds_are_enforced() -> None:
    for bad in ({"afterIdleSeconds": 9}, {"wakeReplicas": 0}, {"wakeTimeoutSeconds": 0}):
        with pytest.raises(ValidationError):
            spec(scaleToZero=bad)


def test_the_scale_up_moment_survives_a_restart_as_availables_last_transition() -> None:
    def body(status: str) -> dict[str, Any]:
        return {"status": {"conditions": [
            {"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:09:00Z"},
            {"type": "Available", "status": status,
             "lastTransitionTime": "2026-01-01T00:05:00Z"}]}}

    assert available_since(body("True")) == T0 + timedelta(minutes=5)
    assert available_since(body("False")) is None  # not serving: the operator's own clock
    assert available_since({"status": {}}) is None
    assert available_since({}) is None
