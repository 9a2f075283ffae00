"""The gateway's state: everything a request needs, made once per app (``create_app``)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from kuberank.gateway.balancer import Balancer
from kuberank.gateway.bookkeeping import ThrottledWrites
from kuberank.gateway.keytable import KeyTable
from kuberank.gateway.load import LoadMeter
from kuberank.gateway.metrics import GatewayMetrics
from kuberank.gateway.ratelimit import InFlight, RateLimiter
from kuberank.gateway.routing import RoutingTable
from kuberank.gateway.scaler import Scaler
from kuberank.gateway.settings import GatewaySettings
from kuberank.gateway.sources import Source
from kuberank.gateway.upstream import Upstream
from kuberank.gateway.waking import Waker


@dataclass
class Gateway:
    """Everything a request needs; the upstream client, scaler and waker are made in the
    lifespan (they need the running loop and the source's API client)."""

    settings: GatewaySettings
    source: Source
    keys: KeyTable = field(default_factory=KeyTable)
    routes: RoutingTable = field(default_factory=RoutingTable)
    limiter: RateLimiter = field(default_factory=RateLimiter)
    balancer: Balancer = field(default_factory=Balancer)
    metrics: GatewayMetrics = field(default_factory=GatewayMetrics)
    upstream: Upstream | None = None
    scaler: Scaler | None = None  # the API writes; None when serving a fixed file of objects
    waker: Waker | None = None
    key_uses: ThrottledWrites = field(default_factory=ThrottledWrites)  # status.lastUsedTime
    load: LoadMeter = field(default_factory=LoadMeter)
    in_flight: InFlight = field(default_factory=InFlight)  # per key, for concurrentRequests
    peers: tuple[str, str] | None = None  # the gateway's own Service (namespace, name)
    draining: threading.Event = field(default_factory=threading.Event)  # set on SIGTERM

    def replicas(self) -> int:
        """Ready replicas behind the gateway's Service (1 when not configured or none seen
        yet): each enforces its share of a key's limits."""
        return max(1, len(self.routes.service_endpoints(*self.peers))) if self.peers else 1
