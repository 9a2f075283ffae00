import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kuberank.crd.apikey import ApiKeySpec
from kuberank.crd.reasons import ALIAS_SHADOWED
from kuberank.operator.status import apikey as apikey_status
from kuberank.operator.status.conditions import Cond, stamp, transitions
from kuberank.operator.status.pods import last_words, pod_problem, pod_problems
from kuberank.operator.status.rerankmodel import (
    Blocked,
    DeploymentState,
    ModelFacts,
    Shadowed,
    compute_status,
    name_standing,
)

pytestmark = pytest.mark.unit

T0 = datetime(2026, 1, 1, tzinfo=UTC)
FACTS = ModelFacts(name="bge", namespace="ns", generation=3, replicas=2, served_name="bge-v2")


def _dep(**kw: Any) -> DeploymentState:
    base = dict(
        generation=5,
        observed_generation=5,
        replicas=2,
        ready=2,
        available=2,
        updated=2,
        deadline_exceeded=False,
    )
    base.update(kw)
    return DeploymentState(**base)  # type: ignore[arg-type]


def _by_type(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in status["conditions"]}


def test_all_replicas_ready_means_ready_available_not_progressing_not_degraded() -> None:
    status = compute_status(FACTS, _dep(), [], None, T0)
    conds = _by_type(status)
    assert [c for c in conds] == ["Ready", "Available", "Progressing", "Degraded"]
    assert conds["Ready"]["status"] == "True" and conds["Ready"]["reason"] == "AllReplicasReady"
    assert conds["Available"]["status"] == "True"
    assert conds["Progressing"]["status"] == "False"
    assert conds["Degraded"]["status"] == "False"
    assert status["observedGeneration"] == 3 and status["readyReplicas"] == 2
    assert status["selector"] == "app.kubernetes.io/name=kuberank-runtime,kuberank.io/model=bge"
    assert status["endpoint"] == "http://rrm-bge.ns.svc:8080"
    assert status["servedName"] == "bge-v2"


def test_rollout_in_progress_is_progressing_and_not_ready() -> None:
    conds = _by_type(compute_status(FACTS, _dep(updated=1, ready=2), [], None, T0))
    assert conds["Progressing"]["status"] == "True" and conds["Ready"]["status"] == "False"
    conds = _by_type(compute_status(FACTS, _dep(observed_generation=4), [], None, T0))
    assert conds["Ready"]["status"] == "False"


def test_pods_the_deployment_cannot_create_are_a_failure_not_a_wait_for_loading() -> None:
    refused = ('pods "rrm-bge-5d9f-x" is forbidden: failed quota: team: must specify '
               "requests.cpu for: fetch-model")
    deployment = {
        "metadata": {"generation": 5},
        "status": {"observedGeneration": 5, "replicas": 0, "conditions": [
            {"type": "Progressing", "status": "True", "reason": "NewReplicaSetCreated"},
            {"type": "ReplicaFailure", "status": "True", "reason": "FailedCreate",
             "message": refused},
        ]},
    }
    state = DeploymentState.from_object(deployment)
    conds = _by_type(compute_status(FACTS, state, [], None, T0))
    for kind in ("Ready", "Available", "Degraded"):
        assert conds[kind]["reason"] == "PodCreateFailed"
        assert refused in conds[kind]["message"]
    assert conds["Degraded"]["status"] == "True" and conds["Available"]["status"] == "False"
    healed = {**deployment, "status": {**deployment["status"], "conditions": [
        {"type": "ReplicaFailure", "status": "False", "reason": "FailedCreate"}]}}
    conds = _by_type(compute_status(FACTS, DeploymentState.from_object(healed), [], None, T0))
    assert conds["Degraded"]["status"] == "False"
    assert conds["Available"]["reason"] == "NoReplicasReady"


