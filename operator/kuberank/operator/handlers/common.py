# kopf.event is declared for kopf's Body; the plain dicts handlers pass serve it as well.
# mypy: disable-error-code="arg-type"
"""What every handler module needs: the memo's contents, the kopf error a failure becomes, and
one Event per transition of a summary condition."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

import kopf
from kuberank.crd.reasons import NO_REPLICAS_READY
from kuberank.operator.kube import Kube, KubeError
from kuberank.operator.metrics import OperatorMetrics
from kuberank.operator.reconcilers.ownership import NameConflictError
from kuberank.operator.settings import OperatorSettings
from kuberank.operator.watched import CHILD_LABELS as CHILD_LABELS
from kuberank.operator.watched import KEY_SECRETS as KEY_SECRETS
from kuberank.operator.watched import RUNTIME_PODS as RUNTIME_PODS

log = logging.getLogger("kuberank.operator")

Key = tuple[str, str]  # (namespace, name) of a RerankModel or ApiKey

# Not Ready, but on the way or by choice: a start, a rollout, zero replicas someone asked for
# (or scaleToZero chose), a deletion. Normal Events, so `--field-selector type=Warning` lists
# problems only.
_PROGRESS = frozenset(
    {"Creating", "DeploymentMissing", NO_REPLICAS_READY, "RollingOut", "Stopped",
     "ScaledToZero", "Deleting"})


class KeyedLocks:
    """One lock per object, kept only while a thread holds or waits for it: kopf runs sync
    handlers of one object (its own events, its children's, a daemon) on several threads, and
    objects come and go by the thousand over an operator's life."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[Key, tuple[threading.Lock, int]] = {}  # lock, threads using it

    @contextmanager
    def hold(self, key: Key) -> Iterator[None]:
        with self._guard:
            lock, users = self._locks.get(key, (None, 0))
            lock = lock or threading.Lock()
            self._locks[key] = (lock, users + 1)
        try:
            with lock:
                yield
        finally:
            with self._guard:
                users = self._locks[key][1] - 1
                if users:
                    self._locks[key] = (lock, users)
                else:
                    del self._locks[key]

    def __len__(self) -> int:
        return len(self._locks)


SpecT = TypeVar("SpecT")
_NOT_YET = object()


class SpecByGeneration(Generic[SpecT]):
    """An object's spec, parsed again only when it changed (its ``metadata.generation``): a
    daemon per object looks every few seconds, and a full pydantic parse each time cost more than
    the look (0.9 % of a core per 100 idle models). ``None`` for a spec ``parse`` refuses with
    ``invalid``: the reconcile handler has said why."""

    def __init__(self, parse: Callable[[Any], SpecT], invalid: type[Exception]) -> None:
        self._parse, self._invalid = parse, invalid
        self._generation: object = _NOT_YET
        self._spec: SpecT | None = None

    def of(self, body: Mapping[str, Any]) -> SpecT | None:
        generation = body["metadata"].get("generation")
        if generation != self._generation:
            try:
                self._spec = self._parse(body.get("spec"))
            except self._invalid:
                self._spec = None
            self._generation = generation
        return self._spec


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


def kopf_error(err: KubeError) -> Exception:
    """What a failed API call becomes: retried soon when the server may take it later (no
    answer, 409, 429, 5xx), else given up until the object changes."""
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
