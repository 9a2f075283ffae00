"""Requests in flight per model, averaged over time, for the operator's autoscaler.

The average is the time integral of the in-flight count over a report period divided by its
length, so eight clients that each keep one request open read as 8 however fast the runtime
answers them, and a burst of one second in a ten-second period reads as a tenth of it. Pure:
the clock is passed in. Used from the event loop only.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass


@dataclass
class _Meter:
    in_flight: int = 0
    area: float = 0.0  # requests in flight times seconds since the period began
    since: float = 0.0  # period start
    last: float = 0.0  # time of the last change


class LoadMeter:
    def __init__(self) -> None:
        self._meters: dict[Hashable, _Meter] = {}

    def _meter(self, key: Hashable, now: float) -> _Meter:
        meter = self._meters.get(key)
        if meter is None:
            meter = self._meters[key] = _Meter(since=now, last=now)
        meter.area += meter.in_flight * (now - meter.last)
        meter.last = now
        return meter

    def enter(self, key: Hashable, now: float) -> None:
        self._meter(key, now).in_flight += 1

    def leave(self, key: Hashable, now: float) -> None:
        meter = self._meter(key, now)
        meter.in_flight = max(0, meter.in_flight - 1)

    def take(self, key: Hashable, now: float) -> float:
        """The average in flight since the last take (or the first request), and a new period."""
        meter = self._meter(key, now)
        length = now - meter.since
        average = meter.area / length if length > 0 else float(meter.in_flight)
        meter.area, meter.since = 0.0, now
        return average

    def keys(self) -> list[Hashable]:
        return list(self._meters)
