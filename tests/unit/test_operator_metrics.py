"""The operator's model series: from the status it computed, current states only."""

from __future__ import annotations

import pytest
from kuberank.operator.metrics import ModelState, OperatorMetrics
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.unit


def status(*conditions: tuple[str, str, str], ready: int = 0) -> dict[str, object]:
    return {"readyReplicas": ready, "conditions": [
        {"type": t, "status": s, "reason": r, "message": "m"} for t, s, r in conditions]}


def test_state_keeps_the_true_conditions_with_their_reasons_and_the_replicas() -> None:
    state = ModelState.of({"replicas": 3}, status(
        ("Ready", "False", "InsufficientGPU"), ("Degraded", "True", "InsufficientGPU"),
        ("Progressing", "True", "NewReplicaSetAvailable"), ("Other", "True", "x"), ready=1))
    assert state == ModelState({"Degraded": "InsufficientGPU",
                                "Progressing": "NewReplicaSetAvailable"}, 3, 1)
    assert ModelState.of({}, {}) == ModelState({}, 1, 0)  # spec.replicas defaults to 1
    assert ModelState.of({"replicas": "x"}, {}).desired == 1


def test_series_are_the_current_states_and_a_forgotten_model_has_none() -> None:
    metrics = OperatorMetrics()
    metrics.models.update(("a", "m"), ModelState({"Degraded": "CrashLoop"}, 2, 0))
    metrics.models.update(("b", "m"), ModelState({"Ready": "AllReplicasReady"}, 1, 1))
    metrics.models.forget(("b", "m"))

    def samples() -> dict[tuple[str, ...], float]:
        text = generate_latest(metrics.registry).decode()
        return {(s.name, *sorted(s.labels.values())): s.value
                for f in text_string_to_metric_families(text) for s in f.samples
                if s.name.startswith("kuberank_operator_model")}

    found = samples()
    assert found[("kuberank_operator_model_condition", "CrashLoop", "Degraded", "a", "m")] == 1
    assert found[("kuberank_operator_model_condition", "", "Ready", "a", "m")] == 0
    assert found[("kuberank_operator_model_desired_replicas", "a", "m")] == 2
    assert not [k for k in found if "b" in k[1:]]
    assert len(found) == 4 + 2  # four conditions, desired and ready, for the one model left
