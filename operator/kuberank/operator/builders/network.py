"""Service, NetworkPolicy and PodDisruptionBudget of a RerankModel."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from kuberank.crd.rerankmodel import RUNTIME_PORT_NAME, RerankModelSpec
from kuberank.operator.builders.meta import (
    GATEWAY_LABELS,
    HTTP_PORT,
    Owner,
    child_name,
    metadata,
    selector,
)


def build_service(owner: Owner) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(owner, child_name(owner.name)),
        "spec": {
            "type": "ClusterIP",
            "selector": selector(owner.name),
            "ports": [{"name": RUNTIME_PORT_NAME, "port": HTTP_PORT,
                       "targetPort": RUNTIME_PORT_NAME, "protocol": "TCP"}],
        },
    }


def build_network_policy(
    owner: Owner, spec: RerankModelSpec, scrapers: Sequence[dict[str, Any]] = (),
    gateway_namespace: str = "",
) -> dict[str, Any]:
    """Only gateway pods, metrics ``scrapers`` and, if allowed, same-namespace pods reach the
    runtime. The gateway's namespace is named when known: a pod label alone is no credential,
    since any tenant may label a pod of its own like the gateway's."""
    namespaces: dict[str, Any] = (
        {"matchLabels": {"kubernetes.io/metadata.name": gateway_namespace}}
        if gateway_namespace else {}
    )
    peers: list[dict[str, Any]] = [
        {"namespaceSelector": namespaces, "podSelector": {"matchLabels": dict(GATEWAY_LABELS)}}
    ]
    peers.extend(scrapers)
    if spec.allow_same_namespace:
        peers.append({"podSelector": {}})
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata(owner, child_name(owner.name)),
        "spec": {
            "podSelector": {"matchLabels": selector(owner.name)},
            "policyTypes": ["Ingress"],
            "ingress": [{"from": peers, "ports": [{"protocol": "TCP", "port": HTTP_PORT}]}],
        },
    }


def wants_pdb(spec: RerankModelSpec) -> bool:
    return spec.replicas > 1


def build_pdb(owner: Owner) -> dict[str, Any]:
    """At most one replica voluntarily down at a time (drains, node upgrades)."""
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": metadata(owner, child_name(owner.name)),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector(owner.name)}},
    }