def test_gpu_shortage_explains_itself_in_ready_and_degraded() -> None:
    pod = {
        "metadata": {"name": "rrm-bge-1"},
        "status": {
            "phase": "Pending",
            "conditions": [
                {
                    "type": "PodScheduled",
                    "status": "False",
                    "reason": "Unschedulable",
                    "message": "0/2 nodes are available: 2 Insufficient nvidia.com/gpu.",
                }
            ],
        },
    }
    problem = pod_problem(pod, "nvidia.com/gpu")
    assert problem is not None and problem.reason == "InsufficientGPU"
    status = compute_status(FACTS, _dep(ready=0, available=0), [problem], None, T0)
    conds = _by_type(status)
    assert conds["Ready"]["reason"] == "InsufficientGPU"
    assert "spec.resources.gpus" in conds["Ready"]["message"]
    assert conds["Degraded"]["status"] == "True"
    assert conds["Available"]["reason"] == "InsufficientGPU"
    other = pod_problem(pod, "amd.com/gpu")
    assert other is not None and other.reason == "Unschedulable"


def test_a_pod_short_of_gpus_is_told_how_many_it_asks_and_when_none_is_that_large() -> None:
    """The same scheduler message stands for "busy" and "no node that large"; the message said
    only "free or add GPUs", which never helps a pod asking more than any node has."""
    pod = {"metadata": {"name": "rrm-big-1"},
           "spec": {"containers": [{"resources": {"limits": {"nvidia.com/gpu": "3"}}},
                                   {"resources": {}}]},
           "status": _unschedulable("0/2 nodes are available: 2 Insufficient nvidia.com/gpu.")}
    problem = pod_problem(pod, "nvidia.com/gpu")
    assert problem is not None and problem.reason == "InsufficientGPU"
    assert "no node has 3 free nvidia.com/gpu" in problem.message
    assert "if no node has 3 nvidia.com/gpu in all" in problem.message


def test_the_schedulers_message_is_a_sentence_of_its_own_in_ours() -> None:
    message = 'persistentvolumeclaim "missing-claim" not found. not found'  # as the scheduler says
    problem = pod_problem({"metadata": {"name": "p"}, "status": _unschedulable(message)},
                          "nvidia.com/gpu")
    assert problem is not None and problem.reason == "ClaimNotReady"
    assert f"Pending: {message}. The claims named in spec.cache" in problem.message


