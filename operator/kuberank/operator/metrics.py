"""The operator's own Prometheus metrics, on ``--metrics-port``.

Each model's conditions and replicas as the operator last computed them, so "which models are
Degraded, and why" is one query and one alert rather than a ``kubectl describe`` per namespace;
and the scalings its daemons made. Model series come from a collector that reports the current
states at scrape time: a deleted model's series disappear with it, and a standby replica (which
computes nothing) reports none.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

Key = tuple[str, str]
CONDITIONS = ("Ready", "Available", "Progressing", "Degraded")


@dataclass(frozen=True)
class ModelState:
    """What one model's metrics say: its conditions (type → reason, when True) and replicas."""

    true: Mapping[str, str]
    desired: int
    ready: int

    @classmethod
    def of(cls, spec: Mapping[str, Any], status: Mapping[str, Any]) -> ModelState:
        """From the model's spec and the status computed for it (pure)."""
        true = {str(c.get("type")): str(c.get("reason") or "")
                for c in status.get("conditions") or []
                if c.get("type") in CONDITIONS and c.get("status") == "True"}
        desired = spec.get("replicas", 1)
        return cls(true, desired if isinstance(desired, int) else 1,
                   int(status.get("readyReplicas") or 0))


class ModelStates(Collector):
    def __init__(self) -> None:
        self._states: dict[Key, ModelState] = {}
        self._lock = threading.Lock()

    def update(self, key: Key, state: ModelState) -> None:
        with self._lock:
            self._states[key] = state

    def forget(self, key: Key) -> None:
        with self._lock:
            self._states.pop(key, None)

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            states = sorted(self._states.items())
        condition = GaugeMetricFamily(
            "kuberank_operator_model_condition",
            "1 while the model's condition is True (its reason as a label), else 0.",
            labels=["namespace", "name", "condition", "reason"])
        desired = GaugeMetricFamily("kuberank_operator_model_desired_replicas",
                                    "spec.replicas of the model.", labels=["namespace", "name"])
        ready = GaugeMetricFamily("kuberank_operator_model_ready_replicas",
                                  "Replicas of the model ready to serve.",
                                  labels=["namespace", "name"])
        for (namespace, name), state in states:
            for kind in CONDITIONS:
                reason = state.true.get(kind)
                condition.add_metric([namespace, name, kind, reason or ""],
                                     1.0 if reason is not None else 0.0)
            desired.add_metric([namespace, name], state.desired)
            ready.add_metric([namespace, name], state.ready)
        yield from (condition, desired, ready)


class OperatorMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.models = ModelStates()
        self.registry.register(self.models)
        self.scalings = Counter(
            "kuberank_operator_scalings",
            "Replica changes the operator made itself, by reason (idle: scaleToZero, "
            "autoscale: spec.autoscaling).",
            ["namespace", "name", "reason"], registry=self.registry)

    def serve(self, port: int, address: str = "0.0.0.0") -> None:
        """Serve /metrics on ``port`` from a thread of prometheus_client's own."""
        start_http_server(port, addr=address, registry=self.registry)
