# kopf declares its callbacks as Protocols listing every kwarg; handlers that name only the
# kwargs they use (as kopf documents) do not match them structurally, hence arg-type is off here.
# mypy: disable-error-code="arg-type"
"""kopf handlers: parse, call a reconciler, report. All logic lives below this layer.

RerankModel children are watched (indexes + event handlers), so status follows Deployments and
pods as they change, a deleted child is recreated at once and a child whose spec someone else
edited is reverted (``drift.py``); no per-object polling loops.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import kopf
from kuberank.crd.apikey import PLURAL as APIKEY_PLURAL
from kuberank.crd.apikey import secret_name
from kuberank.crd.common import GROUP, VERSION
from kuberank.crd.rerankmodel import PLURAL as MODEL_PLURAL
from kuberank.crd.rerankmodel import RerankModelSpec, served_name
from kuberank.operator.builders.meta import MANAGED_BY, MODEL_LABEL, RUNTIME_NAME
from kuberank.operator.builders.secret import APIKEY_LABEL
from kuberank.operator.drift import (
    Edit,
    data_edited_since_ours,
    foreign_spec_edits,
    needs_repair,
)
from kuberank.operator.kube import FIELD_MANAGER, Kube, KubeError
from kuberank.operator.metrics import ModelState, OperatorMetrics
from kuberank.operator.reconcilers import apikey as apikeys
from kuberank.operator.reconcilers import rerankmodel as models
from kuberank.operator.reconcilers.idle import scale_down_if_idle
from kuberank.operator.reconcilers.ownership import NameConflictError
from kuberank.operator.settings import OperatorSettings
from kuberank.operator.status.apikey import seconds_until_expiry
from kuberank.operator.status.autoscale import Autoscaler, forgotten_reporters
from kuberank.operator.status.idle import (
    available_since,
    created_time,
    last_request_time,
    seconds_until_scale_down,
)
from kuberank.operator.status.rerankmodel import Blocked

log = logging.getLogger("kuberank.operator")

MANAGED = {"app.kubernetes.io/managed-by": MANAGED_BY}
RUNTIME_PODS = {"app.kubernetes.io/name": RUNTIME_NAME, MODEL_LABEL: kopf.PRESENT}
Key = tuple[str, str]

# kopf runs sync handlers of different objects (the model, its Deployment, its pods) on a thread
# pool. Status for one model is computed and written under its lock, from the indexes as they are
# once the lock is held, so a slow handler can never overwrite a newer status with an older view.
_status_locks: defaultdict[Key, threading.Lock] = defaultdict(threading.Lock)
# Models none of whose children could be applied, and why (the reconcile handler's verdict).
_blocked: dict[Key, Blocked] = {}
# The newest generation whose children this process applied: status.observedGeneration never
# runs ahead of it (GitOps tools read "observed and Ready" as "my change is live").
_applied: dict[Key, tuple[str, int]] = {}  # (uid, generation): a recreated model starts over
# Per child (kind, namespace, name): the foreign spec edits a repair has already answered.
_answered_edits: dict[tuple[str, str, str], frozenset[Edit]] = {}


def _now() -> datetime:
    return datetime.now(UTC)


def _kube(memo: Any) -> Kube:
    kube: Kube = memo.kube
    return kube


def _settings(memo: Any) -> OperatorSettings:
    settings: OperatorSettings = memo.settings
    return settings


def _metrics(memo: Any) -> OperatorMetrics:
    metrics: OperatorMetrics = memo.metrics
    return metrics


def _temporary(err: KubeError) -> Exception:
    if err.transient:
        return kopf.TemporaryError(f"API server: {err.message}", delay=3)
    return kopf.PermanentError(f"API server refused a child: {err.message}")


# Not Ready, but on the way or by choice: a start, a rollout, zero replicas someone asked for
# (or scaleToZero chose). Normal Events, so `--field-selector type=Warning` lists problems only.
_PROGRESS = frozenset(
    {"Creating", "DeploymentMissing", "NoReplicasReady", "RollingOut", "ScaledToZero"})


def _retry_conflict(err: NameConflictError) -> kopf.TemporaryError:
    """Retried until the name is free: soon for a deleted namesake's child (garbage collection
    takes seconds), every 10 s for someone else's object (renamed or deleted some day), so the
    model or key starts by itself."""
    return kopf.TemporaryError(str(err), delay=2 if err.predecessor else 10)


def _announce(body: dict[str, Any], changed: list[dict[str, Any]], summary: str) -> None:
    """One Kubernetes Event per condition transition of the summary condition."""
    for cond in changed:
        if cond["type"] == summary:
            fine = cond["status"] == "True" or cond["reason"] in _PROGRESS
            kind = "Normal" if fine else "Warning"
            kopf.event(body, type=kind, reason=cond["reason"], message=cond["message"])


# ---- indexes: in-memory views of what the watches saw -------------------------------------


@kopf.index(GROUP, VERSION, MODEL_PLURAL)
def model_index(namespace: str, name: str, body: kopf.Body, **_: Any) -> dict[Key, Any]:
    return {(namespace, name): dict(body)}


@kopf.index("apps", "v1", "deployments", labels={**MANAGED, MODEL_LABEL: kopf.PRESENT})
def deployment_index(
    namespace: str, labels: kopf.Labels, body: kopf.Body, **_: Any
) -> dict[Key, Any]:
    return {(namespace, labels[MODEL_LABEL]): dict(body)}


@kopf.index("v1", "pods", labels=RUNTIME_PODS)
def pod_index(namespace: str, labels: kopf.Labels, body: kopf.Body, **_: Any) -> dict[Key, Any]:
    return {(namespace, labels[MODEL_LABEL]): dict(body)}


@kopf.index(GROUP, VERSION, MODEL_PLURAL)
def served_name_index(namespace: str, body: kopf.Body, **_: Any) -> dict[Key, Any]:
    """Models by (namespace, served name): who else claims a model's served name."""
    return {(namespace, served_name(body)): dict(body)}