def _unschedulable(message: str) -> dict[str, Any]:
    return {"phase": "Pending", "conditions": [
        {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message}]}


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        (_unschedulable('0/3 nodes are available: persistentvolumeclaim "absent" not found.'),
         "ClaimNotReady"),
        (_unschedulable("0/3 nodes are available: pod has unbound immediate "
                        "PersistentVolumeClaims."), "ClaimNotReady"),
        (_unschedulable("0/3 nodes are available: 3 node(s) didn't match Pod's node "
                        "affinity/selector."), "Unschedulable"),
        (
            {
                "initContainerStatuses": [
                    {
                        "image": "x",
                        "state": {"waiting": {"reason": "ErrImagePull", "message": "not found"}},
                    }
                ]
            },
            "ImagePullFailed",
        ),
        (
            {
                "initContainerStatuses": [
                    {
                        "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                        "lastState": {"terminated": {"exitCode": 2, "message": "sha256 mismatch"}},
                    }
                ]
            },
            "FetchFailed",
        ),
        (
            {
                "containerStatuses": [
                    {"restartCount": 4, "state": {"waiting": {"reason": "CrashLoopBackOff"}}}
                ]
            },
            "CrashLoop",
        ),
        (  # one exit is not a loop yet
            {
                "containerStatuses": [
                    {"restartCount": 1, "state": {"waiting": {"reason": "CrashLoopBackOff"}}}
                ]
            },
            None,
        ),
        ({"containerStatuses": [{"state": {"running": {}}}]}, None),
        (  # the fetcher retried: running again, its failure in lastState, still the failure
            {
                "initContainerStatuses": [
                    {
                        "restartCount": 3, "ready": False, "state": {"running": {}},
                        "lastState": {"terminated": {"exitCode": 2, "message": "sha256 mismatch"}},
                    }
                ]
            },
            "FetchFailed",
        ),
        (  # ... and the same between retries, while the kubelet creates it again
            {
                "initContainerStatuses": [
                    {
                        "restartCount": 3, "ready": False,
                        "state": {"waiting": {"reason": "PodInitializing"}},
                        "lastState": {"terminated": {"exitCode": 2, "message": "sha256 mismatch"}},
                    }
                ]
            },
            "FetchFailed",
        ),
        (  # a fetch that failed once and then succeeded is no problem
            {
                "initContainerStatuses": [
                    {
                        "restartCount": 1, "ready": True,
                        "state": {"terminated": {"exitCode": 0}},
                        "lastState": {"terminated": {"exitCode": 2, "message": "timed out"}},
                    }
                ]
            },
            None,
        ),
        (  # the runtime restarted twice and is loading again: still a crash loop
            {
                "containerStatuses": [
                    {"restartCount": 2, "ready": False, "state": {"running": {}},
                     "lastState": {"terminated": {"exitCode": 1, "message": "out of memory"}}}
                ]
            },
            "CrashLoop",
        ),
        (  # ... until it serves again
            {
                "containerStatuses": [
                    {"restartCount": 2, "ready": True, "state": {"running": {}},
                     "lastState": {"terminated": {"exitCode": 1}}}
                ]
            },
            None,
        ),
        (  # ran ready, until its node stopped reporting and the node controller said not ready
            {
                "conditions": [{"type": "ContainersReady", "status": "True"},
                               {"type": "Ready", "status": "False"}],
                "containerStatuses": [{"ready": True, "state": {"running": {}}}],
            },
            "NodeNotReady",
        ),
        (  # loading: neither its containers nor it are ready yet
            {
                "conditions": [{"type": "ContainersReady", "status": "False"},
                               {"type": "Ready", "status": "False"}],
                "containerStatuses": [{"ready": False, "state": {"running": {}}}],
            },
            None,
        ),
    ],
)
def test_pod_problems_are_named(status: dict[str, Any], reason: str | None) -> None:
    problem = pod_problem({"metadata": {"name": "p"}, "status": status}, "nvidia.com/gpu")
    assert (problem.reason if problem else None) == reason
    if reason == "FetchFailed":
        assert problem is not None and "sha256 mismatch" in problem.message
        if status["initContainerStatuses"][0].get("restartCount") == 3:  # not the fetcher's
            assert "(the fetch container restarted 3 times and retries)" in problem.message
    if reason == "CrashLoop":  # a file llama.cpp cannot load is the source's doing
        assert problem is not None and "Check spec.source" in problem.message


def test_a_pod_held_by_a_readiness_gate_is_not_taken_for_a_node_cut_off() -> None:
    status = {"conditions": [{"type": "ContainersReady", "status": "True"},
                             {"type": "Ready", "status": "False"}]}
    gated = {"metadata": {"name": "p"}, "status": status,
             "spec": {"readinessGates": [{"conditionType": "target-health.elbv2.k8s.aws/tg"}]}}
    assert pod_problem(gated, "nvidia.com/gpu") is None


def test_a_crash_loop_quotes_the_last_line_not_the_usage_text_before_it() -> None:
    usage = "\n".join(["usage: kuberank-runtime [-h] [--model MODEL]", *["  [--flag X]"] * 20,
                       "kuberank-runtime: error: unrecognized arguments: --no-such-flag", ""])
    status = {"containerStatuses": [{
        "restartCount": 3, "state": {"waiting": {"reason": "CrashLoopBackOff"}},
        "lastState": {"terminated": {"exitCode": 2, "message": usage}}}]}
    problem = pod_problem({"metadata": {"name": "p"}, "status": status}, "nvidia.com/gpu")
    assert problem is not None and problem.reason == "CrashLoop"
    assert "error: unrecognized arguments: --no-such-flag" in problem.message
    assert "usage:" not in problem.message and "--flag" not in problem.message
    assert last_words("x" * 1000).endswith("…") and len(last_words("x" * 1000)) == 400


