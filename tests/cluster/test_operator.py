"""The operator end to end through a real API server: children, status, scale, rollout,
cascade, drift repair, admission of invalid objects and the ApiKey lifecycle."""

from __future__ import annotations

import base64
import contextlib
import json
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from kuberank.crd.keys import parse_key, verify_secret
from kuberank.operator.builders.meta import Owner
from kuberank.operator.builders.secret import build_secret
from prometheus_client.parser import text_string_to_metric_families

if TYPE_CHECKING:
    from conftest import Kubectl, OperatorProcess

Wait = Callable[..., Any]

pytestmark = pytest.mark.cluster

SHA = "c" * 64


def model(name: str, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "source": {"url": {"url": "https://models.example/m.gguf", "sha256": SHA}}
    }
    body.update(spec)
    return {
        "apiVersion": "kuberank.io/v1alpha1",
        "kind": "RerankModel",
        "metadata": {"name": name},
        "spec": body,
    }


def condition(obj: dict[str, Any] | None, type_: str) -> dict[str, Any]:
    for cond in ((obj or {}).get("status") or {}).get("conditions") or []:
        if cond["type"] == type_:
            return dict(cond)
    return {}


def operator_sample(operator: OperatorProcess, metric: str, **labels: str) -> float | None:
    """The value of the operator's one sample of ``metric`` with ``labels`` (None: none)."""
    text = httpx.get(operator.metrics, timeout=5).text
    found = [s.value for family in text_string_to_metric_families(text) for s in family.samples
             if s.name == metric and labels.items() <= s.labels.items()]
    assert len(found) <= 1, (metric, labels, found)
    return found[0] if found else None


def ready_cpu_model(kubectl: Kubectl, wait_for: Wait, name: str) -> dict[str, Any]:
    """Create a CPU-only model, wait until it is Ready, and return its Deployment."""
    kubectl.apply(model(name, resources={"gpus": 0}))
    wait_condition(wait_for, kubectl, "rrm", name, "Ready", "True")
    deployment = kubectl.get("deployment", f"rrm-{name}")
    assert deployment is not None
    return deployment


def touch_and_wait_for_reconcile(kubectl: Kubectl, wait_for: Wait, kind: str, name: str) -> None:
    """Change an annotation (which re-runs the reconcile handler) and wait until it has run."""
    kubectl.run("annotate", kind, name, "example.com/touch=1")
    wait_for(
        f"reconcile of {kind}/{name}",
        lambda: "example.com/touch"
        in (kubectl.get(kind, name) or {})["metadata"]["annotations"].get(
            "operator.kuberank.io/last-handled-configuration", ""
        ),
    )


def wait_condition(
    wait_for: Wait,
    k: Kubectl,
    kind: str,
    name: str,
    type_: str,
    status: str,
    reason: str | None = None,
    timeout: float = 90,
) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        obj = k.get(kind, name)
        cond = condition(obj, type_)
        ok = cond.get("status") == status and (reason is None or cond.get("reason") == reason)
        return obj if ok else None

    return wait_for(f"{kind}/{name} {type_}={status} {reason or ''}", check, timeout)


def test_model_creates_owned_children_and_becomes_ready(
    kubectl: Kubectl, wait_for: Wait, operator: OperatorProcess, namespace: str
) -> None:
    kubectl.apply(
        model("bge", servedName="bge-reranker", resources={"gpus": 1}, engine={"threads": 2})
    )
    obj = wait_condition(wait_for, kubectl, "rrm", "bge", "Ready", "True", "AllReplicasReady")
    status = obj["status"]
    assert (
        status["readyReplicas"] == 1
        and status["observedGeneration"] == obj["metadata"]["generation"]
    )
    assert status["endpoint"] == f"http://rrm-bge.{namespace}.svc:8080"
    assert status["servedName"] == "bge-reranker"
    for kind in ("deployment", "service", "networkpolicy"):
        child = kubectl.get(kind, "rrm-bge")
        assert child is not None, kind
        (ref,) = child["metadata"]["ownerReferences"]
        assert (
            ref["kind"] == "RerankModel"
            and ref["uid"] == obj["metadata"]["uid"]
            and ref["controller"]
        )
        assert child["metadata"]["labels"]["kuberank.io/model"] == "bge"
    assert kubectl.get("pdb", "rrm-bge") is None  # one replica: no PDB
    dep = kubectl.get("deployment", "rrm-bge")
    assert dep is not None
    pod = dep["spec"]["template"]["spec"]
    (runtime,) = pod["containers"]
    assert runtime["resources"]["limits"] == {"nvidia.com/gpu": "1"}
    assert runtime["command"] == ["kuberank-runtime"]
    assert {"name": "KUBERANK_SERVED_NAME", "value": "bge-reranker"} in runtime["env"]
    assert pod["initContainers"][0]["command"] == ["kuberank-fetch"]
    svc = kubectl.get("service", "rrm-bge")
    assert svc is not None and svc["spec"]["ports"][0]["name"] == "http"
    events = kubectl.run(
        "get", "events", "--field-selector", "involvedObject.name=bge", "-o", "json"
    )
    reasons = {e["reason"] for e in json.loads(events.stdout)["items"]}
    assert "AllReplicasReady" in reasons
    assert "DeploymentMissing" not in reasons  # being created is not missing
    # A start is progress, not a problem: `--field-selector type=Warning` stays quiet.
    assert [e["reason"] for e in json.loads(events.stdout)["items"]
            if e["type"] == "Warning"] == []
    printed = kubectl.run("get", "rrm", "bge").stdout
    assert "bge-reranker" in printed and "True" in printed


def test_gpu_shortage_is_explained_in_conditions(
    kubectl: Kubectl, wait_for: Wait, operator: OperatorProcess
) -> None:
    kubectl.apply(model("big", resources={"gpus": 8}))
    obj = wait_condition(wait_for, kubectl, "rrm", "big", "Ready", "False", "InsufficientGPU")
    assert "nvidia.com/gpu" in condition(obj, "Ready")["message"]
    assert condition(obj, "Degraded")["status"] == "True"


def test_operator_metrics_say_which_models_are_ready_or_degraded_and_why(
    kubectl: Kubectl, wait_for: Wait, operator: OperatorProcess, namespace: str
) -> None:
    ready_cpu_model(kubectl, wait_for, "fine")
    kubectl.apply(model("big", resources={"gpus": 8}))
    wait_condition(wait_for, kubectl, "rrm", "big", "Degraded", "True", "InsufficientGPU")

    def scraped(name: str, metric: str, **labels: str) -> float | None:
        return operator_sample(operator, metric, namespace=namespace, name=name, **labels)

    condition_metric = "kuberank_operator_model_condition"
    wait_for("fine Ready in the metrics",
             lambda: scraped("fine", condition_metric, condition="Ready") == 1)
    assert scraped("fine", condition_metric, condition="Degraded", reason="") == 0
    assert scraped("fine", "kuberank_operator_model_ready_replicas") == 1
    assert scraped("fine", "kuberank_operator_model_desired_replicas") == 1
    wait_for("big Degraded in the metrics", lambda: scraped(
        "big", condition_metric, condition="Degraded", reason="InsufficientGPU") == 1)
    assert scraped("big", condition_metric, condition="Ready", reason="") == 0
    assert scraped("big", "kuberank_operator_model_ready_replicas") == 0

    kubectl.run("delete", "rrm", "big", "--wait=true")
    wait_for("a deleted model's series gone",
             lambda: scraped("big", "kuberank_operator_model_desired_replicas") is None)
    assert scraped("fine", "kuberank_operator_model_desired_replicas") == 1


