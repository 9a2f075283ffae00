# kopf declares its callbacks as Protocols listing every kwarg; handlers that name only the
# kwargs they use (as kopf documents) do not match them structurally, hence arg-type is off here.
# mypy: disable-error-code="arg-type"
"""A model's children stay what the model says: a deleted child is recreated at once and a
child whose spec someone else edited is reverted (what counts as an edit: ``drift.py``)."""

from __future__ import annotations

from typing import Any

import kopf
from kuberank.crd.rerankmodel import InvalidSpecError, RerankModelSpec, parse_spec
from kuberank.operator.builders.meta import MODEL_LABEL
from kuberank.operator.drift import Edit, foreign_spec_edits, needs_repair
from kuberank.operator.handlers.common import (
    CHILD_LABELS,
    Key,
    kopf_error,
    kube_of,
    log,
    one,
    settings_of,
)
from kuberank.operator.kube import FIELD_MANAGER, KubeError
from kuberank.operator.reconcilers import rerankmodel as models
from kuberank.operator.reconcilers.ownership import NameConflictError, controller_of

# Per child (kind, namespace, name): the foreign spec edits a repair has already answered.
_answered_edits: dict[tuple[str, str, str], frozenset[Edit]] = {}


def on_child_event(event: kopf.RawEvent, body: kopf.Body, key: Key, memo: Any,
                   model_index: kopf.Index[Key, Any]) -> None:
    """Recreate a deleted child; revert a child whose spec someone else edited."""
    child = (str(body.get("kind")), key[0], str(body.metadata.name))
    if event.get("type") == "DELETED":
        _answered_edits.pop(child, None)
        _repair(memo, key, _controller_uid(dict(body)), model_index)
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


def _owning_model(
    key: Key, owner_uid: str | None, model_index: kopf.Index[Key, Any]
) -> tuple[dict[str, Any], RerankModelSpec] | None:
    """The live, valid model a child event concerns (None: gone, deleting, replaced, invalid)."""
    body = one(model_index, key)
    if body is None or body["metadata"].get("deletionTimestamp"):
        return None
    if owner_uid is not None and body["metadata"].get("uid") != owner_uid:
        return None
    try:
        return body, parse_spec(body.get("spec"))
    except InvalidSpecError:
        return None  # the reconcile handler owns the InvalidSpec condition


def _repair(memo: Any, key: Key, owner_uid: str | None, model_index: kopf.Index[Key, Any]) -> None:
    """A child of a live model vanished: converge the model's children again."""
    if (found := _owning_model(key, owner_uid, model_index)) is None:
        return
    body, spec = found
    try:
        models.apply_children(kube_of(memo), settings_of(memo), models.owner_of(body), spec)
    except NameConflictError as err:  # someone took the vanished child's name meanwhile
        log.warning("cannot repair RerankModel %s/%s: %s", *key, err)
        kopf.event(body, type="Warning", reason="NameConflict", message=str(err))
        return
    except KubeError as err:
        if err.namespace_ending:  # the model goes with it
            return
        raise kopf_error(err) from err
    log.info("repaired children of RerankModel %s/%s", *key)


def _revert(memo: Any, key: Key, live: dict[str, Any], model_index: kopf.Index[Key, Any]) -> None:
    """Someone else edited a child's spec: replace it with what its live model wants."""
    if (found := _owning_model(key, _controller_uid(live), model_index)) is None:
        return
    body, spec = found
    try:
        models.revert_child(kube_of(memo), settings_of(memo), models.owner_of(body), spec, live)
    except KubeError as err:
        raise kopf_error(err) from err


def _child_event(
    event: kopf.RawEvent,
    body: kopf.Body,
    labels: kopf.Labels,
    namespace: str,
    memo: Any,
    model_index: kopf.Index[Key, Any],
    **_: Any,
) -> None:
    on_child_event(event, body, (namespace, labels[MODEL_LABEL]), memo, model_index)


# The Deployment's events also move the model's status: rerankmodel.deployment_event.
kopf.on.event("v1", "services", labels=CHILD_LABELS, id="service_event")(_child_event)
kopf.on.event(
    "networking.k8s.io", "v1", "networkpolicies", labels=CHILD_LABELS, id="netpol_event"
)(_child_event)
kopf.on.event("policy", "v1", "poddisruptionbudgets", labels=CHILD_LABELS, id="pdb_event")(
    _child_event
)


def _controller_uid(child: dict[str, Any]) -> str | None:
    owner = controller_of(child)
    return str(owner["uid"]) if owner and owner.get("uid") else None