@dataclass(frozen=True)
class _Views:
    """What the watches saw, as the indexes above: kopf hands each to every handler by name."""

    models: kopf.Index[Key, Any]
    deployments: kopf.Index[Key, Any]
    pods: kopf.Index[Key, Any]
    served: kopf.Index[Key, Any]

    @classmethod
    def of(cls, kwargs: Mapping[str, Any]) -> _Views:
        return cls(kwargs["model_index"], kwargs["deployment_index"], kwargs["pod_index"],
                   kwargs["served_name_index"])


def _one(index: kopf.Index[Key, Any], key: Key) -> dict[str, Any] | None:
    store = index.get(key)
    return next(iter(store), None) if store is not None else None


def _refresh(memo: Any, key: Key, views: _Views, body: dict[str, Any] | None = None) -> None:
    body = body or _one(views.models, key)
    if body is None or body["metadata"].get("deletionTimestamp"):
        _metrics(memo).models.forget(key)
        return
    with _status_locks[key]:
        if key in _blocked:
            return  # the reconcile handler published why nothing was applied (_block)
        body = models.with_written_status(body)
        rivals = list(views.served.get((key[0], served_name(body))) or [])
        taken_by = models.served_name_owner(body, rivals)
        try:
            status = models.desired_status(
                body, _one(views.deployments, key), list(views.pods.get(key) or []), _now(),
                taken_by=taken_by, applied_generation=_applied_generation(key, body),
            )
        except models.InvalidSpecError:
            return  # the reconcile handler owns the InvalidSpecError condition
        changed = _publish(memo, key, body, status)
    _announce(body, changed, "Ready")


def _applied_generation(key: Key, body: dict[str, Any]) -> int:
    """The newest generation of this object whose children were applied; before this process
    applied any, what the status last said."""
    uid, generation = _applied.get(key, ("", 0))
    if uid and uid == body["metadata"].get("uid"):
        return generation
    return int((body.get("status") or {}).get("observedGeneration") or 0)