def test_a_newer_model_claiming_a_served_name_is_told_and_takes_it_once_the_older_goes(
    kubectl: Kubectl, wait_for: Wait, operator: OperatorProcess
) -> None:
    # "newer" sorts before "older" by name: only age decides who keeps the name
    kubectl.apply(model("older", resources={"gpus": 0}, servedName="shared"))
    wait_condition(wait_for, kubectl, "rrm", "older", "Ready", "True")
    # creationTimestamp has whole seconds (a tie goes to the first name): create it a second on
    created = (kubectl.get("rrm", "older") or {})["metadata"]["creationTimestamp"]
    wait_for("the next second", lambda: datetime.now(UTC).isoformat(timespec="seconds")
             .replace("+00:00", "Z") > created)
    kubectl.apply(model("newer", resources={"gpus": 0}, servedName="shared"))
    obj = wait_condition(wait_for, kubectl, "rrm", "newer", "Ready", "False", "ServedNameTaken")
    assert "already served by the older RerankModel 'older'" in condition(obj, "Ready")["message"]
    assert condition(obj, "Degraded")["reason"] == "ServedNameTaken"
    assert condition(kubectl.get("rrm", "older"), "Ready")["status"] == "True"
    events = kubectl.run(
        "get", "events", "--field-selector", "involvedObject.name=newer", "-o", "json")
    assert any(e["reason"] == "ServedNameTaken" and e["type"] == "Warning"
               for e in json.loads(events.stdout)["items"])
    # The older one goes: the newer one is told it now serves the name as soon as the deletion
    # starts (the gateway routes to it from then on), though a finalizer keeps the older one.
    def finalizers(change: Callable[[list[str]], list[str]]) -> None:
        held = (kubectl.get("rrm", "older") or {})["metadata"].get("finalizers") or []
        patch = {"metadata": {"finalizers": change(held)}}
        kubectl.run("patch", "rrm", "older", "--type=merge", "-p", json.dumps(patch))

    finalizers(lambda held: [*held, "test.kuberank.io/hold"])
    kubectl.run("delete", "rrm", "older", "--wait=false")
    wait_condition(wait_for, kubectl, "rrm", "newer", "Ready", "True")
    held = wait_condition(wait_for, kubectl, "rrm", "older", "Ready", "False", "Deleting")
    assert held["metadata"].get("deletionTimestamp")
    # A deletion someone asked for is no problem: a Normal Event (`type=Warning` lists problems).
    deleting = wait_for("the Deleting Event", lambda: json.loads(kubectl.run(
        "get", "events", "--field-selector", "reason=Deleting,involvedObject.name=older",
        "-o", "json").stdout)["items"])
    assert [e["type"] for e in deleting] == ["Normal"]
    finalizers(lambda held: [f for f in held if f != "test.kuberank.io/hold"])
    wait_for("the older one gone", lambda: kubectl.get("rrm", "older") is None)
    assert condition(kubectl.get("rrm", "newer"), "Ready")["status"] == "True"


def test_an_alias_another_model_holds_is_flagged_until_either_lets_go(
    kubectl: Kubectl, wait_for: Wait, operator: OperatorProcess
) -> None:
    def degraded_message() -> str:
        return str(condition(kubectl.get("rrm", "zeta"), "Degraded").get("message", ""))

    kubectl.apply(model("zeta", resources={"gpus": 0}, aliases=["rerank", "fine"]))
    wait_condition(wait_for, kubectl, "rrm", "zeta", "Ready", "True")
    assert condition(kubectl.get("rrm", "zeta"), "Degraded")["status"] == "False"
    # a model created later whose served name is the alias: the served name wins
    kubectl.apply(model("rerank", resources={"gpus": 0}))
    obj = wait_condition(wait_for, kubectl, "rrm", "zeta", "Degraded", "True", "AliasShadowed")
    assert "1 of its aliases: 'rerank' goes to RerankModel 'rerank' (its servedName)" in (
        condition(obj, "Degraded")["message"])
    assert condition(obj, "Ready")["status"] == "True"  # it serves, under its other names
    events = kubectl.run(
        "get", "events", "--field-selector", "involvedObject.name=zeta", "-o", "json")
    assert any(e["reason"] == "AliasShadowed" and e["type"] == "Warning"
               for e in json.loads(events.stdout)["items"])
    # an edit of the other model's aliases alone (no object created) is noticed too
    kubectl.run("patch", "rrm", "rerank", "--type=merge", "-p", '{"spec":{"aliases":["fine"]}}')
    wait_for("both aliases flagged", lambda: "2 of its aliases" in degraded_message())
    assert ("'fine' goes to RerankModel 'rerank' (which declares it too and sorts first by "
            "name)") in degraded_message()
    assert condition(kubectl.get("rrm", "rerank"), "Degraded")["status"] == "False"
    kubectl.run("patch", "rrm", "rerank", "--type=merge", "-p", '{"spec":{"aliases":null}}')
    wait_for("one alias flagged again", lambda: "1 of its aliases" in degraded_message())
    kubectl.run("delete", "rrm", "rerank", "--wait=true")
    wait_condition(wait_for, kubectl, "rrm", "zeta", "Degraded", "False")
    kubectl.run("delete", "rrm", "zeta", "--wait=true")


def test_kubectl_scale_changes_replicas_and_adds_a_pdb(
    kubectl: Kubectl, wait_for: Wait, operator: OperatorProcess
) -> None:
    ready_cpu_model(kubectl, wait_for, "cpu")
    kubectl.run("scale", "rrm", "cpu", "--replicas=3")
    obj = wait_for(
        "3 ready replicas",
        lambda: (
            (o := kubectl.get("rrm", "cpu"))
            and o["status"].get("readyReplicas") == 3
            and condition(o, "Ready").get("status") == "True"
            and o
        ),
    )
    assert obj["status"]["replicas"] == 3
    dep = kubectl.get("deployment", "rrm-cpu")
    assert dep is not None and dep["spec"]["replicas"] == 3
    assert wait_for("PDB", lambda: kubectl.get("pdb", "rrm-cpu"))["spec"]["maxUnavailable"] == 1
    kubectl.run("scale", "rrm", "cpu", "--replicas=1")
    wait_for("PDB removed", lambda: kubectl.get("pdb", "rrm-cpu") is None)