def test_invalid_spec_is_a_permanent_degraded_condition() -> None:
    conds = _by_type(compute_status(FACTS, None, [], None, T0,
                                    Blocked("InvalidSpec", "spec.resources.memory: x")))
    assert conds["Degraded"]["reason"] == "InvalidSpec"
    assert "spec.resources.memory" in conds["Ready"]["message"]


@pytest.mark.parametrize("reason", ["InvalidSpec", "ChildRefused", "NameConflict"])
def test_a_refused_change_reports_the_replicas_that_still_serve(reason: str) -> None:
    """An edit the operator cannot apply leaves the Deployment of the spec before serving; the
    status said 0 of 0 replicas and "Nothing of the model could be applied" (an HPA reading the
    scale subresource, and the ready-replicas metric, saw 0)."""
    status = compute_status(FACTS, _dep(), [], None, T0, Blocked(reason, "why"))
    conds = _by_type(status)
    assert (status["replicas"], status["readyReplicas"]) == (2, 2)
    assert conds["Ready"]["status"] == "False" and conds["Ready"]["reason"] == reason
    assert conds["Available"]["status"] == "True"
    assert conds["Available"]["message"] == "2 of 2 replicas serve requests."
    assert conds["Progressing"]["status"] == "False" and conds["Progressing"]["reason"] == reason
    assert "keeps the spec before" in conds["Progressing"]["message"]
    assert conds["Degraded"]["status"] == "True" and conds["Degraded"]["message"] == "why"


def test_a_model_whose_service_name_is_held_by_another_object_publishes_no_endpoint() -> None:
    """status.endpoint named the foreign Service (a team's database, say) as the model's."""
    held = compute_status(FACTS, None, [], None, T0,
                          Blocked("NameConflict", "Service rrm-bge ...", foreign_service=True))
    assert held["endpoint"] is None  # a merge patch's removal of an endpoint published before
    other = compute_status(FACTS, None, [], None, T0, Blocked("NameConflict", "Deployment ..."))
    assert other["endpoint"] == "http://rrm-bge.ns.svc:8080"


def test_scaled_to_zero_and_missing_deployment() -> None:
    zero = ModelFacts(name="bge", namespace="ns", generation=1, replicas=0, served_name="bge")
    conds = _by_type(
        compute_status(zero, _dep(replicas=0, ready=0, updated=0, available=0), [], None, T0)
    )
    # Stopped by whoever set 0, not scaled to zero by the idle rule it does not have.
    assert conds["Ready"]["status"] == "False" and conds["Available"]["reason"] == "Stopped"
    assert "scale up to serve" in conds["Available"]["message"]
    idle = ModelFacts(name="bge", namespace="ns", generation=1, replicas=0, served_name="bge",
                      scales_to_zero=True)
    conds = _by_type(
        compute_status(idle, _dep(replicas=0, ready=0, updated=0, available=0), [], None, T0)
    )
    assert conds["Available"]["reason"] == "ScaledToZero"
    assert "next request through the gateway wakes it" in conds["Ready"]["message"]


def test_a_deployment_not_seen_yet_is_being_created_and_one_that_was_seen_is_missing() -> None:
    """A new model's first status comes before the watch shows its Deployment: "Creating" (an
    Event saying "DeploymentMissing" at every creation misled); a Deployment gone after the
    status described one is missing."""
    def available(previous: dict[str, Any] | None) -> tuple[str, str]:
        conds = _by_type(compute_status(FACTS, None, [], previous, T0))
        assert conds["Ready"]["reason"] == conds["Available"]["reason"]
        return conds["Available"]["reason"], conds["Progressing"]["reason"]

    assert available(None) == ("Creating", "Creating")
    creating = compute_status(FACTS, None, [], None, T0)
    assert available(creating) == ("Creating", "Creating")
    blocked = compute_status(FACTS, None, [], None, T0, Blocked("InvalidSpec", "bad"))
    assert available(blocked) == ("Creating", "Creating")
    for dep in (_dep(), _dep(ready=0, available=0), _dep(replicas=0, ready=0, updated=0,
                                                           available=0)):
        seen = compute_status(FACTS, dep, [], None, T0)
        assert available(seen) == ("DeploymentMissing", "Creating")
        missing = compute_status(FACTS, None, [], seen, T0)
        assert available(missing) == ("DeploymentMissing", "Creating")


