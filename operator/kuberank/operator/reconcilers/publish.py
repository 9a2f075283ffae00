"""Write a computed status back, only when it changed, for any of our kinds."""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

from kuberank.crd.common import API_VERSION
from kuberank.operator.kube import Kube, Ref
from kuberank.operator.status.conditions import transitions

_REMEMBERED = 10_000  # objects whose last written status is kept (least recently written go)
_written: OrderedDict[str, dict[str, Any]] = OrderedDict()  # uid → status this process wrote
_written_lock = threading.Lock()


def with_written_status(body: dict[str, Any]) -> dict[str, Any]:
    """The object as it is after this process's last status write to it.

    Bodies come from watches, which lag behind our own writes: several child events handled
    right after a transition would each see the old status, recompute the transition and
    announce it again (one Event per handler instead of one).
    """
    with _written_lock:
        written = _written.get(str(body["metadata"].get("uid")))
    if not written:
        return body
    return {**body, "status": {**(body.get("status") or {}), **written}}


def publish_status(
    kube: Kube, kind: str, body: dict[str, Any], status: dict[str, Any]
) -> list[dict[str, Any]]:
    """Patch the status if it differs; returns the conditions that transitioned (for Events:
    none for an object already gone, as in a namespace being deleted, which takes no Events)."""
    current = body.get("status") or {}
    if all(current.get(k) == v for k, v in status.items()):
        return []
    meta = body["metadata"]
    if not kube.patch_status(Ref(API_VERSION, kind, meta["namespace"], meta["name"]), status):
        return []
    with _written_lock:
        _written[str(meta.get("uid"))] = status
        _written.move_to_end(str(meta.get("uid")))
        while len(_written) > _REMEMBERED:
            _written.popitem(last=False)
    return transitions(current.get("conditions"), status["conditions"])