def test_horizontal_pod_autoscaler_scales_the_model_through_its_scale_subresource(
    kubectl: Kubectl, wait_for: Wait, operator: OperatorProcess
) -> None:
    ready_cpu_model(kubectl, wait_for, "auto")
    kubectl.apply({
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "auto"},
        "spec": {
            "scaleTargetRef": {"apiVersion": "kuberank.io/v1alpha1", "kind": "RerankModel",
                               "name": "auto"},
            "minReplicas": 2, "maxReplicas": 3,
            "metrics": [{"type": "Resource", "resource": {
                "name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}}],
        },
    })
    # The controller-manager's HPA controller raises the model to minReplicas (no metrics are
    # needed for that); the operator then rolls the Deployment out to two ready replicas.
    wait_for(
        "the HPA to scale the model to 2 ready replicas",
        lambda: (o := kubectl.get("rrm", "auto")) and o["spec"].get("replicas") == 2
        and o["status"].get("readyReplicas") == 2,
        timeout=120,
    )
    hpa = kubectl.get("hpa", "auto")
    assert hpa is not None
    able = condition(hpa, "AbleToScale")
    assert able.get("status") == "True", hpa.get("status")
    assert hpa["status"]["currentReplicas"] >= 1
    assert wait_for("PDB", lambda: kubectl.get("pdb", "rrm-auto"))["spec"]["maxUnavailable"] == 1


def test_idle_model_with_scale_to_zero_goes_to_zero_once_requests_stop(
    kubectl: Kubectl, wait_for: Wait, operator: OperatorProcess, namespace: str
) -> None:
    idle = {"afterIdleSeconds": 10}
    kubectl.apply(model("idle", resources={"gpus": 0}, replicas=2, scaleToZero=idle))
    wait_for("Deployment", lambda: kubectl.get("deployment", "rrm-idle"))

    def record_request() -> None:  # what the gateway writes for each model it forwards to
        stamp = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        patch = json.dumps({"status": {"lastRequestTime": stamp}})
        kubectl.run("patch", "rrm", "idle", "--subresource=status", "--type=merge", "-p", patch)

    # Requests every 2 s keep it up well past its 10 s idle spell.
    busy_until = time.monotonic() + 16
    while time.monotonic() < busy_until:
        record_request()
        obj = kubectl.get("rrm", "idle")
        assert obj is not None and obj["spec"]["replicas"] == 2
        time.sleep(2)  # the pace of a client, not a wait for a result
    last_request = time.monotonic() - 2

    obj = wait_condition(wait_for, kubectl, "rrm", "idle", "Available", "False", "ScaledToZero")
    assert obj["spec"]["replicas"] == 0
    assert time.monotonic() - last_request >= 9, "scaled down before its idle spell ended"
    assert "next request through the gateway wakes it" in condition(obj, "Ready")["message"]
    assert obj["status"]["lastRequestTime"], "the operator's status writes keep the gateway's field"
    dep = wait_for("Deployment at 0", lambda: (d := kubectl.get("deployment", "rrm-idle"))
                   and d["spec"]["replicas"] == 0 and d)
    assert dep["spec"]["replicas"] == 0
    events = kubectl.run(
        "get", "events", "--field-selector", "involvedObject.name=idle", "-o", "json"
    )
    scaled = [e for e in json.loads(events.stdout)["items"]
              if e["reason"] in ("ScaledToZero", "IdleScaleDown")]
    assert {e["type"] for e in scaled} == {"Normal"}, "an idle model is not a warning"
    # one Event for the scale-down, one for the Ready transition (not one per child event)
    assert sorted((e["reason"], e["message"]) for e in scaled) == [
        ("IdleScaleDown", "No request for 10 s: scaled from 2 to 0 replicas."),
        ("ScaledToZero",
         "Idle, so scaled to 0 replicas; the next request through the gateway wakes it."),
    ]

    # Scaled up by hand, it gets a whole idle spell again before going back to zero; so does a
    # further scale-up from 1 to 2 half-way through that spell.
    kubectl.run("scale", "rrm", "idle", "--replicas=1")
    wait_for("Deployment at 1", lambda: kubectl.get("deployment", "rrm-idle")["spec"]["replicas"])
    time.sleep(5)  # half the spell gone: the moment of the next scale-up, not a wait for a result
    kubectl.run("scale", "rrm", "idle", "--replicas=2")
    scaled_up = time.monotonic()
    wait_for("back to zero", lambda: kubectl.get("rrm", "idle")["spec"]["replicas"] == 0)
    assert time.monotonic() - scaled_up >= 9
    assert operator_sample(operator, "kuberank_operator_scalings_total", namespace=namespace,
                           name="idle", reason="idle") == 2


def test_autoscaling_follows_the_load_the_gateways_report(
    kubectl: Kubectl, wait_for: Wait, operator: OperatorProcess
) -> None:
    policy = {"minReplicas": 1, "maxReplicas": 4, "targetInFlight": 2,
              "scaleDownDelaySeconds": 10}
    kubectl.apply(model("auto", resources={"gpus": 0}, autoscaling=policy))
    wait_for("Deployment", lambda: kubectl.get("deployment", "rrm-auto"))

    def report(**loads: float) -> None:  # what each gateway replica writes for its own traffic
        now = datetime.now(UTC)
        entries = {gateway: {"inFlight": load, "time": now.isoformat().replace("+00:00", "Z")}
                   for gateway, load in loads.items()}
        entries["gw-long-gone"] = {"inFlight": 50, "time": "2026-01-01T00:00:00Z"}
        patch = json.dumps({"status": {"gatewayLoad": entries}})
        kubectl.run("patch", "rrm", "auto", "--subresource=status", "--type=merge", "-p", patch)

    def replicas() -> int:
        obj = kubectl.get("rrm", "auto")
        assert obj is not None
        return int(obj["spec"]["replicas"])

    report(**{"gw-a": 3.5, "gw-b": 2.0})  # 5.5 in flight, 2 per replica wanted: 3 replicas
    wait_for("scaled up to 3", lambda: replicas() == 3, timeout=30)
    obj = kubectl.get("rrm", "auto")
    assert obj is not None and "gw-long-gone" not in obj["status"].get("gatewayLoad", {}), (
        "a gateway silent for 10 minutes is forgotten")
    dep = wait_for("Deployment at 3", lambda: (d := kubectl.get("deployment", "rrm-auto"))
                   and d["spec"]["replicas"] == 3 and d)
    assert dep["spec"]["replicas"] == 3

    report(**{"gw-a": 0.0, "gw-b": 0.0})
    quiet = time.monotonic()
    wait_for("back to 1", lambda: replicas() == 1, timeout=60)
    assert time.monotonic() - quiet >= 8, "scaled down before scaleDownDelaySeconds"
    events = kubectl.run(
        "get", "events", "--field-selector", "involvedObject.name=auto", "-o", "json"
    )
    messages = [e["message"] for e in json.loads(events.stdout)["items"]
                if e["reason"] == "Autoscaled"]
    assert "5.5 requests in flight (2 per replica wanted): 1 -> 3 replicas." in messages
    assert any(m.endswith("3 -> 1 replicas.") for m in messages), messages


def test_model_with_a_cache_claim_runs_with_the_claim_mounted(
    kubectl: Kubectl, wait_for: Wait, operator: OperatorProcess, namespace: str
) -> None:
    volume = f"cache-{namespace}"
    kubectl.apply({
        "apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": volume},
        "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteMany"],
                 "storageClassName": "manual", "hostPath": {"path": f"/tmp/{volume}"},
                 "claimRef": {"namespace": namespace, "name": "model-cache"}},
    })
    try:
        kubectl.apply({
            "apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": "model-cache"},
            "spec": {"accessModes": ["ReadWriteMany"], "storageClassName": "manual",
                     "resources": {"requests": {"storage": "1Gi"}}},
        })
        kubectl.apply(model("cached", replicas=2, resources={"gpus": 0},
                            cache={"claimName": "model-cache"}))
        # The scheduler places pods with a claim only once the claim is bound, so Ready proves
        # the whole path: the claim bound, the pods scheduled and running with it.
        wait_condition(wait_for, kubectl, "rrm", "cached", "Ready", "True")
        template = kubectl.get("deployment", "rrm-cached")["spec"]["template"]["spec"]
        assert {"name": "cache", "persistentVolumeClaim": {"claimName": "model-cache"}} in [
            {k: v for k, v in vol.items() if k in ("name", "persistentVolumeClaim")}
            for vol in template["volumes"]]
        assert template["initContainers"][0]["args"][-2:] == ["--cache", "/cache"]
    finally:
        kubectl.run("delete", "rrm", "cached", "--wait=false", check=False)
        kubectl.run("delete", "pv", volume, "--wait=false", check=False)


def test_missing_cache_claim_is_named_in_the_conditions(
    kubectl: Kubectl, wait_for: Wait, operator: OperatorProcess
) -> None:
    kubectl.apply(model("nocache", resources={"gpus": 0}, cache={"claimName": "absent"}))
    obj = wait_condition(wait_for, kubectl, "rrm", "nocache", "Ready", "False", "ClaimNotReady")
    message = condition(obj, "Ready")["message"]
    assert '"absent"' in message and "spec.cache" in message, message


