# kopf declares its callbacks as Protocols listing every kwarg; handlers that name only the
# kwargs they use (as kopf documents) do not match them structurally, hence arg-type is off here.
# mypy: disable-error-code="arg-type"
"""Replicas the operator sets by itself: a ``scaleToZero`` model goes to zero when idle, an
``autoscaling`` one follows the requests in flight its gateways report. One daemon per model
that asks, each a short loop over pure decisions (``status/idle.py``, ``status/autoscale.py``)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime
from typing import Any

import kopf
from kuberank.crd.common import GROUP, VERSION
from kuberank.crd.rerankmodel import PLURAL as MODEL_PLURAL
from kuberank.crd.rerankmodel import InvalidSpecError, parse_spec
from kuberank.operator.handlers.common import SpecByGeneration, kube_of, log, metrics_of, now
from kuberank.operator.kube import KubeError
from kuberank.operator.reconcilers import rerankmodel as models
from kuberank.operator.reconcilers.idle import scale_down_if_idle
from kuberank.operator.status.autoscale import Autoscaler, forgotten_reporters
from kuberank.operator.status.idle import (
    available_since,
    created_time,
    last_request_time,
    seconds_until_scale_down,
)

AUTOSCALE_PERIOD = 5.0  # seconds between two looks at the reported load


def _spec_has(field: str) -> Callable[..., bool]:
    """A daemon filter: run only for models whose spec sets ``field``."""

    def when(spec: kopf.Spec, **_: Any) -> bool:
        return spec.get(field) is not None

    return when


@kopf.daemon(GROUP, VERSION, MODEL_PLURAL, id="idle", cancellation_timeout=1.0,
             when=_spec_has("scaleToZero"))
async def idle_clock(body: kopf.Body, memo: Any, stopped: kopf.DaemonStopped, **_: Any) -> None:
    """Scale a ``scaleToZero`` model to 0 replicas once no request came for afterIdleSeconds."""
    meta = body["metadata"]
    up_since: datetime | None = None  # when it was last scaled up (status, else when seen)
    seen: int | None = None  # spec.replicas last time round (None: not looked yet)
    parsed = SpecByGeneration(parse_spec, InvalidSpecError)
    while not stopped:
        spec = parsed.of(body)
        if spec is None:
            await stopped.wait(60)
            continue
        if spec.replicas == 0:
            up_since = None
        elif seen is not None and spec.replicas > seen:
            up_since = now()  # any scale-up (1 -> 2 too) gets a full idle spell
        else:
            up_since = up_since or available_since(body) or now()
        seen = spec.replicas
        activity = [last_request_time(body), up_since, created_time(body)]
        until = seconds_until_scale_down(spec, activity, now())
        if until is None or until > 0:
            # Short naps: a request recorded or a spec edit is honoured within seconds.
            await stopped.wait(min(until + 0.05, 5.0) if until is not None else 5.0)
            continue
        try:
            had = await asyncio.to_thread(
                scale_down_if_idle, kube_of(memo), meta["namespace"], meta["name"], up_since, now()
            )
        except KubeError as err:
            log.warning("scaling idle model %s down failed: %s", meta["name"], err.message)
            await stopped.wait(5.0)
            continue
        if had:
            metrics_of(memo).scalings.labels(meta["namespace"], meta["name"], "idle").inc()
            idle = spec.scale_to_zero.after_idle_seconds if spec.scale_to_zero else 0
            # The action; the Ready transition it brings has its own Event (ScaledToZero).
            kopf.event(body, type="Normal", reason="IdleScaleDown",
                       message=f"No request for {idle} s: scaled from {had} to 0 replicas.")
            up_since = None
        await stopped.wait(1.0)  # let the watch deliver the scaled object


@kopf.daemon(GROUP, VERSION, MODEL_PLURAL, id="autoscale", cancellation_timeout=1.0,
             when=_spec_has("autoscaling"))
async def autoscaler(body: kopf.Body, memo: Any, stopped: kopf.DaemonStopped, **_: Any) -> None:
    """Scale a model with ``autoscaling`` on the requests in flight its gateways report."""
    meta = body["metadata"]
    ref = models.ref_of(meta["namespace"], meta["name"])
    memory = Autoscaler()
    parsed = SpecByGeneration(parse_spec, InvalidSpecError)
    while not stopped:
        await stopped.wait(AUTOSCALE_PERIOD)
        snapshot = dict(body)  # spec, status and resourceVersion of one moment
        spec = parsed.of(snapshot)
        if stopped or spec is None or spec.autoscaling is None:
            continue
        at, status = now(), snapshot.get("status") or {}
        target, load = memory.look(spec.replicas, spec.autoscaling, status, at, AUTOSCALE_PERIOD)
        kube = kube_of(memo)
        try:
            if target != spec.replicas:
                version = snapshot["metadata"]["resourceVersion"]
                await asyncio.to_thread(kube.scale, ref, target, version)
                metrics_of(memo).scalings.labels(meta["namespace"], meta["name"], "autoscale").inc()
                per = spec.autoscaling.target_in_flight
                kopf.event(body, type="Normal", reason="Autoscaled",
                           message=f"{load:.1f} requests in flight ({per:g} per replica wanted): "
                           f"{spec.replicas} -> {target} replicas.")
            if gone := forgotten_reporters(status, at):
                await asyncio.to_thread(
                    kube.patch_status, ref, {"gatewayLoad": dict.fromkeys(gone)}
                )
        except KubeError as err:
            if err.status != 409:  # 409: the model changed since read; next round decides
                log.warning("autoscaling %s failed: %s", meta["name"], err.message)
