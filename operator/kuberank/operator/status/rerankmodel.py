"""RerankModel status from its Deployment and pods: Ready, Available, Progressing, Degraded."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from kuberank.crd import reasons
from kuberank.crd.rerankmodel import (
    InvalidSpecError,
    NameClaim,
    Resources,
    name_holders,
    parse_spec,
    served_name,
)
from kuberank.operator.builders.meta import endpoint, selector_string
from kuberank.operator.status.conditions import Cond, find, stamp
from kuberank.operator.status.pods import PodProblem, pod_problems


@dataclass(frozen=True)
class DeploymentState:
    """The few Deployment facts the status depends on."""

    generation: int
    observed_generation: int
    replicas: int
    ready: int
    available: int
    updated: int
    deadline_exceeded: bool
    # Why the Deployment cannot create pods (ReplicaFailure: quota, admission policy), if so.
    create_failure: str | None = None

    @classmethod
    def from_object(cls, obj: dict[str, Any]) -> DeploymentState:
        status = obj.get("status") or {}
        conditions = {c.get("type"): c for c in status.get("conditions") or []}
        progressing: dict[str, Any] = conditions.get("Progressing") or {}
        failure: dict[str, Any] = conditions.get("ReplicaFailure") or {}
        return cls(
            generation=int((obj.get("metadata") or {}).get("generation") or 0),
            observed_generation=int(status.get("observedGeneration") or 0),
            replicas=int(status.get("replicas") or 0),
            ready=int(status.get("readyReplicas") or 0),
            available=int(status.get("availableReplicas") or 0),
            updated=int(status.get("updatedReplicas") or 0),
            deadline_exceeded=progressing.get("reason") == "ProgressDeadlineExceeded",
            create_failure=(str(failure.get("message") or failure.get("reason") or "")
                            if failure.get("status") == "True" else None),
        )


@dataclass(frozen=True)
class Blocked:
    """Why nothing of the model could be applied: ``InvalidSpec`` (a spec the API server
    accepted but the operator cannot run), ``NameConflict`` (a child's name is held by an object
    the model does not own) or ``ChildRefused`` (the API server refused a child)."""

    reason: str
    message: str
    # The model's Service name is held by another object: status.endpoint would name that.
    foreign_service: bool = False


@dataclass(frozen=True)
class Shadowed:
    """An alias of the model that requests never bring here: ``holder`` serves it, as its
    ``servedName`` or as an alias of its own (its name sorts first)."""

    alias: str
    holder: str
    how: str  # "servedName" or "alias"

    def describe(self) -> str:
        why = ("its servedName" if self.how == "servedName"
               else "which declares it too and sorts first by name")
        return f"{self.alias!r} goes to RerankModel {self.holder!r} ({why})"


@dataclass(frozen=True)
class ModelFacts:
    """What the status needs from the RerankModel itself."""

    name: str
    namespace: str
    generation: int
    replicas: int
    served_name: str
    scales_to_zero: bool = False  # spec.scaleToZero is set: 0 replicas means idle, not off
    taken_by: str | None = None  # an older RerankModel here serves the same servedName
    shadowed: tuple[Shadowed, ...] = ()  # aliases that reach other models
    # The newest generation whose children were applied; None: the current one.
    applied_generation: int | None = None
    deleting: bool = False  # kubectl delete was asked; finalizers hold the object a while

    def observed(self, blocked: bool) -> int:
        """The generation the status describes: a spec whose children failed to apply (a
        transient error being retried) is not observed yet; a blocked one is (it says why)."""
        if blocked or self.applied_generation is None:
            return self.generation
        return min(self.generation, self.applied_generation)


def compute_status(
    facts: ModelFacts,
    deployment: DeploymentState | None,
    problems: list[PodProblem],
    previous: dict[str, Any] | None,
    now: datetime,
    blocked: Blocked | None = None,
) -> dict[str, Any]:
    """The whole status object; ``blocked`` says why the model's spec could not be applied
    (its Deployment, if one runs from an earlier spec, is still reported: it serves)."""
    previous = previous or {}
    replicas = deployment.replicas if deployment else 0
    ready = deployment.ready if deployment else 0
    wanted = _conditions(facts, deployment, problems, blocked, previous)
    observed = facts.observed(blocked is not None)
    kept = _while_deployment_lags(facts, deployment, blocked, previous)
    if kept is not None:
        wanted = [kept.get(c.type, c) for c in wanted]
        observed = min(observed, int(previous.get("observedGeneration") or observed))
    status: dict[str, Any] = {
        "observedGeneration": observed,
        "conditions": stamp(wanted, previous.get("conditions"), now, observed),
        "replicas": replicas,
        "readyReplicas": ready,
        "selector": selector_string(facts.name),
        # None (a merge patch's removal) while another object holds the Service's name.
        "endpoint": (None if blocked is not None and blocked.foreign_service
                     else endpoint(facts.name, facts.namespace)),
        "servedName": facts.served_name,
    }
    return status


def _conditions(
    facts: ModelFacts,
    dep: DeploymentState | None,
    problems: list[PodProblem],
    blocked: Blocked | None,
    previous: dict[str, Any],
) -> list[Cond]:
    if blocked is not None and dep is None:
        reason, message = blocked.reason, blocked.message
        return [
            Cond("Ready", "False", reason, message),
            Cond("Available", "Unknown", reason, "Nothing of the model could be applied."),
            Cond("Progressing", "False", reason, "Stopped until the cause in Ready is fixed."),
            Cond("Degraded", "True", reason, message),
        ]
    if blocked is not None:  # a change refused: the runtime of the spec before serves on
        reason, message = blocked.reason, blocked.message
        return [
            Cond("Ready", "False", reason, message),
            _available(facts, dep, problems, had_deployment=True),
            Cond("Progressing", "False", reason, "This change was not applied: the runtime "
                 "Deployment keeps the spec before until the cause in Ready is fixed."),
            Cond("Degraded", "True", reason, message),
        ]
    available = _available(facts, dep, problems, _had_deployment(previous))
    progressing = _progressing(facts, dep)
    if facts.deleting:  # the gateway stopped routing to it the moment the deletion began
        message = ("The model is being deleted: requests for its names no longer reach it, "
                   "and its children go with it once its finalizers let go (unless the deletion "
                   "orphans them).")
        return [Cond("Ready", "False", "Deleting", message), available, progressing,
                _degraded(dep, problems)]
    if facts.taken_by is not None:  # its pods may run, but no request reaches them
        message = (f"servedName {facts.served_name!r} is already served by the older "
                   f"RerankModel {facts.taken_by!r} in this namespace, so requests for it go "
                   "there; give this model another servedName, or delete one of the two.")
        taken = Cond("Degraded", "True", "ServedNameTaken", message)
        return [Cond("Ready", "False", "ServedNameTaken", message), available, progressing,
                taken]
    degraded = _degraded(dep, problems)
    ready = _ready(facts, dep, available, progressing, degraded)
    if degraded.status == "False" and facts.shadowed:  # it serves, under fewer names
        degraded = _aliases_shadowed(facts.shadowed)
    return [ready, available, progressing, degraded]


def _aliases_shadowed(shadowed: tuple[Shadowed, ...]) -> Cond:
    where = "; ".join(s.describe() for s in shadowed)
    return Cond("Degraded", "True", reasons.ALIAS_SHADOWED,
                f"No request reaches this model through {len(shadowed)} of its aliases: {where}. "
                "Remove each from spec.aliases here or from the other model.")


_FROM_THE_DEPLOYMENT = ("Ready", "Available", "Progressing")


def _while_deployment_lags(
    facts: ModelFacts, dep: DeploymentState | None, blocked: Blocked | None,
    previous: dict[str, Any],
) -> dict[str, Cond] | None:
    """The conditions that stand while the Deployment controller has not taken the newest spec
    the operator applied: its counts are of the spec before, which says nothing of the new one
    (a scale-down would read "2 of 1 replicas updated"; a new image, with fewer replicas, all
    of them updated). What the status said stays, with its observedGeneration, until it has:
    no Ready flapping at each step of an autoscaler, and no Ready for a spec not rolled out."""
    if (dep is None or dep.observed_generation >= dep.generation or blocked is not None
            or facts.deleting or facts.taken_by is not None):
        return None
    before = {c.get("type"): c for c in previous.get("conditions") or []}
    if any(kind not in before for kind in _FROM_THE_DEPLOYMENT):
        return None  # nothing said yet: say what can be said
    return {kind: Cond(kind, before[kind]["status"], before[kind]["reason"],
                       before[kind]["message"]) for kind in _FROM_THE_DEPLOYMENT}


def _rolled_out(facts: ModelFacts, dep: DeploymentState) -> bool:
    """Every wanted replica runs the current spec: the Deployment controller saw the spec and
    no pod of an older one is left, or the model is scaling down (``_shrinking``)."""
    return _shrinking(facts, dep) or (
        dep.observed_generation >= dep.generation
        and dep.updated >= facts.replicas
        and dep.replicas == facts.replicas
    )


def _shrinking(facts: ModelFacts, dep: DeploymentState) -> bool:
    """More pods than wanted, every one of them of the current spec: a scale-down (the extra
    pods are on their way out), not a rollout's surge. A wanted replica that serves stays Ready
    through it: each step down of an autoscaler is no outage."""
    return (dep.observed_generation >= dep.generation and facts.replicas < dep.replicas
            and dep.updated >= dep.replicas)


def _had_deployment(previous: dict[str, Any]) -> bool:
    """Whether the status said before what a runtime Deployment did: only then is a Deployment
    the watch does not show one that went missing. A model just created (or one blocked until
    now) is being created: its first status comes before the watch shows the Deployment the
    operator applied, which no one should read as, or be sent an Event saying, "missing"."""
    before = find(previous.get("conditions"), "Available")
    return (before is not None and before.get("status") in ("True", "False")
            and before.get("reason") != "Creating")


def _available(facts: ModelFacts, dep: DeploymentState | None, problems: list[PodProblem],
               had_deployment: bool) -> Cond:
    if dep is None and not had_deployment:
        return Cond("Available", "False", "Creating", "Creating the runtime Deployment.")
    if dep is None:
        return Cond("Available", "False", "DeploymentMissing", "The runtime Deployment is missing.")
    if facts.replicas == 0 and facts.scales_to_zero:
        return Cond(
            "Available", "False", "ScaledToZero",
            "Idle, so scaled to 0 replicas; the next request through the gateway wakes it.",
        )
    if facts.replicas == 0:
        return Cond("Available", "False", "Stopped", "spec.replicas is 0; scale up to serve.")
    if dep.available > 0 and facts.taken_by is not None:  # they run (the waste), serving nobody
        return Cond("Available", "True", "MinimumReplicasAvailable",
                    f"{dep.available} of {facts.replicas} replicas run. No request reaches them "
                    "while another model serves this servedName.")
    if dep.available > 0:
        return Cond(
            "Available",
            "True",
            "MinimumReplicasAvailable",
            f"{dep.available} of {facts.replicas} replicas serve requests.",
        )
    if problems:
        return Cond("Available", "False", problems[0].reason, problems[0].message)
    if dep.create_failure is not None:
        return _create_failed("Available", dep.create_failure)
    return Cond("Available", "False", reasons.NO_REPLICAS_READY,
                "No replica is ready yet (fetching or loading).")


def _progressing(facts: ModelFacts, dep: DeploymentState | None) -> Cond:
    if dep is None:
        return Cond("Progressing", "True", "Creating", "Creating the runtime Deployment.")
    if dep.deadline_exceeded:
        return Cond(
            "Progressing",
            "False",
            "ProgressDeadlineExceeded",
            "The rollout made no progress in time; see the Degraded condition and pod events.",
        )
    if _shrinking(facts, dep):
        return Cond("Progressing", "True", "RollingOut",
                    f"Scaling down: {dep.replicas} replicas running, {facts.replicas} wanted.")
    if _rolled_out(facts, dep) and dep.ready >= facts.replicas:
        return Cond("Progressing", "False", "RolloutComplete", "All replicas run the current spec.")
    if dep.observed_generation < dep.generation:  # its counts are of the spec before
        return Cond("Progressing", "True", "RollingOut",
                    "The Deployment controller has not taken the new spec yet.")
    # Ready counts every pod: say how many still run the spec before, or "1 of 1 updated,
    # 1 ready" reads as done while the one ready pod is the old one.
    old = max(0, dep.replicas - dep.updated)
    before = f" ({old} of the spec before still running)" if old else ""
    return Cond("Progressing", "True", "RollingOut",
                f"{min(dep.updated, facts.replicas)} of {facts.replicas} replicas updated, "
                f"{dep.ready} ready{before}.")


def _degraded(dep: DeploymentState | None, problems: list[PodProblem]) -> Cond:
    if problems:
        first = problems[0]
        more = f" ({len(problems) - 1} more pods affected)" if len(problems) > 1 else ""
        return Cond("Degraded", "True", first.reason, first.message + more)
    if dep is not None and dep.create_failure is not None:
        return _create_failed("Degraded", dep.create_failure)
    if dep is not None and dep.deadline_exceeded:
        return Cond(
            "Degraded", "True", "ProgressDeadlineExceeded", "The Deployment stopped progressing."
        )
    return Cond("Degraded", "False", "AsExpected", "No problems observed.")


def _create_failed(kind: str, why: str) -> Cond:
    return Cond(kind, "True" if kind == "Degraded" else "False", "PodCreateFailed",
                f"The Deployment cannot create pods: {why}")


def _ready(
    facts: ModelFacts,
    dep: DeploymentState | None,
    available: Cond,
    progressing: Cond,
    degraded: Cond,
) -> Cond:
    full = dep is not None and facts.replicas > 0 and dep.ready >= facts.replicas
    if dep is not None and full and _rolled_out(facts, dep):
        plural = "s" if dep.ready != 1 else ""
        return Cond("Ready", "True", "AllReplicasReady", f"{dep.ready} replica{plural} ready.")
    if degraded.status == "True":
        return Cond("Ready", "False", degraded.reason, degraded.message)
    if available.status == "False":
        return Cond("Ready", "False", available.reason, available.message)
    return Cond("Ready", "False", progressing.reason, progressing.message)


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
    models (``name_standing``); ``applied_generation`` is the newest
    generation whose children were applied (None: the current one). Raises InvalidSpecError
    for a spec the operator cannot run, unless ``blocked`` already says why nothing was
    applied."""
    meta = body["metadata"]
    raw_spec = body.get("spec") or {}
    gpu_name: str = Resources.model_fields["gpu_resource_name"].default
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
