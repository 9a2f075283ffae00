"""Converge a RerankModel's children and publish its status."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from kuberank.crd.common import API_VERSION, validation_problems
from kuberank.crd.rerankmodel import (
    KIND,
    NameClaim,
    RerankModelSpec,
    name_holders,
    served_name,
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
from kuberank.operator.status.pods import pod_problems
from kuberank.operator.status.rerankmodel import (
    Blocked,
    DeploymentState,
    ModelFacts,
    Shadowed,
    compute_status,
)
from pydantic import ValidationError


class InvalidSpecError(ValueError):
    """A spec the API server accepted but the operator cannot run; names the fields."""


def parse_spec(raw: Any) -> RerankModelSpec:
    try:
        return RerankModelSpec.model_validate(raw or {})
    except ValidationError as err:
        raise InvalidSpecError(validation_problems(err, prefix="spec.")) from err


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


def _holders(body: Mapping[str, Any], others: Iterable[Mapping[str, Any]],
             ) -> dict[str, NameClaim]:
    """``name_holders`` over this model and the others of its namespace not being deleted."""
    me = body["metadata"]["name"]
    live = [o for o in others if not o["metadata"].get("deletionTimestamp")
            and o["metadata"]["name"] != me]
    return name_holders(NameClaim.of(o) for o in [body, *live])


def name_standing(body: Mapping[str, Any], others: Iterable[Mapping[str, Any]],
                  ) -> tuple[str | None, tuple[Shadowed, ...]]:
    """The model's standing among the models of its namespace, by the rule the gateway routes by
    (``name_holders``, worked out once): the older RerankModel that serves its served name, if
    any, and else the aliases of it that reach another model (none for a model that does not hold
    its served name: ``ServedNameTaken`` says why nothing reaches it). Pure."""
    holders, mine = _holders(body, others), NameClaim.of(body)
    if (holder := holders[mine.served_name]).name != mine.name:
        return holder.name, ()
    return None, tuple(
        Shadowed(alias, holder.name, "servedName" if holder.served_name == alias else "alias")
        for alias in mine.aliases if (holder := holders[alias]).name != mine.name
    )


def served_name_owner(body: Mapping[str, Any], others: Iterable[Mapping[str, Any]]) -> str | None:
    """The older RerankModel of the namespace that serves this model's served name, if any."""
    return name_standing(body, others)[0]


def shadowed_aliases(
    body: Mapping[str, Any], others: Iterable[Mapping[str, Any]]
) -> tuple[Shadowed, ...]:
    """The aliases of this model that reach another model of its namespace."""
    return name_standing(body, others)[1]


def desired_status(
    body: dict[str, Any],
    deployment: dict[str, Any] | None,
    pods: Iterable[dict[str, Any]],
    now: datetime,
    blocked: Blocked | None = None,
    taken_by: str | None = None,
    applied_generation: int | None = None,
    shadowed: tuple[Shadowed, ...] = (),
) -> dict[str, Any]:
    """Status from the model and what its children report (pure); ``taken_by`` names an
    older model that serves the same served name, ``shadowed`` the aliases that reach other
    models (``shadowed_aliases``); ``applied_generation`` is the newest
    generation whose children were applied (None: the current one). Raises InvalidSpecError
    for a spec the operator cannot run, unless ``blocked`` already says why nothing was
    applied."""
    meta = body["metadata"]
    raw_spec = body.get("spec") or {}
    gpu_name = "nvidia.com/gpu"
    served = served_name(body)
    replicas = int(raw_spec.get("replicas", 1) or 0)
    scales_to_zero = raw_spec.get("scaleToZero") is not None
    try:
        spec = parse_spec(raw_spec)
        gpu_name, served, replicas = (
            spec.resources.gpu_resource_name,
            spec.served_name_for(meta["name"]),
            spec.replicas,
        )
    except InvalidSpecError:
        if blocked is None:
            raise
    facts = ModelFacts(
        name=meta["name"],
        namespace=meta["namespace"],
        generation=int(meta.get("generation") or 0),
        replicas=replicas,
        served_name=served,
        scales_to_zero=scales_to_zero,
        taken_by=taken_by,
        shadowed=shadowed,
        applied_generation=applied_generation,
        deleting=bool(meta.get("deletionTimestamp")),
    )
    problems = pod_problems(pods, gpu_name)
    dep = DeploymentState.from_object(deployment) if deployment else None
    return compute_status(facts, dep, problems, body.get("status"), now, blocked)


with_written_status = publish.with_written_status


def publish_status(
    kube: Kube, body: dict[str, Any], status: dict[str, Any]
) -> list[dict[str, Any]]:
    """Patch the status if it differs; returns the conditions that transitioned."""
    return publish.publish_status(kube, KIND, body, status)