def test_a_served_name_an_older_model_holds_is_not_ready_and_says_which() -> None:
    taken = dataclasses.replace(FACTS, taken_by="bge-old")
    conds = _by_type(compute_status(taken, _dep(), [], None, T0))
    assert (conds["Ready"]["status"], conds["Ready"]["reason"]) == ("False", "ServedNameTaken")
    assert (conds["Degraded"]["status"], conds["Degraded"]["reason"]) == (
        "True", "ServedNameTaken")
    assert "'bge-v2' is already served by the older RerankModel 'bge-old'" in (
        conds["Ready"]["message"])
    assert conds["Available"]["status"] == "True"  # its pods do run: that is the waste
    assert conds["Available"]["message"] == ("2 of 2 replicas run. No request reaches them while "
                                             "another model serves this servedName.")


def _model(name: str, served: str | None, created: str, deleting: bool = False,
           aliases: tuple[str, ...] = ()) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": "ns", "creationTimestamp": created}
    if deleting:
        meta["deletionTimestamp"] = created
    spec: dict[str, Any] = {"servedName": served} if served else {}
    if aliases:
        spec["aliases"] = list(aliases)
    return {"metadata": meta, "spec": spec}


def test_the_oldest_model_owns_a_served_name_and_newer_ones_are_told() -> None:
    old = _model("zeta", "m", "2026-11-01T00:00:00Z")
    new = _model("alpha", "m", "2026-11-02T00:00:00Z")
    other = _model("m", None, "2026-10-01T00:00:00Z")  # served as its name: "m" as well
    unrelated = _model("x", "y", "2026-01-01T00:00:00Z")
    assert name_standing(new, [old, new, unrelated])[0] == "zeta"
    assert name_standing(old, [old, new, unrelated])[0] is None
    assert name_standing(old, [old, new, other])[0] == "m"
    gone = _model("m", None, "2026-10-01T00:00:00Z", deleting=True)
    assert name_standing(old, [old, new, gone])[0] is None
    # same creation second: the first by name
    twin = _model("beta", "m", "2026-11-02T00:00:00Z")
    assert name_standing(twin, [new, twin])[0] == "alpha"
    assert name_standing(new, [new, twin])[0] is None


def test_a_shadowed_alias_degrades_a_ready_model_and_names_where_requests_go() -> None:
    shadowed = dataclasses.replace(FACTS, shadowed=(
        Shadowed("rerank", "other", "servedName"), Shadowed("bge", "aaa", "alias")))
    conds = _by_type(compute_status(shadowed, _dep(), [], None, T0))
    assert (conds["Ready"]["status"], conds["Ready"]["reason"]) == ("True", "AllReplicasReady")
    assert (conds["Degraded"]["status"], conds["Degraded"]["reason"]) == (
        "True", ALIAS_SHADOWED)  # the name the gateway knows it by
    assert conds["Degraded"]["message"] == (
        "No request reaches this model through 2 of its aliases: 'rerank' goes to RerankModel "
        "'other' (its servedName); 'bge' goes to RerankModel 'aaa' (which declares it too and "
        "sorts first by name). Remove each from spec.aliases here or from the other model.")
    # a rollout still says it is rolling out; a pod's problem is the first thing to fix
    conds = _by_type(compute_status(shadowed, _dep(updated=1), [], None, T0))
    assert (conds["Ready"]["reason"], conds["Degraded"]["reason"]) == (
        "RollingOut", "AliasShadowed")
    looping = {"restartCount": 4, "state": {"waiting": {"reason": "CrashLoopBackOff"}}}
    crash = pod_problem({"metadata": {"name": "p"}, "status": {"containerStatuses": [looping]}},
                        "nvidia.com/gpu")
    assert crash is not None
    conds = _by_type(compute_status(shadowed, _dep(ready=0, available=0), [crash], None, T0))
    assert conds["Degraded"]["reason"] == "CrashLoop"


