"""Prometheus metrics of one runtime process, on a registry of its own (one per app)."""

from __future__ import annotations

from kuberank.protocol.connection import CLOSED_HELP
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

_LATENCY = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_DOCS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 5000)


class RuntimeMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("kuberank_runtime_requests", "Rerank requests by path and status",
                                ["path", "status"], registry=r)
        self.latency = Histogram("kuberank_runtime_request_seconds",
                                 "Rerank request latency, parse to response", ["path"],
                                 buckets=_LATENCY, registry=r)
        self.documents = Histogram("kuberank_runtime_documents_per_request",
                                   "Documents in each well-formed rerank request, answered or "
                                   "not (a full queue, a client gone)", buckets=_DOCS,
                                   registry=r)
        self.tokens = Counter("kuberank_runtime_tokens_evaluated",
                              "Tokens of the answered requests, as usage reports them (after "
                              "truncation; pairs decoded for a client that left are not "
                              "counted)", registry=r)
        self.truncations = Counter("kuberank_runtime_truncations",
                                   "Query+document pairs shortened to fit the limits", registry=r)
        self.queue_depth = Gauge("kuberank_runtime_queue_depth",
                                 "Pairs waiting for an engine context to decode them", registry=r)
        self.skipped_pairs = Counter("kuberank_runtime_skipped_pairs",
                                     "Queued pairs never decoded: their client left or their "
                                     "request failed", registry=r)
        self.batch_pairs = Histogram("kuberank_runtime_batch_pairs",
                                     "Pairs packed into one llama_decode",
                                     buckets=(1, 2, 4, 8, 16, 32, 64), registry=r)
        self.queue_wait = Histogram("kuberank_runtime_queue_wait_seconds",
                                    "Time a request waited for its first decode (the scheduling "
                                    "delay, before any of its pairs is scored)", buckets=_LATENCY,
                                    registry=r)
        self.context_pairs = Counter("kuberank_runtime_context_pairs",
                                     "Pairs decoded by each llama context (--contexts): an idle "
                                     "one under load means more contexts cannot help",
                                     ["context"], registry=r)
        self.decode_seconds = Histogram("kuberank_runtime_decode_seconds",
                                        "Time of one llama_decode", buckets=_LATENCY, registry=r)
        self.connections_closed = Counter(
            "kuberank_runtime_connections_closed",
            CLOSED_HELP,
            ["reason"], registry=r)
        # A pod given a GPU but running a CPU build of llama.cpp is slow, not broken: say where.
        self.engine = Info("kuberank_runtime_engine", "Where llama.cpp scores pairs (device: cpu "
                           "or gpu) and the packing and flash attention in force", registry=r)

    def connection_closed(self, reason: str) -> None:
        self.connections_closed.labels(reason).inc()