def test_spec_update_rolls_the_deployment(
    kubectl: Kubectl, wait_for: Wait, operator: OperatorProcess
) -> None:
    before = ready_cpu_model(kubectl, wait_for, "roll")
    kubectl.run(
        "patch",
        "rrm",
        "roll",
        "--type=merge",
        "-p",
        json.dumps({"spec": {"limits": {"maxDocuments": 7}}}),
    )

    def rolled() -> dict[str, Any] | None:
        dep = kubectl.get("deployment", "rrm-roll")
        env = dep["spec"]["template"]["spec"]["containers"][0]["env"] if dep else []
        return dep if {"name": "KUBERANK_MAX_DOCUMENTS", "value": "7"} in env else None

    after = wait_for("new pod template", rolled)
    assert after["metadata"]["generation"] > before["metadata"]["generation"]
    # Ready=True of the spec before stands (observedGeneration behind) until the Deployment
    # controller has taken the new one: wait for the status of this very generation.
    obj = wait_for("Ready for the new generation", lambda: (
        (o := kubectl.get("rrm", "roll")) is not None
        and o["status"].get("observedGeneration") == o["metadata"]["generation"]
        and condition(o, "Ready").get("status") == "True" and o))
    assert obj["status"]["observedGeneration"] == obj["metadata"]["generation"]


def test_deleting_the_model_removes_its_children(
    kubectl: Kubectl, wait_for: Wait, operator: OperatorProcess
) -> None:
    kubectl.apply(model("gone", resources={"gpus": 0}, replicas=2))
    wait_for(
        "children", lambda: kubectl.get("pdb", "rrm-gone") and kubectl.get("service", "rrm-gone")
    )
    kubectl.run("delete", "rrm", "gone", "--wait=true")
    for kind in ("deployment", "service", "networkpolicy", "pdb"):
        wait_for(
            f"{kind} garbage-collected", lambda kind=kind: kubectl.get(kind, "rrm-gone") is None
        )


def test_deleted_service_is_recreated_and_reconcile_is_idempotent(
    kubectl: Kubectl, wait_for: Wait, operator: OperatorProcess
) -> None:
    ready_cpu_model(kubectl, wait_for, "drift")
    old = kubectl.get("service", "rrm-drift")
    assert old is not None
    kubectl.run("delete", "service", "rrm-drift")
    new = wait_for(
        "service recreated",
        lambda: (
            (s := kubectl.get("service", "rrm-drift"))
            and s["metadata"]["uid"] != old["metadata"]["uid"]
            and s
        ),
    )
    assert new["spec"]["ports"][0]["name"] == "http"
    # Re-running the reconciler (an annotation change triggers it) leaves every child untouched.
    versions = {
        k: kubectl.get(k, "rrm-drift")["metadata"]["resourceVersion"]
        for k in ("deployment", "service", "networkpolicy")
    }  # type: ignore[index]
    touch_and_wait_for_reconcile(kubectl, wait_for, "rrm", "drift")
    again = {k: kubectl.get(k, "rrm-drift")["metadata"]["resourceVersion"] for k in versions}  # type: ignore[index]
    assert again == versions


def test_edits_of_children_by_other_writers_are_reverted(
    kubectl: Kubectl, wait_for: Wait, operator: OperatorProcess
) -> None:
    dep = ready_cpu_model(kubectl, wait_for, "edited")
    image = dep["spec"]["template"]["spec"]["containers"][0]["image"]
    kubectl.run("scale", "deployment", "rrm-edited", "--replicas=3")
    kubectl.run("set", "image", "deployment/rrm-edited", "runtime=example.com/other:1")
    kubectl.run("patch", "service", "rrm-edited", "--type=merge",
                "-p", '{"spec":{"ports":[{"name":"http","port":9999,"targetPort":"http"}]}}')

    def reverted() -> bool:
        d, svc = kubectl.get("deployment", "rrm-edited"), kubectl.get("service", "rrm-edited")
        return bool(
            d and svc
            and d["spec"]["replicas"] == 1
            and d["spec"]["template"]["spec"]["containers"][0]["image"] == image
            and [p["port"] for p in svc["spec"]["ports"]] == [8080]
        )

    wait_for("edits reverted", reverted)
    # A metadata-only change (a label) is not the operator's to revert, and rolls nothing.
    kubectl.run("label", "deployment", "rrm-edited", "example.com/team=search")
    generation = kubectl.get("deployment", "rrm-edited")["metadata"]["generation"]  # type: ignore[index]
    touch_and_wait_for_reconcile(kubectl, wait_for, "rrm", "edited")
    after = kubectl.get("deployment", "rrm-edited")
    assert after is not None and after["metadata"]["generation"] == generation
    assert after["metadata"]["labels"]["example.com/team"] == "search"


def test_rollout_restart_is_kept_when_other_edits_are_reverted(
    kubectl: Kubectl, wait_for: Wait, operator: OperatorProcess
) -> None:
    ready_cpu_model(kubectl, wait_for, "restarted")
    kubectl.run("rollout", "restart", "deployment/rrm-restarted")
    kubectl.run("scale", "deployment", "rrm-restarted", "--replicas=2")

    def stamp_after_revert() -> str | None:
        d = kubectl.get("deployment", "rrm-restarted") or {}
        if d.get("spec", {}).get("replicas") != 1:
            return None
        annotations = d["spec"]["template"]["metadata"].get("annotations") or {}
        assert "kubectl.kubernetes.io/restartedAt" in annotations, annotations
        return str(annotations["kubectl.kubernetes.io/restartedAt"])

    stamp = wait_for("scale reverted", stamp_after_revert)
    touch_and_wait_for_reconcile(kubectl, wait_for, "rrm", "restarted")
    assert stamp_after_revert() == stamp


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"source": {}}, "exactly one of huggingFace, url, pvc"),
        (
            {
                "source": {
                    "url": {"url": "https://x/m.gguf", "sha256": SHA},
                    "pvc": {"claimName": "c", "path": "m"},
                }
            },
            "exactly one",
        ),
        ({"source": {"url": {"url": "https://x/m.gguf", "sha256": "short"}}}, "sha256"),
        ({"source": {"url": {"sha256": SHA}}}, "exactly one of url, urlSecretRef"),
        ({"source": {"url": {"url": "https://x/m.gguf", "urlSecretRef": {"name": "s"},
                             "sha256": SHA}}}, "exactly one of url, urlSecretRef"),
        (
            {"source": {"pvc": {"claimName": "c", "path": "m"}}, "limits": {"overflow": "explode"}},
            "overflow",
        ),
        ({"source": {"pvc": {"claimName": "c", "path": "m"}}, "resources": {"gpus": -1}}, "gpus"),
        ({"source": {"pvc": {"claimName": "c", "path": "m"}}, "aliases": ["a", "a"]}, "aliases"),
        ({"source": {"pvc": {"claimName": "c", "path": "m"}}, "aliases": ["-x"]}, "aliases"),
        ({"source": {"pvc": {"claimName": "c", "path": "m"}},
          "scaleToZero": {"afterIdleSeconds": 5}}, "afterIdleSeconds"),
        ({"source": {"pvc": {"claimName": "c", "path": "m"}},
          "limits": {"timeoutSeconds": 0}}, "timeoutSeconds"),
    ],
)
def test_invalid_models_are_rejected_by_the_api_server(
    kubectl: Kubectl, wait_for: Wait, crds: object, spec: dict[str, Any], message: str
) -> None:
    doc = {
        "apiVersion": "kuberank.io/v1alpha1",
        "kind": "RerankModel",
        "metadata": {"name": "bad"},
        "spec": spec,
    }
    proc = kubectl.apply(doc, check=False)
    assert proc.returncode != 0 and message in proc.stderr


@pytest.mark.parametrize("name", ["a" * 60, "bge.v2"])
def test_model_names_no_child_could_carry_are_refused_by_the_api_server(
    kubectl: Kubectl, crds: object, name: str
) -> None:
    proc = kubectl.apply(model(name), check=False)
    assert proc.returncode != 0 and "its Service is rrm-<name>" in proc.stderr
    kubectl.apply(model("a" * 59))  # the longest that fits