def _publish(memo: Any, key: Key, body: dict[str, Any], status: dict[str, Any],
             ) -> list[dict[str, Any]]:
    """The model's state into the operator's metrics and its status (call under its lock);
    returns the conditions that transitioned."""
    _metrics(memo).models.update(key, ModelState.of(body.get("spec") or {}, status))
    try:
        return models.publish_status(_kube(memo), body, status)
    except KubeError as err:
        raise _temporary(err) from err


# ---- RerankModel ----------------------------------------------------------------------------


@kopf.on.resume(GROUP, VERSION, MODEL_PLURAL, id="reconcile")
@kopf.on.create(GROUP, VERSION, MODEL_PLURAL, id="reconcile")
@kopf.on.update(GROUP, VERSION, MODEL_PLURAL, id="reconcile")
def reconcile_model(body: kopf.Body, memo: Any, **kwargs: Any) -> None:
    raw = dict(body)
    key = (body.metadata.namespace or "", body.metadata.name or "")
    try:
        spec = models.parse_spec(raw.get("spec"))
    except models.InvalidSpecError as err:
        _block(memo, key, raw, Blocked("InvalidSpec", str(err)))
        raise kopf.PermanentError(f"invalid spec: {err}") from err
    try:
        models.apply_children(_kube(memo), _settings(memo), models.owner_of(raw), spec)
    except NameConflictError as err:
        if not err.predecessor:
            _block(memo, key, raw, Blocked("NameConflict", str(err)))
        raise _retry_conflict(err) from err
    except KubeError as err:
        if err.transient:
            raise _temporary(err) from err
        _block(memo, key, raw, Blocked("ChildRefused", f"The API server refused a child of "
                                       f"this model: {err.message}"))
        raise kopf.PermanentError(f"API server refused a child: {err.message}") from err
    _blocked.pop(key, None)
    _applied[key] = (raw["metadata"].get("uid", ""), int(raw["metadata"].get("generation") or 0))
    _refresh(memo, key, _Views.of(kwargs), body=raw)


def _block(memo: Any, key: Key, body: dict[str, Any], blocked: Blocked) -> None:
    """Publish why nothing of the model was applied; child events leave that status alone
    until a reconcile gets through."""
    with _status_locks[key]:
        _blocked[key] = blocked
        status = models.desired_status(body, None, [], _now(), blocked=blocked)
        changed = _publish(memo, key, body, status)
    _announce(body, changed, "Ready")


@kopf.on.event(GROUP, VERSION, MODEL_PLURAL, id="siblings")
def model_event(event: kopf.RawEvent, body: kopf.Body, namespace: str, name: str, memo: Any,
                **kwargs: Any) -> None:
    """A model created or deleted changes who holds its served name: the other models of the
    namespace claiming that name are re-evaluated (``ServedNameTaken`` set or cleared). A
    deleted model's metrics go with it (a model without children gets no child events)."""
    if event.get("type") == "DELETED":
        _metrics(memo).models.forget((namespace, name))
        _blocked.pop((namespace, name), None)
        _applied.pop((namespace, name), None)
    if event.get("type") not in ("ADDED", "DELETED"):
        return
    views = _Views.of(kwargs)
    for other in views.served.get((namespace, served_name(body))) or []:
        if other["metadata"]["name"] != name:
            _refresh(memo, (namespace, other["metadata"]["name"]), views)


def _owning_model(
    key: Key, owner_uid: str | None, model_index: kopf.Index[Key, Any]
) -> tuple[dict[str, Any], RerankModelSpec] | None:
    """The live, valid model a child event concerns (None: gone, deleting, replaced, invalid)."""
    body = _one(model_index, key)
    if body is None or body["metadata"].get("deletionTimestamp"):
        return None
    if owner_uid is not None and body["metadata"].get("uid") != owner_uid:
        return None
    try:
        return body, models.parse_spec(body.get("spec"))
    except models.InvalidSpecError:
        return None  # the reconcile handler owns the InvalidSpec condition


