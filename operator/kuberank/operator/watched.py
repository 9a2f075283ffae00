"""Which objects of other kinds the operator takes, by label: the handlers' ``labels=``
filters, and the same as the label selectors the API server lists and watches by
(cli.WATCH_SELECTORS), so it never sends the operator every Secret and Pod of the cluster."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import kopf
from kuberank.crd.common import MANAGED_BY_LABEL
from kuberank.operator.builders.meta import MANAGED_BY, MODEL_LABEL, RUNTIME_NAME
from kuberank.operator.builders.secret import APIKEY_LABEL

CHILD_LABELS = {MANAGED_BY_LABEL: MANAGED_BY, MODEL_LABEL: kopf.PRESENT}
RUNTIME_PODS = {"app.kubernetes.io/name": RUNTIME_NAME, MODEL_LABEL: kopf.PRESENT}
KEY_SECRETS = {APIKEY_LABEL: kopf.PRESENT}


def label_selector(labels: Mapping[str, object]) -> str:
    """A ``labels=`` filter as a label selector (``kopf.PRESENT``: the label is there)."""
    return ",".join(key if value is kopf.PRESENT else f"{key}={value}"
                    for key, value in labels.items())


# What the indexes keep of an object: what the handlers read, not the whole of it. A watched
# Pod or Deployment is mostly its spec and its managedFields, neither of which any status is
# computed from, and the operator holds one of each for every replica of every model.
HANDLED_ANNOTATION = "/last-handled-configuration"  # kopf's copy of the spec, under our prefix


def without_bookkeeping(body: Mapping[str, Any]) -> dict[str, Any]:
    """``body`` without its managedFields and kopf's last-handled annotation, which only the
    API server and kopf itself read (pure; nested objects are shared, not copied)."""
    meta = dict(body.get("metadata") or {})
    meta.pop("managedFields", None)
    annotations = meta.get("annotations")
    if annotations and any(k.endswith(HANDLED_ANNOTATION) for k in annotations):
        meta["annotations"] = {k: v for k, v in annotations.items()
                               if not k.endswith(HANDLED_ANNOTATION)}
    return {**body, "metadata": meta}


def deployment_facts(body: Mapping[str, Any]) -> dict[str, Any]:
    """What a model's status reads of its Deployment: generation and status (pure)."""
    meta = body.get("metadata") or {}
    return {"metadata": _picked(meta, ("name", "namespace", "uid", "generation", "labels")),
            "status": body.get("status") or {}}


def pod_facts(body: Mapping[str, Any]) -> dict[str, Any]:
    """What a model's status reads of a runtime pod (``status.pods.pod_problems``) (pure)."""
    meta, spec = body.get("metadata") or {}, body.get("spec") or {}
    return {"metadata": _picked(meta, ("name", "namespace", "uid", "labels",
                                       "deletionTimestamp")),
            "spec": _picked(spec, ("nodeName", "readinessGates")),
            "status": body.get("status") or {}}


def _picked(fields: Mapping[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    return {name: fields[name] for name in names if name in fields}