def test_apikey_names_longer_than_a_label_value_are_refused(kubectl: Kubectl, crds: object) -> None:
    key = {"apiVersion": "kuberank.io/v1alpha1", "kind": "ApiKey", "metadata": {"name": "k" * 64},
           "spec": {}}
    proc = kubectl.apply(key, check=False)
    assert proc.returncode != 0 and "at most 63 characters" in proc.stderr


def test_objects_the_operator_did_not_create_are_never_taken_over(
    kubectl: Kubectl, wait_for: Wait, operator: OperatorProcess
) -> None:
    # A team's own Service and Secret carry the names the model's and the key's children need.
    kubectl.run("create", "service", "clusterip", "rrm-mine", "--tcp=5432:5432")
    kubectl.run("create", "secret", "generic", "mine-key", "--from-literal=password=precious")
    kubectl.run("create", "pdb", "rrm-mine", "--selector=app=theirs", "--min-available=1")
    kubectl.apply({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                   "metadata": {"name": "rrm-mine"},
                   "spec": {"podSelector": {"matchLabels": {"app": "theirs"}}}})
    kubectl.apply(model("mine", resources={"gpus": 0}))
    kubectl.apply({"apiVersion": "kuberank.io/v1alpha1", "kind": "ApiKey",
                   "metadata": {"name": "mine"}, "spec": {}})
    obj = wait_condition(wait_for, kubectl, "rrm", "mine", "Ready", "False", "NameConflict")
    # Every name held is said at once (one a retry round, each, before).
    said = condition(obj, "Ready")["message"]
    assert "Service rrm-mine already exists" in said
    assert "NetworkPolicy rrm-mine already exists" in said
    assert "endpoint" not in obj["status"]  # rrm-mine.default.svc is the team's Service
    key = wait_condition(wait_for, kubectl, "ak", "mine", "Active", "False", "NameConflict")
    assert "Secret mine-key already exists" in condition(key, "Active")["message"]
    assert "keyId" not in key["status"]
    # Nothing was written: not the model's other children, not the team's objects.
    assert kubectl.get("deployment", "rrm-mine") is None
    service, secret = kubectl.get("service", "rrm-mine"), kubectl.get("secret", "mine-key")
    assert service is not None and secret is not None
    assert [p["port"] for p in service["spec"]["ports"]] == [5432]
    assert set(secret["data"]) == {"password"}
    assert not service["metadata"].get("ownerReferences")
    assert not secret["metadata"].get("ownerReferences")
    events = kubectl.run("get", "events", "--field-selector", "reason=NameConflict",
                         "-o", "json").stdout
    assert {e["involvedObject"]["kind"] for e in json.loads(events)["items"]} == {
        "RerankModel", "ApiKey"}
    # Deleting the key leaves the team's Secret; once their Service is gone the model starts.
    kubectl.run("delete", "ak", "mine", "--wait=true")
    kubectl.run("delete", "service", "rrm-mine")
    kubectl.run("delete", "networkpolicy", "rrm-mine")
    wait_condition(wait_for, kubectl, "rrm", "mine", "Ready", "True", timeout=60)
    assert kubectl.get("secret", "mine-key") is not None
    # One replica wants no PDB: the model removes its own, never the team's of that name.
    pdb = kubectl.get("pdb", "rrm-mine")
    assert pdb is not None and pdb["spec"]["selector"]["matchLabels"] == {"app": "theirs"}


def test_a_model_and_a_key_recreated_over_what_they_left_behind_take_it_back(
    kubectl: Kubectl, wait_for: Wait, operator: OperatorProcess
) -> None:
    """``kubectl delete --cascade=orphan`` then the same object again (to change an immutable
    servedName, or an orphaning prune): both stopped NameConflict, the model over its own
    running pods (an outage), the key over the Secret its clients' key is in."""
    ready_cpu_model(kubectl, wait_for, "phoenix")
    key_doc = {"apiVersion": "kuberank.io/v1alpha1", "kind": "ApiKey",
               "metadata": {"name": "phoenix"}, "spec": {}}
    kubectl.apply(key_doc)
    key_id = wait_condition(wait_for, kubectl, "ak", "phoenix", "Active", "True",
                            "Valid")["status"]["keyId"]
    plain = _secret_key(kubectl, "phoenix")
    left = kubectl.get("deployment", "rrm-phoenix")
    assert left is not None
    for kind in ("rrm", "ak"):
        kubectl.run("delete", kind, "phoenix", "--cascade=orphan", "--wait=true")
    wait_for("the children orphaned", lambda: not any(
        (kubectl.get(kind, name) or {}).get("metadata", {}).get("ownerReferences")
        for kind, name in (("deployment", "rrm-phoenix"), ("secret", "phoenix-key"))))
    kubectl.apply(model("phoenix", resources={"gpus": 0}))
    kubectl.apply(key_doc)
    wait_condition(wait_for, kubectl, "rrm", "phoenix", "Ready", "True")
    key = wait_condition(wait_for, kubectl, "ak", "phoenix", "Active", "True", "Valid")
    assert key["status"]["keyId"] == key_id and _secret_key(kubectl, "phoenix") == plain
    again = kubectl.get("deployment", "rrm-phoenix")
    owner = kubectl.get("rrm", "phoenix")
    assert again is not None and owner is not None
    assert again["metadata"]["uid"] == left["metadata"]["uid"]  # the same pods serve on
    assert [r["uid"] for r in again["metadata"]["ownerReferences"] if r.get("controller")] == [
        owner["metadata"]["uid"]]


def test_served_name_is_immutable_and_wildcard_keys_stand_alone(
    kubectl: Kubectl, wait_for: Wait, crds: object
) -> None:
    kubectl.apply(model("imm", servedName="a"))
    proc = kubectl.apply(model("imm", servedName="b"), check=False)
    assert proc.returncode != 0 and "servedName is immutable" in proc.stderr
    # Writing the default out (the model's own name), or leaving it out again, changes nothing.
    kubectl.apply(model("dflt"))
    kubectl.apply(model("dflt", servedName="dflt"))
    kubectl.apply(model("dflt"))
    proc = kubectl.apply(model("dflt", servedName="other"), check=False)
    assert proc.returncode != 0 and "servedName is immutable" in proc.stderr
    key = {
        "apiVersion": "kuberank.io/v1alpha1",
        "kind": "ApiKey",
        "metadata": {"name": "k"},
        "spec": {"models": ["*", "a"]},
    }
    proc = kubectl.apply(key, check=False)
    assert proc.returncode != 0 and "cannot be combined" in proc.stderr
    proc = kubectl.apply({**key, "spec": {"models": ["a", "a"]}}, check=False)
    assert proc.returncode != 0 and "models: a name is given twice" in proc.stderr
    proc = kubectl.apply({**key, "spec": {"models": ["a", ""]}}, check=False)
    assert proc.returncode != 0 and "spec.models[1]" in proc.stderr
    # A name no model could be served under (servedName and aliases have a pattern).
    proc = kubectl.apply({**key, "spec": {"models": ["a", "a b"]}}, check=False)
    assert proc.returncode != 0 and "spec.models[1]" in proc.stderr
    kubectl.apply({**key, "spec": {"models": ["BAAI/bge-reranker-v2-m3", "rerank-v3.5"]}})


def test_a_quantity_that_is_none_is_refused_by_the_api_server(kubectl: Kubectl, crds: object,
                                                              ) -> None:
    """"4GB" was admitted and refused only minutes later in the model's status."""
    for field, value in (("memory", "4GB"), ("cpu", "abc"), ("memory", "lots")):
        proc = kubectl.apply(model("oops", resources={"gpus": 0, field: value}), check=False)
        assert proc.returncode != 0 and f"spec.resources.{field}" in proc.stderr, proc.stderr
    accepted = kubectl.run("apply", "--dry-run=server", "-f", "-", check=False, stdin=json.dumps(
        model("fine", resources={"gpus": 0, "memory": "1e9", "cpu": 2})))
    assert accepted.returncode == 0, accepted.stderr