def _repair(memo: Any, key: Key, owner_uid: str | None, model_index: kopf.Index[Key, Any]) -> None:
    """A child of a live model vanished: converge the model's children again."""
    if (found := _owning_model(key, owner_uid, model_index)) is None:
        return
    body, spec = found
    try:
        models.apply_children(_kube(memo), _settings(memo), models.owner_of(body), spec)
    except NameConflictError as err:  # someone took the vanished child's name meanwhile
        log.warning("cannot repair RerankModel %s/%s: %s", *key, err)
        kopf.event(body, type="Warning", reason="NameConflict", message=str(err))
        return
    except KubeError as err:
        raise _temporary(err) from err
    log.info("repaired children of RerankModel %s/%s", *key)


def _revert(memo: Any, key: Key, live: dict[str, Any], model_index: kopf.Index[Key, Any]) -> None:
    """Someone else edited a child's spec: replace it with what its live model wants."""
    if (found := _owning_model(key, _owner_uid(live), model_index)) is None:
        return
    body, spec = found
    try:
        models.revert_child(_kube(memo), _settings(memo), models.owner_of(body), spec, live)
    except KubeError as err:
        raise _temporary(err) from err


def _on_child_event(event: kopf.RawEvent, body: kopf.Body, key: Key, memo: Any,
                    model_index: kopf.Index[Key, Any]) -> None:
    """Recreate a deleted child; revert a child whose spec someone else edited."""
    child = (str(body.get("kind")), key[0], str(body.metadata.name))
    if event.get("type") == "DELETED":
        _answered_edits.pop(child, None)
        _repair(memo, key, _owner_uid(body), model_index)
        return
    edits = foreign_spec_edits(body, FIELD_MANAGER)
    if needs_repair(edits, _answered_edits.get(child, frozenset())):
        log.info("reverting edits of %s %s/%s by %s", child[0], child[1], child[2],
                 ", ".join(sorted({e[0] for e in edits})))
        _revert(memo, key, dict(body), model_index)  # raises on failure: the edit stays open
    if edits:
        _answered_edits[child] = edits
    else:
        _answered_edits.pop(child, None)


def _owner_uid(body: Mapping[str, Any]) -> str | None:
    refs = (body.get("metadata") or {}).get("ownerReferences") or []
    return next((r.get("uid") for r in refs if r.get("controller")), None)


@kopf.on.event("apps", "v1", "deployments", labels={**MANAGED, MODEL_LABEL: kopf.PRESENT})
def deployment_event(event: kopf.RawEvent, body: kopf.Body, labels: kopf.Labels, namespace: str,
                     memo: Any, **kwargs: Any) -> None:
    key, views = (namespace, labels[MODEL_LABEL]), _Views.of(kwargs)
    _on_child_event(event, body, key, memo, views.models)
    _refresh(memo, key, views)


@kopf.on.event("v1", "pods", labels=RUNTIME_PODS)
def pod_event(labels: kopf.Labels, namespace: str, memo: Any, **kwargs: Any) -> None:
    _refresh(memo, (namespace, labels[MODEL_LABEL]), _Views.of(kwargs))


def _child_event(
    event: kopf.RawEvent,
    body: kopf.Body,
    labels: kopf.Labels,
    namespace: str,
    memo: Any,
    model_index: kopf.Index[Key, Any],
    **_: Any,
) -> None:
    _on_child_event(event, body, (namespace, labels[MODEL_LABEL]), memo, model_index)


_CHILD_LABELS = {**MANAGED, MODEL_LABEL: kopf.PRESENT}
kopf.on.event("v1", "services", labels=_CHILD_LABELS, id="service_event")(_child_event)
kopf.on.event(
    "networking.k8s.io", "v1", "networkpolicies", labels=_CHILD_LABELS, id="netpol_event"
)(_child_event)
kopf.on.event("policy", "v1", "poddisruptionbudgets", labels=_CHILD_LABELS, id="pdb_event")(
    _child_event
)


