"""Converge a RerankModel's children and publish its status."""

from __future__ import annotations

from typing import Any

from kuberank.crd.common import API_VERSION
from kuberank.crd.rerankmodel import (
    KIND,
    RerankModelSpec,
)
from kuberank.operator.builders.deployment import build_deployment
from kuberank.operator.builders.meta import Owner, child_name
from kuberank.operator.builders.network import (
    build_network_policy,
    build_pdb,
    build_service,
    wants_pdb,
)
from kuberank.operator.drift import reverted
from kuberank.operator.kube import Kube, Ref
from kuberank.operator.reconcilers import publish
from kuberank.operator.reconcilers.ownership import check_names, conflict
from kuberank.operator.settings import OperatorSettings


def ref_of(namespace: str, name: str) -> Ref:
    return Ref(API_VERSION, KIND, namespace, name)


def owner_of(body: dict[str, Any]) -> Owner:
    meta = body["metadata"]
    return Owner(kind=KIND, name=meta["name"], namespace=meta["namespace"], uid=meta["uid"])


def desired_children(
    settings: OperatorSettings, owner: Owner, spec: RerankModelSpec
) -> list[dict[str, Any]]:
    """Every child the model should have, as manifests (pure)."""
    children = [
        build_deployment(owner, spec, settings),
        build_service(owner),
        build_network_policy(owner, spec, settings.metrics_from, settings.gateway_namespace),
    ]
    return [*children, build_pdb(owner)] if wants_pdb(spec) else children


def apply_children(
    kube: Kube, settings: OperatorSettings, owner: Owner, spec: RerankModelSpec
) -> None:
    """Level-based: the same call creates, updates and repairs; running it twice changes nothing.
    Writes nothing when any child's name is held by someone else (NameConflictError)."""
    manifests = desired_children(settings, owner, spec)
    check_names(kube, manifests, owner)
    for manifest in manifests:
        kube.apply(manifest)
    if not wants_pdb(spec):  # remove ours (replicas went down to 1), and only ours
        pdb = Ref("policy/v1", "PodDisruptionBudget", owner.namespace, child_name(owner.name))
        live = kube.get(pdb)
        if live is not None and conflict(pdb.kind, live, owner) is None:
            kube.delete(pdb)


def revert_child(
    kube: Kube, settings: OperatorSettings, owner: Owner, spec: RerankModelSpec,
    live: dict[str, Any],
) -> None:
    """Replace one child someone else edited with what the model wants (or delete a stray)."""
    wanted = [m for m in desired_children(settings, owner, spec) if m["kind"] == live["kind"]]
    if not wanted:
        kube.delete(Ref.of(live))
        return
    kube.replace(reverted(live, wanted[0]))


with_written_status = publish.with_written_status


def publish_status(
    kube: Kube, body: dict[str, Any], status: dict[str, Any]
) -> list[dict[str, Any]]:
    """Patch the status if it differs; returns the conditions that transitioned."""
    return publish.publish_status(kube, KIND, body, status)
