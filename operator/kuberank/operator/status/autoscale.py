"""How many replicas the load that the gateways report asks for (pure).

Each gateway replica writes the requests it had in flight for a model, averaged over its report
period, under its own name in ``status.gatewayLoad``. The operator sums the fresh reports, asks
for ``ceil(load / targetInFlight)`` replicas within the bounds, scales up at once and scales down
only to the most that was asked for during the last ``scaleDownDelaySeconds`` (as an HPA's
stabilization window does), so a lull between bursts does not drop capacity.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from kuberank.crd.common import parse_timestamp
from kuberank.crd.rerankmodel import Autoscaling

# A report older than this counts as no load: its gateway stopped reporting (gone, or idle).
STALE_AFTER = timedelta(seconds=30)
# Reports older than this are removed from the status (gateway replicas that went away).
FORGET_AFTER = timedelta(minutes=10)

Sample = tuple[datetime, int]  # when, replicas wanted then


def _reports(status: Mapping[str, Any] | None) -> dict[str, tuple[float, datetime | None]]:
    raw = (status or {}).get("gatewayLoad")
    if not isinstance(raw, Mapping):
        return {}
    reports: dict[str, tuple[float, datetime | None]] = {}
    for gateway, report in raw.items():
        if isinstance(report, Mapping) and isinstance(report.get("inFlight"), int | float):
            reports[str(gateway)] = (float(report["inFlight"]), parse_timestamp(report.get("time")))
    return reports


def current_load(status: Mapping[str, Any] | None, now: datetime,
                 not_before: datetime | None = None) -> float:
    """Requests in flight over all gateways, from the reports younger than STALE_AFTER and,
    when ``not_before`` is given (the model came up from 0 replicas then), made after it: load
    measured before a model slept says nothing about the one request that woke it."""
    oldest = max(now - STALE_AFTER, not_before) if not_before else now - STALE_AFTER
    return sum(load for load, at in _reports(status).values() if at is not None and at >= oldest)


def forgotten_reporters(status: Mapping[str, Any] | None, now: datetime) -> list[str]:
    """Gateways whose last report is older than FORGET_AFTER (or has no readable time)."""
    return sorted(g for g, (_, at) in _reports(status).items()
                  if at is None or now - at > FORGET_AFTER)


def wanted_replicas(load: float, policy: Autoscaling) -> int:
    wanted = math.ceil(load / policy.target_in_flight - 1e-9)
    return max(policy.min_replicas, min(policy.max_replicas, wanted))


def next_replicas(current: int, samples: Sequence[Sample], now: datetime,
                  policy: Autoscaling) -> int:
    """The replicas to run now, from the wanted counts sampled so far (oldest first, the last
    one just taken). 0 stays 0: a scaled-to-zero model is woken by requests, not by load."""
    if current == 0 or not samples:
        return current
    latest = samples[-1][1]
    if latest >= current:
        return latest
    window = now - timedelta(seconds=policy.scale_down_delay_seconds)
    if samples[0][0] > window:
        return current  # not watched for a whole delay yet (e.g. the operator just started)
    return min(current, max(wanted for at, wanted in samples if at >= window))


@dataclass
class Autoscaler:
    """One model's memory between looks: the wanted counts of the last delay, and when the
    model last came up from 0 replicas. Kept by the operator's daemon for that model."""

    samples: deque[Sample] = field(default_factory=deque)
    replicas_seen: int | None = None
    woke_at: datetime | None = None

    def look(self, replicas: int, policy: Autoscaling, status: Mapping[str, Any] | None,
             now: datetime, period: float) -> tuple[int, float]:
        """The replicas to run now and the load that asked for them."""
        if self.replicas_seen == 0 and replicas > 0:
            self.woke_at = now
        self.replicas_seen = replicas
        load = current_load(status, now, not_before=self.woke_at)
        self.samples.append((now, wanted_replicas(load, policy)))
        horizon = timedelta(seconds=policy.scale_down_delay_seconds + 2 * period)
        while now - self.samples[0][0] > horizon:
            self.samples.popleft()
        return next_replicas(replicas, list(self.samples), now, policy), load