# ---- ApiKey ---------------------------------------------------------------------------------


def _reconcile_apikey(body: dict[str, Any], memo: Any) -> None:
    kube = _kube(memo)
    try:
        spec = apikeys.parse_spec(body.get("spec"))
    except apikeys.InvalidApiKeyError as err:
        raise kopf.PermanentError(f"invalid spec: {err}") from err
    try:
        try:
            minted = apikeys.ensure_key(kube, body)
        except NameConflictError as err:
            if not err.predecessor:
                status = apikeys.desired_status(body, spec, None, _now(), conflict=str(err))
                _announce(body, apikeys.publish_status(kube, body, status), "Active")
            raise _retry_conflict(err) from err
        status = apikeys.desired_status(body, spec, minted, _now())
        changed = apikeys.publish_status(kube, body, status)
    except KubeError as err:
        raise _temporary(err) from err
    if minted.rotated:
        kopf.event(body, type="Normal", reason="Rotated", message=f"New key id {minted.key_id}.")
    if minted.lost:
        message = (f"Secret {secret_name(body['metadata']['name'])} was deleted or held no key, "
                   f"so a new key (id {minted.key_id}) was minted; key id {minted.lost} is gone "
                   "and its clients get 401 until they use the new one.")
        log.warning("ApiKey %s/%s: %s", body["metadata"]["namespace"],
                       body["metadata"]["name"], message)
        kopf.event(body, type="Warning", reason="KeyReplaced", message=message)
    _announce(body, changed, "Active")


@kopf.on.resume(GROUP, VERSION, APIKEY_PLURAL, id="reconcile")
@kopf.on.create(GROUP, VERSION, APIKEY_PLURAL, id="reconcile")
@kopf.on.update(GROUP, VERSION, APIKEY_PLURAL, id="reconcile")
def reconcile_apikey(body: kopf.Body, memo: Any, **_: Any) -> None:
    _reconcile_apikey(dict(body), memo)


@kopf.index(GROUP, VERSION, APIKEY_PLURAL)
def apikey_index(namespace: str, name: str, body: kopf.Body, **_: Any) -> dict[Key, Any]:
    return {(namespace, name): dict(body)}


@kopf.on.event("v1", "secrets", labels={APIKEY_LABEL: kopf.PRESENT})
def secret_event(
    event: kopf.RawEvent,
    labels: kopf.Labels,
    namespace: str,
    body: kopf.Body,
    memo: Any,
    apikey_index: kopf.Index[Key, Any],
    **_: Any,
) -> None:
    """A deleted key Secret is re-minted (the old key is gone; clients need the new one). One
    whose key someone else edited is taken as the key from now on (its id and digest are
    published, so the gateway accepts what the Secret says), or re-minted when it holds no key;
    the events of the operator's own writes are not answered (a rotation would mint twice)."""
    edited = event.get("type") == "MODIFIED" and data_edited_since_ours(body, FIELD_MANAGER)
    if event.get("type") != "DELETED" and not edited:
        return
    owner = _one(apikey_index, (namespace, labels[APIKEY_LABEL]))
    if owner is not None and not owner["metadata"].get("deletionTimestamp"):
        _reconcile_apikey(owner, memo)


