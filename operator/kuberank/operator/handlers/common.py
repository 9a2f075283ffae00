# kopf.event is declared for kopf's Body; the plain dicts handlers pass serve it as well.
# mypy: disable-error-code="arg-type"
"""What every handler module needs: the memo's contents, the kopf error a failure becomes, and
one Event per transition of a summary condition."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import kopf
from kuberank.operator.builders.meta import MANAGED_BY, MODEL_LABEL
from kuberank.operator.kube import Kube, KubeError
from kuberank.operator.metrics import OperatorMetrics
from kuberank.operator.reconcilers.ownership import NameConflictError
from kuberank.operator.settings import OperatorSettings

log = logging.getLogger("kuberank.operator")

Key = tuple[str, str]  # (namespace, name) of a RerankModel or ApiKey
MANAGED = {"app.kubernetes.io/managed-by": MANAGED_BY}
CHILD_LABELS = {**MANAGED, MODEL_LABEL: kopf.PRESENT}

# Not Ready, but on the way or by choice: a start, a rollout, zero replicas someone asked for
# (or scaleToZero chose). Normal Events, so `--field-selector type=Warning` lists problems only.
_PROGRESS = frozenset(
    {"Creating", "DeploymentMissing", "NoReplicasReady", "RollingOut", "ScaledToZero"})


def now() -> datetime:
    return datetime.now(UTC)


def kube_of(memo: Any) -> Kube:
    kube: Kube = memo.kube
    return kube


def settings_of(memo: Any) -> OperatorSettings:
    settings: OperatorSettings = memo.settings
    return settings


def metrics_of(memo: Any) -> OperatorMetrics:
    metrics: OperatorMetrics = memo.metrics
    return metrics


def one(index: kopf.Index[Key, Any], key: Key) -> dict[str, Any] | None:
    """The object an index holds under ``key`` (one per key), if any."""
    store = index.get(key)
    return next(iter(store), None) if store is not None else None


def temporary(err: KubeError) -> Exception:
    if err.transient:
        return kopf.TemporaryError(f"API server: {err.message}", delay=3)
    return kopf.PermanentError(f"API server refused a child: {err.message}")


def retry_conflict(err: NameConflictError) -> kopf.TemporaryError:
    """Retried until the name is free: soon for a deleted namesake's child (garbage collection
    takes seconds), every 10 s for someone else's object (renamed or deleted some day), so the
    model or key starts by itself."""
    return kopf.TemporaryError(str(err), delay=2 if err.predecessor else 10)


def announce(body: dict[str, Any], changed: list[dict[str, Any]], summary: str) -> None:
    """One Kubernetes Event per condition transition of the summary condition."""
    for cond in changed:
        if cond["type"] == summary:
            fine = cond["status"] == "True" or cond["reason"] in _PROGRESS
            kind = "Normal" if fine else "Warning"
            kopf.event(body, type=kind, reason=cond["reason"], message=cond["message"])