def test_an_alias_reaches_the_model_the_gateway_sends_it_to() -> None:
    old = _model("old", "bge", "2026-11-01T00:00:00Z", aliases=("rerank", "shared"))
    new = _model("new", "bge", "2026-11-02T00:00:00Z", aliases=("mine",))  # bge is taken
    zed = _model("zed", None, "2026-10-01T00:00:00Z", aliases=("shared", "bge", "zed", "own"))
    rerank = _model("rerank", None, "2026-12-01T00:00:00Z")
    everyone = [old, new, zed, rerank]
    assert name_standing(old, everyone)[1] == (Shadowed("rerank", "rerank", "servedName"),)
    assert name_standing(zed, everyone)[1] == (
        Shadowed("bge", "old", "servedName"), Shadowed("shared", "old", "alias"))
    assert name_standing(new, everyone)[1] == ()  # ServedNameTaken says it all
    leaving = _model("rerank", None, "2026-12-01T00:00:00Z", deleting=True)
    assert name_standing(old, [old, new, zed, leaving])[1] == ()


def test_transition_time_changes_only_when_status_changes() -> None:
    first = stamp([Cond("Ready", "False", "A", "m")], None, T0)
    later = T0 + timedelta(minutes=5)
    same = stamp([Cond("Ready", "False", "B", "n")], first, later)
    assert same[0]["lastTransitionTime"] == first[0]["lastTransitionTime"]
    flipped = stamp([Cond("Ready", "True", "C", "o")], same, later)
    assert flipped[0]["lastTransitionTime"] == "2026-01-01T00:05:00Z"
    assert [c["reason"] for c in transitions(first, same)] == ["B"]
    assert transitions(same, same) == []


def test_recomputing_status_is_stable() -> None:
    first = compute_status(FACTS, _dep(), [], None, T0)
    again = compute_status(FACTS, _dep(), [], first, T0 + timedelta(hours=1))
    assert again == first


def test_apikey_active_until_expiry_then_expired() -> None:
    spec = ApiKeySpec.model_validate({"expiresAt": "2026-01-01T00:10:00Z"})
    before = apikey_status.compute_status(spec, 1, "a" * 16, "sha256$x$y", "k-key", None, None, T0)
    conds = _by_type(before)
    assert conds["Active"]["status"] == "True" and conds["Expired"]["status"] == "False"
    assert apikey_status.seconds_until_expiry(spec, T0) == 600
    after = apikey_status.compute_status(
        spec, 1, "a" * 16, "sha256$x$y", "k-key", None, before, T0 + timedelta(minutes=11)
    )
    conds = _by_type(after)
    assert conds["Active"]["reason"] == "Expired" and conds["Expired"]["status"] == "True"
    assert apikey_status.seconds_until_expiry(spec, T0 + timedelta(minutes=11)) is None


def test_the_expiry_clock_writes_only_when_expiry_flips() -> None:
    """The daemon's one job: a status that says Expired when it is (or is not) stays as the
    spec handler wrote it, so the daemon never writes back an older key id or generation."""
    spec = ApiKeySpec.model_validate({"expiresAt": "2026-01-01T00:10:00Z"})
    live = apikey_status.compute_status(spec, 1, "a" * 16, "sha256$x$y", "k-key", None, None, T0)
    later = T0 + timedelta(minutes=11)
    assert not apikey_status.expiry_flipped(spec, live, T0)
    assert apikey_status.expiry_flipped(spec, live, later)
    expired = apikey_status.compute_status(
        spec, 1, "a" * 16, "sha256$x$y", "k-key", None, live, later)
    assert not apikey_status.expiry_flipped(spec, expired, later)
    assert apikey_status.expiry_flipped(ApiKeySpec(), expired, later)  # expiresAt taken away
    unpublished = {k: v for k, v in live.items() if k not in ("keyId", "digest")}
    assert not apikey_status.expiry_flipped(spec, unpublished, later)
    assert not apikey_status.expiry_flipped(spec, {}, later)


