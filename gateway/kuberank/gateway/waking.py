"""Scale-from-zero at the gateway: wake a ``scaleToZero`` model that has no replica, hold its
requests until one is ready, and tell the operator when the model last had a request.

A burst of requests for a sleeping model scales it up once (one shared wake per model) and each
waits, up to the model's wakeTimeoutSeconds, for the EndpointSlice watch to show a ready
replica. ``status.lastRequestTime`` is written in the background at most once per
``WakePolicy.record_interval`` per model, so traffic costs the API server next to nothing.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

from kuberank.gateway.bookkeeping import ThrottledWrites
from kuberank.gateway.metrics import GatewayMetrics
from kuberank.gateway.routing import ModelRoute, RoutingTable
from kuberank.gateway.scaler import Scaler, WriteError
from kuberank.protocol.errors import ModelNotFound, Unavailable

log = logging.getLogger(__name__)

Key = tuple[str, str]
WAKE_EVERY = 1.0  # seconds between two wakes of one model (the watch lags behind our own)
RECORD_INTERVAL = 60.0  # seconds between two lastRequestTime writes of a model without scaleToZero


class Waker:
    def __init__(
        self,
        scaler: Scaler | None,
        routes: RoutingTable,
        metrics: GatewayMetrics,
        retry_after: int,
        poll_seconds: float = 0.05,
    ) -> None:
        self._scaler = scaler
        self._routes = routes
        self._metrics = metrics
        self._retry_after = retry_after
        self._poll = poll_seconds
        self._records = ThrottledWrites()
        self._waking: dict[Key, asyncio.Task[None]] = {}  # in flight, shared by its waiters
        self._woken: dict[Key, float] = {}  # when a wake was last started

    def note_request(self, route: ModelRoute) -> None:
        """Record the request in the model's status unless one was recorded lately: the idle
        clock of scaleToZero, and LAST REQUEST for every model (which ones nobody calls)."""
        if self._scaler is None:
            return
        record, at = self._scaler.record_request, datetime.now(UTC)
        interval = route.wake.record_interval if route.wake is not None else RECORD_INTERVAL
        self._records.submit(
            (route.namespace, route.name), interval,
            lambda: record(route.namespace, route.name, at),
            f"a request of {route.namespace}/{route.name}",
        )

    async def ready_endpoints(self, route: ModelRoute) -> list[str]:
        """The model's ready endpoints, waking it first when it is at 0 replicas; 503 when
        none is ready within its wakeTimeoutSeconds, or at once when the operator reports a
        failure that waiting will not fix (``ModelRoute.failing``)."""
        assert route.wake is not None, "only scaleToZero models are woken"
        if self._scaler is None:
            raise Unavailable(
                f"model {route.served_name!r} is at zero replicas and this gateway, serving a "
                "fixed file of objects, cannot wake it",
                code="wake_failed", retry_after=self._retry_after,
            )
        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline = started + route.wake.wake_timeout_seconds
        while not (endpoints := self._routes.endpoints(route)):
            latest = self._routes.model(route.namespace, route.name)
            if latest is None:
                raise ModelNotFound(f"model {route.served_name!r} was deleted while waking")
            # At 0 replicas now, even if it had replicas when the request came (the operator
            # scaled it down in between): wake it, at most once a second per model.
            if latest.replicas == 0 and self._wake_due(latest, loop.time()):
                await asyncio.shield(self._wake(latest))
            if latest.failing:  # holding the request will not fix it
                raise Unavailable(
                    f"model {route.served_name!r} has no ready replica: {latest.failing}",
                    code="no_ready_replica",
                    retry_after=None if latest.failing_until_changed else self._retry_after,
                )
            if loop.time() >= deadline:
                waits = f" ({latest.waiting})" if latest.waiting else ""
                raise Unavailable(
                    f"model {route.served_name!r} is waking up from zero replicas; none was "
                    f"ready within {route.wake.wake_timeout_seconds} s{waits}",
                    code="model_waking", retry_after=self._retry_after,
                )
            await asyncio.sleep(self._poll)
        self._metrics.waited_for_wake(route, loop.time() - started)
        return endpoints

    def _wake_due(self, route: ModelRoute, now: float) -> bool:
        key = (route.namespace, route.name)
        if key in self._waking or now - self._woken.get(key, -WAKE_EVERY) >= WAKE_EVERY:
            self._woken[key] = now
            return True
        return False

    def _wake(self, route: ModelRoute) -> asyncio.Task[None]:
        key = (route.namespace, route.name)
        task = self._waking.get(key)
        if task is None:
            task = asyncio.create_task(self._scale_up(route))
            self._waking[key] = task
            task.add_done_callback(lambda done: self._forget_wake(key, done))
        return task

    def _forget_wake(self, key: Key, done: asyncio.Task[None]) -> None:
        self._waking.pop(key, None)
        if not done.cancelled():
            done.exception()  # retrieved here: every waiter may have left already

    async def _scale_up(self, route: ModelRoute) -> None:
        assert self._scaler is not None and route.wake is not None
        replicas = route.wake.wake_replicas
        try:
            woke = await asyncio.to_thread(
                self._scaler.wake, route.namespace, route.name, replicas
            )
        except WriteError as err:
            log.warning("could not wake model %s/%s: %s", route.namespace, route.name, err)
            raise Unavailable(
                f"model {route.served_name!r} could not be woken: {err}",
                code="wake_failed", retry_after=self._retry_after,
            ) from None
        if woke:
            self._metrics.woke(route)
            log.info("woke model %s/%s: 0 → %d replicas", route.namespace, route.name, replicas)
