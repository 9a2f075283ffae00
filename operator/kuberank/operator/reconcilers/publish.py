"""Write a computed status back, only when it changed, for any of our kinds."""

from __future__ import annotations

from typing import Any

from kuberank.crd.common import API_VERSION
from kuberank.operator.kube import Kube, Ref
from kuberank.operator.status.conditions import transitions


def publish_status(
    kube: Kube, kind: str, body: dict[str, Any], status: dict[str, Any]
) -> list[dict[str, Any]]:
    """Patch the status if it differs; returns the conditions that transitioned (for Events)."""
    current = body.get("status") or {}
    if all(current.get(k) == v for k, v in status.items()):
        return []
    meta = body["metadata"]
    kube.patch_status(Ref(API_VERSION, kind, meta["namespace"], meta["name"]), status)
    return transitions(current.get("conditions"), status["conditions"])