def test_apikey_disabled_and_pending_and_no_secret_in_status() -> None:
    spec = ApiKeySpec.model_validate({"disabled": True})
    status = apikey_status.compute_status(spec, 2, "a" * 16, "sha256$x$y", "k-key", "r1", None, T0)
    conds = _by_type(status)
    assert conds["Active"]["reason"] == "Disabled" and conds["Disabled"]["status"] == "True"
    assert set(status) == {
        "observedGeneration",
        "keyId",
        "digest",
        "secretName",
        "rotation",
        "conditions",
    }
    pending = apikey_status.compute_status(ApiKeySpec(), 1, None, None, "k-key", None, None, T0)
    assert _by_type(pending)["Active"]["reason"] == "Pending" and "keyId" not in pending


def test_a_scale_down_in_progress_says_so_and_the_model_stays_ready() -> None:
    """Each step down (an autoscaler's, kubectl scale) flipped Ready to False, with an Event
    saying "2 of 1 replicas updated", until the extra pods were gone."""
    three = dict(replicas=3, ready=3, updated=3, available=3)
    before = compute_status(dataclasses.replace(FACTS, generation=1, replicas=3),
                            _dep(**three, generation=4, observed_generation=4), [], None, T0)
    assert _by_type(before)["Ready"]["status"] == "True"
    facts = dataclasses.replace(FACTS, generation=2, replicas=1)
    # Scaled to 1: the Deployment controller has not taken the new count yet, then it has.
    lagging = compute_status(facts, _dep(**three, observed_generation=4), [], before, T0)
    assert lagging["conditions"] == before["conditions"] and lagging["observedGeneration"] == 1
    shrinking = compute_status(facts, _dep(**three), [], lagging, T0)
    conds = _by_type(shrinking)
    assert conds["Progressing"]["message"] == "Scaling down: 3 replicas running, 1 wanted."
    assert conds["Ready"]["status"] == "True" and conds["Available"]["status"] == "True"
    assert shrinking["observedGeneration"] == 2
    assert transitions(before["conditions"], shrinking["conditions"]) == [
        c for c in shrinking["conditions"] if c["type"] == "Progressing"]  # Ready never moved
    done = _by_type(compute_status(facts, _dep(replicas=1, ready=1, updated=1, available=1),
                                   [], shrinking, T0))
    assert done["Progressing"]["reason"] == "RolloutComplete" and done["Ready"]["status"] == "True"


def test_a_new_image_with_fewer_replicas_is_not_ready_before_it_rolls_out() -> None:
    """The Deployment's counts before its controller takes the new spec are of the old pods:
    all "updated", more than wanted. That is no scale-down of the new spec: nothing of the new
    generation is said until the controller has taken it."""
    three = dict(replicas=3, ready=3, updated=3, available=3)
    before = compute_status(dataclasses.replace(FACTS, generation=1, replicas=3),
                            _dep(**three), [], None, T0)
    facts = dataclasses.replace(FACTS, generation=2, replicas=1)
    lagging = compute_status(facts, _dep(**three, generation=6), [], before, T0)
    assert lagging["observedGeneration"] == 1  # not the new generation's Ready
    taken = compute_status(facts, _dep(generation=6, observed_generation=6, replicas=4,
                                       updated=1, ready=3, available=3), [], lagging, T0)
    assert _by_type(taken)["Ready"]["status"] == "False"
    assert _by_type(taken)["Progressing"]["message"] == (
        "1 of 1 replicas updated, 3 ready (3 of the spec before still running).")


def test_a_new_spec_the_deployment_controller_has_not_taken_is_not_ready_yet() -> None:
    conds = _by_type(compute_status(FACTS, _dep(observed_generation=4), [], None, T0))
    assert conds["Ready"]["status"] == "False"
    assert conds["Progressing"]["message"] == (
        "The Deployment controller has not taken the new spec yet.")