def test_an_unusable_spec_is_a_permanent_condition_not_a_crash(
    kubectl: Kubectl, wait_for: Wait, operator: OperatorProcess
) -> None:
    kubectl.apply(model("oops", resources={"gpus": 0},
                        engine={"env": [{"name": "KUBERANK_PORT", "value": "9"}]}))
    obj = wait_condition(wait_for, kubectl, "rrm", "oops", "Degraded", "True", "InvalidSpec")
    assert "KUBERANK_PORT: the operator sets" in condition(obj, "Degraded")["message"]
    assert kubectl.get("deployment", "rrm-oops") is None
    assert operator.alive()
    # The log line names the model (with many models, which one failed could not be told).
    failed = [line for line in operator.logs().splitlines() if "failed permanently" in line]
    assert failed and all(f"[{kubectl.namespace}/oops]" in line for line in failed), failed


def test_a_change_that_cannot_be_applied_leaves_the_running_replicas_reported(
    kubectl: Kubectl, wait_for: Wait, operator: OperatorProcess
) -> None:
    """The status of a running model given an unusable edit said 0 of 0 replicas and "Nothing
    of the model could be applied" while the spec before served on; a fixed spec recovers."""
    ready_cpu_model(kubectl, wait_for, "steady")
    kubectl.run("patch", "rrm", "steady", "--type", "merge", "-p",
                '{"spec": {"engine": {"extraArgs": ["--port=9"]}}}')
    obj = wait_condition(wait_for, kubectl, "rrm", "steady", "Ready", "False", "InvalidSpec")
    assert (obj["status"]["replicas"], obj["status"]["readyReplicas"]) == (1, 1)
    assert condition(obj, "Available")["status"] == "True"
    assert "keeps the spec before" in condition(obj, "Progressing")["message"]
    scale = json.loads(kubectl.run("get", "--raw", "/apis/kuberank.io/v1alpha1/namespaces/"
                                   f"{kubectl.namespace}/rerankmodels/steady/scale").stdout)
    assert scale["status"]["replicas"] == 1
    assert operator_sample(operator, "kuberank_operator_model_ready_replicas",
                           name="steady") == 1
    kubectl.run("patch", "rrm", "steady", "--type", "json", "-p",
                '[{"op": "remove", "path": "/spec/engine/extraArgs"}]')
    wait_condition(wait_for, kubectl, "rrm", "steady", "Ready", "True")


def _secret_key_or_none(kubectl: Kubectl, name: str) -> str | None:
    secret = kubectl.get("secret", f"{name}-key")
    return None if secret is None else base64.b64decode(secret["data"]["api-key"]).decode()


def _secret_key(kubectl: Kubectl, name: str) -> str:
    key = _secret_key_or_none(kubectl, name)
    assert key is not None
    return key


def test_apikey_lifecycle(kubectl: Kubectl, wait_for: Wait, operator: OperatorProcess) -> None:
    doc = {
        "apiVersion": "kuberank.io/v1alpha1",
        "kind": "ApiKey",
        "metadata": {"name": "ci"},
        "spec": {"models": ["bge"]},
    }
    kubectl.apply(doc)
    obj = wait_condition(wait_for, kubectl, "ak", "ci", "Active", "True")
    key = _secret_key(kubectl, "ci")
    parsed = parse_key(key)
    assert parsed is not None
    assert obj["status"]["keyId"] == parsed.key_id
    assert verify_secret(parsed.secret, obj["status"]["digest"])
    secret = kubectl.get("secret", "ci-key")
    assert (
        secret is not None
        and secret["metadata"]["ownerReferences"][0]["uid"] == obj["metadata"]["uid"]
    )
    # The plain secret is nowhere but the Secret: not in the object, events or operator log.
    events = kubectl.run("get", "events", "-o", "json").stdout
    assert parsed.secret not in json.dumps(obj) and parsed.secret not in events
    assert parsed.secret not in operator.logs()

    # Reconciling again keeps the key.
    touch_and_wait_for_reconcile(kubectl, wait_for, "ak", "ci")
    assert _secret_key(kubectl, "ci") == key

    kubectl.run("patch", "ak", "ci", "--type=merge", "-p", '{"spec":{"disabled":true}}')
    wait_condition(wait_for, kubectl, "ak", "ci", "Active", "False", "Disabled", timeout=30)
    wait_condition(wait_for, kubectl, "ak", "ci", "Disabled", "True", timeout=5)
    kubectl.run("patch", "ak", "ci", "--type=merge", "-p", '{"spec":{"disabled":false}}')
    wait_condition(wait_for, kubectl, "ak", "ci", "Active", "True", timeout=30)

    soon = (datetime.now(UTC) + timedelta(seconds=6)).strftime("%Y-%m-%dT%H:%M:%SZ")
    kubectl.run(
        "patch", "ak", "ci", "--type=merge", "-p", json.dumps({"spec": {"expiresAt": soon}})
    )
    wait_condition(wait_for, kubectl, "ak", "ci", "Active", "True", timeout=5)
    wait_condition(wait_for, kubectl, "ak", "ci", "Expired", "True", "PastExpiry", timeout=30)

    kubectl.run("annotate", "ak", "ci", "kuberank.io/rotate=1")
    rotated = wait_for(
        "rotated key",
        lambda: (o := kubectl.get("ak", "ci")) and o["status"].get("keyId") != parsed.key_id and o,
    )
    new = parse_key(_secret_key(kubectl, "ci"))
    assert new is not None and new.key_id == rotated["status"]["keyId"]
    assert verify_secret(new.secret, rotated["status"]["digest"])
    assert not verify_secret(parsed.secret, rotated["status"]["digest"])

    kubectl.run("delete", "ak", "ci", "--wait=true")
    wait_for("key Secret garbage-collected", lambda: kubectl.get("secret", "ci-key") is None)


def test_a_rotation_the_api_server_refuses_stops_the_old_key_and_says_so(
    kubectl: Kubectl, wait_for: Wait, operator: OperatorProcess
) -> None:
    """An emergency rotation whose Secret the API server refused (here: made immutable) left
    the old key accepted and the status saying Valid, with a log line as the only trace."""
    kubectl.apply({"apiVersion": "kuberank.io/v1alpha1", "kind": "ApiKey",
                   "metadata": {"name": "stuck"}, "spec": {}})
    old = wait_condition(wait_for, kubectl, "ak", "stuck", "Active", "True", "Valid")
    old_id = old["status"]["keyId"]
    kubectl.run("patch", "secret", "stuck-key", "--type", "merge", "-p", '{"immutable": true}')
    kubectl.run("annotate", "ak", "stuck", "kuberank.io/rotate=r2")
    refused = wait_condition(wait_for, kubectl, "ak", "stuck", "Active", "False", "ChildRefused")
    said = condition(refused, "Active")["message"]
    assert "kuberank.io/rotate=r2" in said and "immutable" in said
    assert f"key id {old_id} is no longer accepted" in said
    assert "keyId" not in refused["status"] and "digest" not in refused["status"]
    events = json.loads(kubectl.run("get", "events", "--field-selector",
                                    "reason=ChildRefused,involvedObject.name=stuck",
                                    "-o", "json").stdout)["items"]
    assert [e["type"] for e in events] == ["Warning"]
    # What stood in the way gone, the rotation is carried out: a new key, the old one gone.
    kubectl.run("delete", "secret", "stuck-key")
    rotated = wait_condition(wait_for, kubectl, "ak", "stuck", "Active", "True", "Valid")
    fresh = parse_key(_secret_key(kubectl, "stuck"))
    assert fresh is not None and fresh.key_id == rotated["status"]["keyId"] != old_id
    assert rotated["status"]["rotation"] == "r2"


