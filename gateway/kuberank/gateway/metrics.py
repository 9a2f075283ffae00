"""Prometheus metrics of the gateway, in a registry of their own (one per app instance).

Labels carry the public key id, never key material. The ``model`` label is the served name of a
model the request was routed to, or ``""``: client-chosen strings that matched nothing must not
create new series. ``namespace`` is the tenant (the key's namespace, which is the model's): two
teams may serve the same name, and their series, dashboards and alerts must stay apart. It takes
precedence over the scrape target's own ``namespace`` (the chart's ServiceMonitor honours labels),
so gateway series line up with the runtime pods' series of the same model.

Series of deleted (or rotated) keys and of deleted models are dropped (``forget_gone``), one
scrape after they went: that scrape still reads their last counts, the requests since the scrape
before it; a cluster that churns through keys and models must not grow the gateway's memory and
every scrape forever.
"""

from __future__ import annotations

from collections.abc import Set

from kuberank.gateway.routing import ModelRoute
from kuberank.protocol.connection import CLOSED_HELP
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.metrics import MetricWrapperBase

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class GatewayMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        # Seen gone at the last scrape, which read their last counts: dropped at the next.
        self._gone_models: set[tuple[str, str]] = set()
        self._gone_keys: set[tuple[str, str]] = set()
        self.requests = Counter(
            "kuberank_gateway_requests",
            "Rerank requests answered by the gateway.",
            ["key_id", "namespace", "model", "dialect", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "kuberank_gateway_request_duration_seconds",
            "Time from request received to response ready, in seconds.",
            ["namespace", "model", "dialect"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.upstream_errors = Counter(
            "kuberank_gateway_upstream_errors",
            "Failed attempts to reach a runtime replica, by kind (connect, timeout, protocol, "
            "refused: the runtime answered 429 or 503 without scoring).",
            ["namespace", "model", "kind"],
            registry=self.registry,
        )
        self.tokens = Counter(
            "kuberank_gateway_usage_tokens",
            "Tokens the runtimes reported as used, per key and model.",
            ["key_id", "namespace", "model"],
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "kuberank_gateway_requests_in_flight",
            "Rerank requests the gateway is handling now (waking, forwarding), per model.",
            ["namespace", "model"],
            registry=self.registry,
        )
        self.wakeups = Counter(
            "kuberank_gateway_wakeups",
            "Models this gateway scaled up from zero replicas because a request came.",
            ["namespace", "model"],
            registry=self.registry,
        )
        self.wake_wait = Histogram(
            "kuberank_gateway_wake_wait_seconds",
            "How long requests for a scaleToZero model without a ready replica were held "
            "until one was ready (tune wakeTimeoutSeconds with it).",
            ["namespace", "model"],
            buckets=(0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0),
            registry=self.registry,
        )
        self.connections_closed = Counter(
            "kuberank_gateway_connections_closed",
            CLOSED_HELP,
            ["reason"],
            registry=self.registry,
        )
        self.keys = Gauge(
            "kuberank_gateway_api_keys",
            "API keys currently known to the gateway.",
            registry=self.registry,
        )

    def observe_request(
        self, key_id: str, namespace: str, model: str, dialect: str, status: int, seconds: float
    ) -> None:
        self.requests.labels(key_id, namespace, model, dialect, str(status)).inc()
        self.latency.labels(namespace, model, dialect).observe(seconds)

    def upstream_error(self, route: ModelRoute, kind: str) -> None:
        self.upstream_errors.labels(route.namespace, route.served_name, kind).inc()

    def used_tokens(self, key_id: str, route: ModelRoute, tokens: int) -> None:
        self.tokens.labels(key_id, route.namespace, route.served_name).inc(tokens)

    def requests_in_flight(self, route: ModelRoute) -> Gauge:
        return self.in_flight.labels(route.namespace, route.served_name)

    def woke(self, route: ModelRoute) -> None:
        self.wakeups.labels(route.namespace, route.served_name).inc()

    def connection_closed(self, reason: str) -> None:
        self.connections_closed.labels(reason).inc()

    def waited_for_wake(self, route: ModelRoute, seconds: float) -> None:
        self.wake_wait.labels(route.namespace, route.served_name).observe(seconds)

    def forget_gone(
        self, models: Set[tuple[str, str]], keys: Set[tuple[str, str]]
    ) -> None:
        """Before a scrape: drop the series of models (``(namespace, served name)``) and keys
        (``(key id, namespace)``) that were already gone at the scrape before, which read their
        last counts. ``""`` (requests that matched no model or key) stays."""
        labelled: list[MetricWrapperBase] = [
            self.requests, self.latency, self.upstream_errors, self.tokens, self.in_flight,
            self.wakeups, self.wake_wait,
        ]
        self._gone_models = _forget(labelled, ("namespace", "model"), models,
                                    self._gone_models)
        self._gone_keys = _forget([self.requests, self.tokens], ("key_id", "namespace"), keys,
                                  self._gone_keys)

    def render(self) -> bytes:
        return generate_latest(self.registry)


def _forget(metrics: list[MetricWrapperBase], names: tuple[str, str],
            known: Set[tuple[str, str]], gone_before: set[tuple[str, str]],
            ) -> set[tuple[str, str]]:
    """Remove the series whose ``names`` labels are neither ``known`` nor empty and were gone
    at the scrape before too; return those gone since (removed at the next scrape)."""
    gone: set[tuple[str, str]] = set()
    for metric in metrics:
        for labels in _label_sets(metric, names):
            found = (labels[names[0]], labels[names[1]])
            if all(found) and found not in known:
                gone.add(found)
                if found in gone_before:
                    metric.remove_by_labels(labels)
    return gone - gone_before


def _label_sets(metric: MetricWrapperBase, names: tuple[str, ...]) -> list[dict[str, str]]:
    """The distinct values of ``names`` among a metric's series."""
    seen = {
        tuple(sample.labels[name] for name in names)
        for family in metric.collect()
        for sample in family.samples
        if all(name in sample.labels for name in names)
    }
    return [dict(zip(names, values, strict=True)) for values in sorted(seen)]