def test_a_surge_pod_of_a_rollout_is_not_called_a_scale_down() -> None:
    facts = ModelFacts(name="bge", namespace="ns", generation=2, replicas=1, served_name="bge")
    conds = _by_type(compute_status(facts, _dep(replicas=2, ready=1, updated=1, available=1),
                                    [], None, T0))
    assert conds["Progressing"]["message"] == (
        "1 of 1 replicas updated, 1 ready (1 of the spec before still running).")


def test_pods_on_their_way_out_bring_no_problems_and_hold_the_gpus_pending_pods_wait_for() -> None:
    def pod(name: str, status: dict[str, Any], leaving: bool = False) -> dict[str, Any]:
        meta: dict[str, Any] = {"name": name}
        if leaving:
            meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
        return {"metadata": meta, "status": status}

    no_gpu = _unschedulable("0/2 nodes are available: 2 Insufficient nvidia.com/gpu.")
    crashing = {"containerStatuses": [{"restartCount": 4,
                                       "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}
    # Alone, a pod Pending for a GPU is short of GPUs.
    assert [p.reason for p in pod_problems([pod("new", no_gpu)], "nvidia.com/gpu")] == [
        "InsufficientGPU"]
    # Beside a pod of the model still terminating (holding its GPU), it is waiting for it; the
    # terminating pod's own crash is no longer the model's problem.
    assert pod_problems([pod("new", no_gpu), pod("old", crashing, leaving=True)],
                        "nvidia.com/gpu") == []
    # Other problems of live pods still count while one leaves.
    assert [p.reason for p in pod_problems([pod("a", crashing), pod("b", {}, leaving=True)],
                                           "nvidia.com/gpu")] == ["CrashLoop"]


def test_a_generation_whose_children_were_not_applied_yet_is_not_observed() -> None:
    """An edit (generation 3) whose apply failed and is retried: a pod event's status still
    describes generation 2, whatever the pods say, so GitOps tools keep waiting."""
    lagging = dataclasses.replace(FACTS, applied_generation=2)
    status = compute_status(lagging, _dep(), [], None, T0)
    assert status["observedGeneration"] == 2
    assert {c["observedGeneration"] for c in status["conditions"]} == {2}
    applied = dataclasses.replace(FACTS, applied_generation=3)
    assert compute_status(applied, _dep(), [], None, T0)["observedGeneration"] == 3
    blocked = compute_status(lagging, None, [], None, T0, Blocked("InvalidSpec", "x"))
    assert blocked["observedGeneration"] == 3  # observed, and refused: that is the news


def test_a_model_being_deleted_says_so_in_ready_whatever_its_pods_do() -> None:
    deleting = dataclasses.replace(FACTS, deleting=True)
    conds = _by_type(compute_status(deleting, _dep(ready=1, available=1), [], None, T0))
    assert (conds["Ready"]["status"], conds["Ready"]["reason"]) == ("False", "Deleting")
    assert conds["Available"]["status"] == "True"  # its pods still run until they go
    taken = dataclasses.replace(deleting, taken_by="older")  # says more than a lost name
    assert _by_type(compute_status(taken, None, [], None, T0))["Ready"]["reason"] == "Deleting"


def test_a_key_naming_a_model_nobody_serves_is_told_so() -> None:
    """By served name or alias; a model being deleted serves nothing; '*' names no model."""
    models = [
        {"metadata": {"name": "bge"}, "spec": {"aliases": ["BAAI/bge-reranker-v2-m3"]}},
        {"metadata": {"name": "m"}, "spec": {"servedName": "minilm"}},
        {"metadata": {"name": "old", "deletionTimestamp": "2026-01-01T00:00:00Z"}, "spec": {}},
    ]
    spec = ApiKeySpec.model_validate(
        {"models": ["bge", "BAAI/bge-reranker-v2-m3", "minilm", "m", "old", "minlm"]})
    assert apikey_status.unserved_models(spec, models) == ["m", "old", "minlm"]
    assert apikey_status.unserved_models(ApiKeySpec(), []) == []
    assert apikey_status.unserved_message(["minlm"], "team-a") == (
        "spec.models names 'minlm', which no RerankModel in namespace team-a serves (yet): "
        "requests for it are answered 404 until one does. A typo?")
