# kopf declares its callbacks as Protocols listing every kwarg; handlers that name only the
# kwargs they use (as kopf documents) do not match them structurally, hence arg-type is off here.
# mypy: disable-error-code="arg-type"
"""A RerankModel: reconcile its children, and keep its status following its Deployment, its
pods and the models of its namespace that claim the same names (its served name, its
aliases)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import kopf
from kuberank.crd import reasons
from kuberank.crd.common import GROUP, VERSION
from kuberank.crd.rerankmodel import PLURAL as MODEL_PLURAL
from kuberank.crd.rerankmodel import InvalidSpecError, aliases_of, parse_spec, served_name
from kuberank.operator.builders.meta import MODEL_LABEL
from kuberank.operator.handlers.children import on_child_event
from kuberank.operator.handlers.common import (
    CHILD_LABELS,
    RUNTIME_PODS,
    Key,
    KeyedLocks,
    announce,
    kopf_error,
    kube_of,
    metrics_of,
    now,
    one,
    retry_conflict,
    settings_of,
)
from kuberank.operator.kube import KubeError
from kuberank.operator.metrics import ModelState
from kuberank.operator.reconcilers import rerankmodel as models
from kuberank.operator.reconcilers.ownership import NameConflictError
from kuberank.operator.status import rerankmodel as model_status
from kuberank.operator.status.rerankmodel import Blocked

# kopf runs sync handlers of different objects (the model, its Deployment, its pods) on a thread
# pool. Status for one model is computed and written under its lock, from the indexes as they are
# once the lock is held, so a slow handler can never overwrite a newer status with an older view.
_status_locks = KeyedLocks()
# Models none of whose children could be applied, and why (the reconcile handler's verdict).
_blocked: dict[Key, Blocked] = {}
# The newest generation whose children this process applied: status.observedGeneration never
# runs ahead of it (GitOps tools read "observed and Ready" as "my change is live").
_applied: dict[Key, tuple[str, int]] = {}  # (uid, generation): a recreated model starts over
# What each model claimed when last seen: its aliases, and whether it claims names at all (one
# being deleted does not). A change of either re-evaluates its neighbours.
_claims_seen: dict[Key, tuple[tuple[str, ...], bool]] = {}


# ---- indexes: in-memory views of what the watches saw -------------------------------------


@kopf.index(GROUP, VERSION, MODEL_PLURAL)
def model_index(namespace: str, name: str, body: kopf.Body, **_: Any) -> dict[Key, Any]:
    return {(namespace, name): dict(body)}


@kopf.index("apps", "v1", "deployments", labels=CHILD_LABELS)
def deployment_index(
    namespace: str, labels: kopf.Labels, body: kopf.Body, **_: Any
) -> dict[Key, Any]:
    return {(namespace, labels[MODEL_LABEL]): dict(body)}


@kopf.index("v1", "pods", labels=RUNTIME_PODS)
def pod_index(namespace: str, labels: kopf.Labels, body: kopf.Body, **_: Any) -> dict[Key, Any]:
    return {(namespace, labels[MODEL_LABEL]): dict(body)}


@kopf.index(GROUP, VERSION, MODEL_PLURAL)
def namespace_index(namespace: str, body: kopf.Body, **_: Any) -> dict[str, Any]:
    """Models by namespace: who else claims a model's served name or its aliases."""
    return {namespace: dict(body)}


@dataclass(frozen=True)
class _Views:
    """What the watches saw, as the indexes above: kopf hands each to every handler by name."""

    models: kopf.Index[Key, Any]
    deployments: kopf.Index[Key, Any]
    pods: kopf.Index[Key, Any]
    neighbours: kopf.Index[str, Any]

    @classmethod
    def of(cls, kwargs: Mapping[str, Any]) -> _Views:
        return cls(kwargs["model_index"], kwargs["deployment_index"], kwargs["pod_index"],
                   kwargs["namespace_index"])


# ---- status -------------------------------------------------------------------------------


def _refresh(memo: Any, key: Key, views: _Views, body: dict[str, Any] | None = None) -> None:
    body = body or one(views.models, key)
    if body is None:
        metrics_of(memo).models.forget(key)
        return
    deleting = bool(body["metadata"].get("deletionTimestamp"))
    with _status_locks.hold(key):
        blocked = _blocked.get(key)  # why the reconcile handler applied nothing (_block)
        body = models.with_written_status(body)
        taken_by, shadowed = model_status.name_standing(
            body, list(views.neighbours.get(key[0]) or []))
        try:
            status = model_status.desired_status(
                body, one(views.deployments, key), list(views.pods.get(key) or []), now(),
                blocked=blocked, taken_by=taken_by, shadowed=shadowed,
                applied_generation=_applied_generation(key, body),
            )
        except InvalidSpecError:
            return  # the reconcile handler owns the InvalidSpecError condition
        changed = _publish(memo, key, body, status)
        if deleting:  # its metrics go with it (Ready says Deleting until then)
            metrics_of(memo).models.forget(key)
    announce(body, changed, "Ready")
    for cond in changed:  # Ready stays True: the model serves, under fewer names
        if cond["type"] == "Degraded" and cond["reason"] == reasons.ALIAS_SHADOWED:
            kopf.event(body, type="Warning", reason=cond["reason"], message=cond["message"])


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
    metrics_of(memo).models.update(key, ModelState.of(body.get("spec") or {}, status))
    try:
        return models.publish_status(kube_of(memo), body, status)
    except KubeError as err:
        raise kopf_error(err) from err


