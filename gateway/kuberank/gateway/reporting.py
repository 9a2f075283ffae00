"""Report each autoscaled model's requests in flight to the operator, once per period.

Each gateway replica writes its own entry, ``status.gatewayLoad[<instance>]``, so replicas never
overwrite each other and the operator sums them. A model that had no load and whose last report
said so is not written again: its entry goes stale and counts as no load.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

from kuberank.gateway.load import LoadMeter
from kuberank.gateway.routing import RoutingTable
from kuberank.gateway.scaler import Scaler, WriteError

log = logging.getLogger(__name__)


class LoadReporter:
    def __init__(self, scaler: Scaler, routes: RoutingTable, meter: LoadMeter, instance: str,
                 period: float) -> None:
        self._scaler = scaler
        self._routes = routes
        self._meter = meter
        self._instance = instance
        self._period = period
        self._reported: dict[tuple[str, str], float] = {}

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self._period)
            try:
                await self.report(loop.time())
            except Exception:  # a bug must not end reporting for the gateway's lifetime
                log.exception("load report failed")

    async def report(self, now: float) -> None:
        for route in self._routes.autoscaled():
            key = (route.namespace, route.name)
            load = self._meter.take(key, now)
            if load == 0 and self._reported.get(key, 0.0) == 0:
                continue
            try:
                await asyncio.to_thread(self._scaler.report_load, route.namespace, route.name,
                                        self._instance, load, datetime.now(UTC))
            except WriteError as err:
                log.warning("could not report the load of %s/%s: %s",
                            route.namespace, route.name, err)
                continue
            self._reported[key] = load