def test_a_key_naming_a_model_nobody_serves_gets_a_warning(
    kubectl: Kubectl, wait_for: Wait, operator: OperatorProcess
) -> None:
    """A mistyped name in spec.models: Active all the same, and a Warning that names it (as
    written, and again when spec.models is edited)."""
    kubectl.apply({"apiVersion": "kuberank.io/v1alpha1", "kind": "RerankModel",
                   "metadata": {"name": "minilm"},
                   "spec": {"source": {"url": {"url": "https://models.example/m.gguf",
                                               "sha256": "0" * 64}},
                            "resources": {"gpus": 0}, "aliases": ["ms-marco"]}})
    kubectl.apply({"apiVersion": "kuberank.io/v1alpha1", "kind": "ApiKey",
                   "metadata": {"name": "typo"}, "spec": {"models": ["minilm", "minlm"]}})
    wait_condition(wait_for, kubectl, "ak", "typo", "Active", "True")

    def warnings() -> list[str]:
        found = json.loads(kubectl.run("get", "events", "--field-selector",
                                       "reason=UnknownModel,involvedObject.name=typo",
                                       "-o", "json").stdout)["items"]
        return sorted(e["message"] for e in found)

    said = wait_for("an UnknownModel Warning", warnings)
    assert said == ["spec.models names 'minlm', which no RerankModel in namespace "
                    f"{kubectl.namespace} serves (yet): requests for it are answered 404 until "
                    "one does. A typo?"]
    kubectl.run("patch", "ak", "typo", "--type=merge",
                "-p", '{"spec": {"models": ["ms-marco", "bge"]}}')
    said = wait_for("a second Warning", lambda: (w := warnings()) and len(w) == 2 and w)
    assert "names 'bge'," in said[0], said  # the alias is served


def test_a_rotations_key_written_before_the_operator_stopped_is_the_one_published(
    kubectl: Kubectl, wait_for: Wait, operator_with: Callable[..., OperatorProcess]
) -> None:
    """A rotation's key is written into the Secret before its digest is published. An operator
    stopped in between minted yet another key when it came back, and clients that had already
    read the first got 401 however soon they retried."""
    @contextlib.contextmanager
    def operator_running() -> Iterator[None]:
        op = operator_with()
        try:
            yield
        finally:
            op.stop()

    def rotation_published(rotation: str) -> dict[str, Any]:
        obj: dict[str, Any] = wait_for(f"rotation {rotation} published", lambda: (
            o := kubectl.get("ak", "resume")) and o["status"].get("rotation") == rotation and o)
        return obj

    with operator_running():
        kubectl.apply({"apiVersion": "kuberank.io/v1alpha1", "kind": "ApiKey",
                       "metadata": {"name": "resume"}, "spec": {}})
        first = wait_condition(wait_for, kubectl, "ak", "resume", "Active", "True")
    owner = Owner(kind="ApiKey", name="resume", namespace=str(kubectl.namespace),
                  uid=first["metadata"]["uid"])

    def stopped_after_writing(key: str, minted_for: str, rotate: str) -> None:
        """What the operator leaves when stopped between the two writes of a rotation."""
        kubectl.run("apply", "--server-side", "--force-conflicts",
                    "--field-manager=kuberank-operator", "-f", "-",
                    stdin=json.dumps(build_secret(owner, key, minted_for)))
        kubectl.run("annotate", "--overwrite", "ak", "resume", f"kuberank.io/rotate={rotate}")

    pending = "kr_00000000000000aa_" + "7" * 32
    stopped_after_writing(pending, "r2", rotate="r2")
    with operator_running():
        done = rotation_published("r2")
        assert done["status"]["keyId"] == "00000000000000aa"
        assert verify_secret("7" * 32, done["status"]["digest"])
        assert _secret_key(kubectl, "resume") == pending
        assert condition(done, "Active")["status"] == "True"
    # A key minted for another rotation is no answer to this one: a fresh key is minted.
    stale = "kr_00000000000000bb_" + "8" * 32
    stopped_after_writing(stale, "r2", rotate="r3")
    with operator_running():
        fresh = rotation_published("r3")
        assert fresh["status"]["keyId"] not in ("00000000000000aa", "00000000000000bb")
        held = parse_key(_secret_key(kubectl, "resume"))
        assert held is not None and held.key_id == fresh["status"]["keyId"]
        secret = kubectl.get("secret", "resume-key") or {}
        assert secret["metadata"]["annotations"]["kuberank.io/minted-for-rotation"] == "r3"
        kubectl.run("delete", "ak", "resume", "--wait=true")  # its finalizer needs the operator


def test_a_keys_status_follows_each_edit_of_expiry_and_disabled_without_flapping(
    kubectl: Kubectl, wait_for: Wait, operator: OperatorProcess
) -> None:
    """The expiry daemon wrote status from the spec it read before its nap: after an edit the
    status flipped back to what the old spec said for a few seconds (Expired, Valid, Expired),
    an Event each time, while the gateway already enforced the new spec."""
    kubectl.apply({"apiVersion": "kuberank.io/v1alpha1", "kind": "ApiKey",
                   "metadata": {"name": "steady"}, "spec": {"expiresAt": _in(3600)}})
    wait_condition(wait_for, kubectl, "ak", "steady", "Active", "True", "Valid", timeout=30)

    def holds(reason: str) -> None:
        wait_condition(wait_for, kubectl, "ak", "steady", "Active", "False" if reason != "Valid"
                       else "True", reason, timeout=30)
        deadline = time.monotonic() + 7  # longer than the daemon's naps (5 s)
        while time.monotonic() < deadline:
            said = condition(kubectl.get("ak", "steady"), "Active").get("reason")
            assert said == reason, f"Active went back to {said} after the edit to {reason}"
            time.sleep(0.5)

    for spec, reason in (({"expiresAt": _in(-60)}, "Expired"), ({"expiresAt": _in(3600)}, "Valid"),
                         ({"disabled": True}, "Disabled"), ({"disabled": False}, "Valid")):
        kubectl.run("patch", "ak", "steady", "--type=merge", "-p", json.dumps({"spec": spec}))
        holds(reason)
    kubectl.run("delete", "ak", "steady", "--wait=true")


def _in(seconds: int) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_a_key_written_into_the_secret_by_hand_becomes_the_key(
    kubectl: Kubectl, wait_for: Wait, operator: OperatorProcess
) -> None:
    kubectl.apply({"apiVersion": "kuberank.io/v1alpha1", "kind": "ApiKey",
                   "metadata": {"name": "byo"}, "spec": {}})
    minted = wait_condition(wait_for, kubectl, "ak", "byo", "Active", "True")
    own = "kr_0123456789abcdef_" + "5" * 32  # e.g. a key carried over from another cluster
    kubectl.run("patch", "secret", "byo-key", "--type=merge", "-p",
                json.dumps({"stringData": {"api-key": own}}))
    taken = wait_for("the edited key published",
                     lambda: (o := kubectl.get("ak", "byo"))
                     and o["status"].get("keyId") == "0123456789abcdef" and o)
    assert taken["status"]["keyId"] != minted["status"]["keyId"]
    assert verify_secret("5" * 32, taken["status"]["digest"])
    assert condition(taken, "Active")["status"] == "True"
    assert _secret_key(kubectl, "byo") == own  # kept, not re-minted

    def warnings(reason: str) -> list[str]:
        listed = json.loads(kubectl.run("get", "events", "-o", "json").stdout)["items"]
        return [e["message"] for e in listed if e.get("reason") == reason
                and e["type"] == "Warning" and e["involvedObject"]["name"] == "byo"]

    # Taken, but not silently: the key id its clients lost is named.
    wait_for("a KeyChanged warning", lambda: any(
        f"key id {minted['status']['keyId']} is gone" in m and "(id 0123456789abcdef)" in m
        for m in warnings("KeyChanged")))
    # Something that is no key is replaced by a fresh one.
    kubectl.run("patch", "secret", "byo-key", "--type=merge", "-p",
                json.dumps({"stringData": {"api-key": "hunter2"}}))
    wait_for("re-minted", lambda: parse_key(_secret_key(kubectl, "byo")) is not None
             and (kubectl.get("ak", "byo") or {})["status"]["keyId"]
             == parse_key(_secret_key(kubectl, "byo")).key_id  # type: ignore[union-attr]
             != "0123456789abcdef")

    def replaced_warnings() -> list[str]:
        return warnings("KeyReplaced")

    # The old key's clients now get 401: that is said, with the id they lost.
    wait_for("a KeyReplaced warning", lambda: any("0123456789abcdef is gone" in m
                                                  for m in replaced_warnings()))
    before = (kubectl.get("ak", "byo") or {})["status"]["keyId"]
    kubectl.run("delete", "secret", "byo-key")
    wait_for("a deleted key Secret re-minted, with a warning",
             lambda: any(f"{before} is gone" in m for m in replaced_warnings()))
    assert "hunter2" not in json.dumps(replaced_warnings())
    assert len(warnings("KeyChanged")) == 1  # a minted key is no change by someone else