@kopf.daemon(GROUP, VERSION, APIKEY_PLURAL, id="expiry", cancellation_timeout=1.0)
async def expiry_clock(body: kopf.Body, memo: Any, stopped: kopf.DaemonStopped, **_: Any) -> None:
    """Flip Active/Expired when expiresAt passes, without waiting for any other change."""
    while not stopped:
        try:
            spec = apikeys.parse_spec(body.get("spec"))
        except apikeys.InvalidApiKeyError:
            await stopped.wait(60)
            continue
        until = seconds_until_expiry(spec, _now())
        # Short naps: a spec edit that moves expiresAt closer is honoured within seconds.
        await stopped.wait(min(until + 0.05, 5.0) if until is not None else 5.0)
        if stopped or not (body.get("status") or {}).get("keyId"):
            continue
        snapshot = dict(body)
        status = apikeys.desired_status(snapshot, spec, None, _now())
        try:
            changed = await asyncio.to_thread(apikeys.publish_status, _kube(memo), snapshot, status)
        except KubeError as err:
            log.warning("expiry status update failed: %s", err.message)
            continue
        _announce(snapshot, changed, "Active")


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
    while not stopped:
        try:
            spec = models.parse_spec(body.get("spec"))
        except models.InvalidSpecError:
            await stopped.wait(60)
            continue
        if spec.replicas == 0:
            up_since = None
        elif seen is not None and spec.replicas > seen:
            up_since = _now()  # any scale-up (1 -> 2 too) gets a full idle spell
        else:
            up_since = up_since or available_since(body) or _now()
        seen = spec.replicas
        activity = [last_request_time(body), up_since, created_time(body)]
        until = seconds_until_scale_down(spec, activity, _now())
        if until is None or until > 0:
            # Short naps: a request recorded or a spec edit is honoured within seconds.
            await stopped.wait(min(until + 0.05, 5.0) if until is not None else 5.0)
            continue
        try:
            had = await asyncio.to_thread(
                scale_down_if_idle, _kube(memo), meta["namespace"], meta["name"], up_since, _now()
            )
        except KubeError as err:
            log.warning("scaling idle model %s down failed: %s", meta["name"], err.message)
            await stopped.wait(5.0)
            continue
        if had:
            _metrics(memo).scalings.labels(meta["namespace"], meta["name"], "idle").inc()
            idle = spec.scale_to_zero.after_idle_seconds if spec.scale_to_zero else 0
            kopf.event(body, type="Normal", reason="ScaledToZero",
                       message=f"No request for {idle} s: scaled from {had} to 0 replicas.")
            up_since = None
        await stopped.wait(1.0)  # let the watch deliver the scaled object


AUTOSCALE_PERIOD = 5.0  # seconds between two looks at the reported load


@kopf.daemon(GROUP, VERSION, MODEL_PLURAL, id="autoscale", cancellation_timeout=1.0,
             when=_spec_has("autoscaling"))
async def autoscaler(body: kopf.Body, memo: Any, stopped: kopf.DaemonStopped, **_: Any) -> None:
    """Scale a model with ``autoscaling`` on the requests in flight its gateways report."""
    meta = body["metadata"]
    ref = models.ref_of(meta["namespace"], meta["name"])
    memory = Autoscaler()
    while not stopped:
        await stopped.wait(AUTOSCALE_PERIOD)
        snapshot = dict(body)  # spec, status and resourceVersion of one moment
        try:
            spec = models.parse_spec(snapshot.get("spec"))
        except models.InvalidSpecError:
            continue
        if stopped or spec.autoscaling is None:
            continue
        now, status = _now(), snapshot.get("status") or {}
        target, load = memory.look(spec.replicas, spec.autoscaling, status, now, AUTOSCALE_PERIOD)
        kube = _kube(memo)
        try:
            if target != spec.replicas:
                version = snapshot["metadata"]["resourceVersion"]
                await asyncio.to_thread(kube.scale, ref, target, version)
                _metrics(memo).scalings.labels(meta["namespace"], meta["name"], "autoscale").inc()
                per = spec.autoscaling.target_in_flight
                kopf.event(body, type="Normal", reason="Autoscaled",
                           message=f"{load:.1f} requests in flight ({per:g} per replica wanted): "
                           f"{spec.replicas} -> {target} replicas.")
            if gone := forgotten_reporters(status, now):
                await asyncio.to_thread(
                    kube.patch_status, ref, {"gatewayLoad": dict.fromkeys(gone)}
                )
        except KubeError as err:
            if err.status != 409:  # 409: the model changed since read; next round decides
                log.warning("autoscaling %s failed: %s", meta["name"], err.message)