def _block(memo: Any, key: Key, body: dict[str, Any], blocked: Blocked, views: _Views) -> None:
    """Publish why the model's spec was not applied; the status says so, beside what the
    children of an earlier spec report (they still serve), until a reconcile gets through."""
    _blocked[key] = blocked
    _refresh(memo, key, views, body=body)


# ---- handlers -----------------------------------------------------------------------------


@kopf.on.resume(GROUP, VERSION, MODEL_PLURAL, id="reconcile")
@kopf.on.create(GROUP, VERSION, MODEL_PLURAL, id="reconcile")
@kopf.on.update(GROUP, VERSION, MODEL_PLURAL, id="reconcile")
def reconcile_model(body: kopf.Body, memo: Any, **kwargs: Any) -> None:
    raw = dict(body)
    key = (body.metadata.namespace or "", body.metadata.name or "")
    views = _Views.of(kwargs)
    try:
        spec = parse_spec(raw.get("spec"))
    except InvalidSpecError as err:
        _block(memo, key, raw, Blocked(reasons.INVALID_SPEC, str(err)), views)
        raise kopf.PermanentError(f"invalid spec: {err}") from err
    try:
        models.apply_children(kube_of(memo), settings_of(memo), models.owner_of(raw), spec)
    except NameConflictError as err:
        if not err.predecessor:
            _block(memo, key, raw, Blocked(reasons.NAME_CONFLICT, str(err),
                                           foreign_service="Service" in err.kinds), views)
        raise retry_conflict(err) from err
    except KubeError as err:
        if err.transient:
            raise kopf_error(err) from err
        if err.namespace_ending:  # the model goes with it
            return
        _block(memo, key, raw, Blocked(reasons.CHILD_REFUSED, "The API server refused a child of "
                                       f"this model: {err.message}"), views)
        raise kopf.PermanentError(f"API server refused a child: {err.message}") from err
    _blocked.pop(key, None)
    _applied[key] = (raw["metadata"].get("uid", ""), int(raw["metadata"].get("generation") or 0))
    _refresh(memo, key, views, body=raw)


@kopf.on.event(GROUP, VERSION, MODEL_PLURAL, id="siblings")
def model_event(event: kopf.RawEvent, body: kopf.Body, namespace: str, name: str, memo: Any,
                **kwargs: Any) -> None:
    """A model created or deleted changes who holds its served name, and one created, deleted
    or with other aliases changes who holds an alias: the other models of the namespace that
    claim its served name or declare aliases are re-evaluated (``ServedNameTaken``,
    ``AliasShadowed`` set or cleared). A model lets go of its names when its deletion starts
    (a finalizer or foreground deletion may keep it for a while), as the gateway routes. A
    deleted model's metrics go with it (a model without children gets no child events)."""
    key, kind = (namespace, name), event.get("type")
    claims = (aliases_of(body), not body.get("metadata", {}).get("deletionTimestamp"))
    seen = _claims_seen.get(key)
    if kind == "DELETED":
        metrics_of(memo).models.forget(key)
        for state in (_blocked, _applied, _claims_seen):
            state.pop(key, None)
    else:
        _claims_seen[key] = claims
    if kind not in ("ADDED", "DELETED") and (kind is None or seen == claims):
        return  # the initial listing (each model's own reconcile looks), or claims unchanged
    views = _Views.of(kwargs)
    failed = None
    if kind == "MODIFIED" and not claims[1]:  # its deletion began: its own status says so
        try:
            _refresh(memo, key, views)
        except (kopf.TemporaryError, kopf.PermanentError) as err:
            failed = err
    for other in list(views.neighbours.get(namespace) or []):  # the index changes under us
        if other["metadata"]["name"] != name and (
                served_name(other) == served_name(body) or aliases_of(other)):
            try:
                _refresh(memo, (namespace, other["metadata"]["name"]), views)
            except (kopf.TemporaryError, kopf.PermanentError) as err:  # the others get their turn
                failed = err
    if failed is not None:
        _claims_seen.pop(key, None)  # event handlers are not retried: the model's next one is
        raise failed


@kopf.on.event("apps", "v1", "deployments", labels=CHILD_LABELS)
def deployment_event(event: kopf.RawEvent, body: kopf.Body, labels: kopf.Labels, namespace: str,
                     memo: Any, **kwargs: Any) -> None:
    key, views = (namespace, labels[MODEL_LABEL]), _Views.of(kwargs)
    on_child_event(event, body, key, memo, views.models)
    _refresh(memo, key, views)


@kopf.on.event("v1", "pods", labels=RUNTIME_PODS)
def pod_event(labels: kopf.Labels, namespace: str, memo: Any, **kwargs: Any) -> None:
    _refresh(memo, (namespace, labels[MODEL_LABEL]), _Views.of(kwargs))