def test_a_key_secret_stripped_of_its_label_gets_it_back_and_its_deletion_is_answered(
    kubectl: Kubectl, wait_for: Wait, operator: OperatorProcess
) -> None:
    """The operator watches key Secrets by their label: one stripped of it leaves the watch (as
    a deletion). Its key is kept and the label put back, so a later deletion still re-mints."""
    kubectl.apply({"apiVersion": "kuberank.io/v1alpha1", "kind": "ApiKey",
                   "metadata": {"name": "bare"}, "spec": {}})
    minted = wait_condition(wait_for, kubectl, "ak", "bare", "Active", "True")
    key = _secret_key(kubectl, "bare")
    kubectl.run("label", "secret", "bare-key", "kuberank.io/apikey-")
    wait_for("the label put back", lambda: ((kubectl.get("secret", "bare-key") or {})
                                            .get("metadata", {}).get("labels") or {})
             .get("kuberank.io/apikey") == "bare")
    assert _secret_key(kubectl, "bare") == key  # the same key: its clients keep working
    assert (kubectl.get("ak", "bare") or {})["status"]["keyId"] == minted["status"]["keyId"]
    kubectl.run("delete", "secret", "bare-key")
    wait_for("a deleted key Secret re-minted", lambda: (s := parse_key(
        _secret_key_or_none(kubectl, "bare") or "")) is not None
        and s.key_id != minted["status"]["keyId"]
        and (kubectl.get("ak", "bare") or {})["status"]["keyId"] == s.key_id)


def test_deleting_a_tenants_namespace_leaves_no_refused_write_in_the_operators_log(
    kubectl: Kubectl, wait_for: Wait, operator: OperatorProcess, namespace: str
) -> None:
    """The namespace controller deletes the children before the models and keys: the operator
    does not try to put them back (the API server refuses writes into a namespace being
    deleted), and says nothing of it."""
    ready_cpu_model(kubectl, wait_for, "doomed")
    kubectl.apply({"apiVersion": "kuberank.io/v1alpha1", "kind": "ApiKey",
                   "metadata": {"name": "doomed"}, "spec": {}})
    wait_condition(wait_for, kubectl, "ak", "doomed", "Active", "True")
    kubectl.run("delete", "namespace", namespace, "--wait=false")
    wait_for("the namespace gone", lambda: kubectl.run(
        "get", "namespace", namespace, check=False).returncode != 0, timeout=90)
    logs = operator.logs()
    assert "being terminated" not in logs, logs[-3000:]


def test_another_apikeys_whole_key_written_into_a_secret_is_not_taken(
    kubectl: Kubectl, wait_for: Wait, operator: OperatorProcess
) -> None:
    """Taken, it would make one key two tenants': the copy is re-minted and said so."""
    for name in ("victim", "copier"):
        kubectl.apply({"apiVersion": "kuberank.io/v1alpha1", "kind": "ApiKey",
                       "metadata": {"name": name}, "spec": {}})
        wait_condition(wait_for, kubectl, "ak", name, "Active", "True")
    victim = (kubectl.get("ak", "victim") or {})["status"]
    copier_id = (kubectl.get("ak", "copier") or {})["status"]["keyId"]
    stolen = _secret_key(kubectl, "victim")
    kubectl.run("patch", "secret", "copier-key", "--type=merge", "-p",
                json.dumps({"stringData": {"api-key": stolen}}))

    def replaced() -> list[str]:
        listed = json.loads(kubectl.run("get", "events", "-o", "json").stdout)["items"]
        return [e["message"] for e in listed if e.get("reason") == "KeyReplaced"
                and e["involvedObject"]["name"] == "copier"]

    namespace = kubectl.namespace
    wait_for("the copy re-minted, with a warning", lambda: any(
        f"held the key of ApiKey {namespace}/victim" in m and f"key id {copier_id} is gone" in m
        for m in replaced()))
    fresh = parse_key(_secret_key(kubectl, "copier"))
    assert fresh is not None and fresh.key_id not in (victim["keyId"], copier_id)
    wait_for("the fresh key published", lambda: (kubectl.get("ak", "copier") or {})["status"]
             .get("keyId") == fresh.key_id)
    assert (kubectl.get("ak", "victim") or {})["status"]["keyId"] == victim["keyId"]
    assert _secret_key(kubectl, "victim") == stolen  # the holder keeps its key
    # Written under the operator's own field manager (a client may name any), the copy is
    # still not taken: what the status publishes decides, not who wrote the Secret.
    kubectl.run("patch", "secret", "copier-key", "--type=merge", "--field-manager",
                "kuberank-operator", "-p", json.dumps({"stringData": {"api-key": stolen}}))
    kubectl.run("annotate", "ak", "copier", "nudge=1")  # any change reconciles it

    def copier_key_id() -> str | None:
        held = parse_key(_secret_key(kubectl, "copier"))
        return held.key_id if held is not None else None

    wait_for("the spoofed copy re-minted too",
             lambda: copier_key_id() not in (None, victim["keyId"], fresh.key_id))
    again = parse_key(_secret_key(kubectl, "copier"))
    assert again is not None
    wait_for("the second fresh key published", lambda: (kubectl.get("ak", "copier") or {})
             ["status"].get("keyId") == again.key_id)
    assert (kubectl.get("ak", "victim") or {})["status"]["keyId"] == victim["keyId"]
    assert stolen not in json.dumps(replaced())


def test_operator_logs_json_serves_liveness_and_stops_gracefully(
    kubectl: Kubectl, wait_for: Wait, operator_with: Callable[..., OperatorProcess]
) -> None:
    op = operator_with("--json-logs")
    try:
        kubectl.apply(
            {
                "apiVersion": "kuberank.io/v1alpha1",
                "kind": "ApiKey",
                "metadata": {"name": "j"},
                "spec": {},
            }
        )
        wait_condition(wait_for, kubectl, "ak", "j", "Active", "True")
    finally:
        rc = op.stop()
    assert rc == 0, op.logs()[-2000:]
    lines = [line for line in op.logs().splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]
    assert any("reconcile" in r.get("message", "") for r in records)


def test_metrics_scrapers_reach_runtime_pods_that_announce_their_metrics(
    kubectl: Kubectl, wait_for: Wait, operator_with: Callable[..., OperatorProcess]
) -> None:
    prometheus = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "mon"}}}
    op = operator_with("--metrics-from", json.dumps([prometheus]))
    try:
        deployment = ready_cpu_model(kubectl, wait_for, "scraped")
        policy = kubectl.get("networkpolicy", "rrm-scraped")
    finally:
        assert op.stop() == 0, op.logs()[-2000:]
    assert policy is not None  # accepted by the API server's NetworkPolicy validation
    peers = policy["spec"]["ingress"][0]["from"]
    assert prometheus in peers and len(peers) == 2
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == "8080"
