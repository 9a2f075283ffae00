"""From nothing to ranked results: cluster -> helm install -> RerankModel -> ApiKey -> the key from
its Secret -> POST /v1/rerank through the gateway; then scale, disable, delete, uninstall."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from denials import first_denial
from e2ekit import (
    NODE_SELECTOR,
    REPO,
    AgentNode,
    FileServer,
    Kubectl,
    get_text,
    post_json,
    wait_for,
)
from kuberank.modelkit import paths
from promtext import sample

pytestmark = pytest.mark.e2e

RELEASE = "kr"
SYSTEM_NS = "kuberank-system"
MODEL_FILE = paths.DEFAULT  # the embedded default model (issue 7)
QUERY = "What is a panda?"
DOCUMENTS = [
    "hi",
    "The stock market closed higher on Friday after a volatile week.",
    "The giant panda is a bear species endemic to China, known for its black and white coat.",
]
RELEVANT = 2


def log(msg: str) -> None:
    print(f"[e2e] {msg}", file=sys.stderr, flush=True)


@pytest.fixture
def release(cluster: Any, kubectl: Kubectl, agent_node: AgentNode) -> Iterator[str]:
    """The chart installed into a namespace that enforces Pod Security "restricted"."""
    helm = str(Path(cluster.bin_dir) / "helm")
    kubectl.run("create", "namespace", SYSTEM_NS)
    kubectl.run("label", "namespace", SYSTEM_NS, "pod-security.kubernetes.io/enforce=restricted")
    began = time.monotonic()
    proc = subprocess.run(
        [
            helm,
            "install",
            RELEASE,
            str(REPO / "charts" / "kuberank"),
            "-n",
            SYSTEM_NS,
            f"--kubeconfig={kubectl.kubeconfig}",
            "--wait",
            "--timeout=180s",
            "--set",
            "gateway.replicas=1",
            "--set-string",
            "operator.nodeSelector.kuberank\\.io/node-agent=true",
            "--set-string",
            "gateway.nodeSelector.kuberank\\.io/node-agent=true",
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr + "\n" + agent_node.pod_logs()
    log(f"helm install --wait: {time.monotonic() - began:.1f}s")
    try:
        yield helm
    finally:
        subprocess.run(
            [helm, "uninstall", RELEASE, "-n", SYSTEM_NS, f"--kubeconfig={kubectl.kubeconfig}"],
            capture_output=True,
        )
        kubectl.run("delete", "namespace", SYSTEM_NS, "--wait=false", check=False)


def shared_cache(kubectl: Kubectl, ns: str) -> None:
    """Claim "model-cache", bound to a volume made for it (the node agent keeps a claim's files
    per namespace and claim on its node, for every pod that mounts it)."""
    kubectl.apply({
        "apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": f"cache-{ns}"},
        "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteMany"],
                 "persistentVolumeReclaimPolicy": "Delete", "storageClassName": "manual",
                 "hostPath": {"path": f"/tmp/cache-{ns}"},
                 "claimRef": {"namespace": ns, "name": "model-cache"}},
    }, ns)
    kubectl.apply({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "model-cache"},
        "spec": {"accessModes": ["ReadWriteMany"], "storageClassName": "manual",
                 "resources": {"requests": {"storage": "1Gi"}}},
    }, ns)


def gateway_url(kubectl: Kubectl) -> str:
    pods = kubectl.json(
        "get", "pods", "-n", SYSTEM_NS, "-l", "app.kubernetes.io/component=gateway"
    )["items"]
    ready = [
        p
        for p in pods
        if "deletionTimestamp" not in p["metadata"]  # one an upgrade replaced is on its way out
        and any(
            c["type"] == "Ready" and c["status"] == "True"
            for c in p["status"].get("conditions", [])
        )
    ]
    assert ready, "no ready gateway pod"
    return f"http://{ready[0]['status']['podIP']}:8080"


def runtime_pods(kubectl: Kubectl, ns: str, model: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = kubectl.json(
        "get", "pods", "-n", ns, "-l", f"kuberank.io/model={model}"
    )["items"]
    return items


def lease_holder(kubectl: Kubectl) -> str | None:
    """The operator replica holding the leader-election Lease, if any holds it."""
    found = kubectl.json("get", "leases", "-n", SYSTEM_NS,
                         f"--field-selector=metadata.name={RELEASE}-kuberank-operator")
    holders = [(item.get("spec") or {}).get("holderIdentity") for item in found["items"]]
    return str(holders[0]) if holders and holders[0] else None


def served_requests(ip: str) -> float:
    text = get_text(f"http://{ip}:8080/metrics")
    return sample(text, "kuberank_runtime_requests_total", status="200")


def test_helm_install_to_ranked_results_and_back_to_nothing(
    release: str, kubectl: Kubectl, model_server: FileServer, agent_node: AgentNode, namespace: str
) -> None:
    ns = namespace
    # The chart's pods run under Pod Security "restricted" (the API server enforces it).
    for comp in ("operator", "gateway"):
        pods = kubectl.json(
            "get", "pods", "-n", SYSTEM_NS, "-l", f"app.kubernetes.io/component={comp}"
        )["items"]
        assert len(pods) == 1 and pods[0]["spec"]["nodeName"] == agent_node.name
    # The operator acts only while it holds the leader-election Lease (granted by the chart's Role).
    operator_pod = wait_for("operator to lead", lambda: lease_holder(kubectl))
    assert operator_pod.startswith(f"{RELEASE}-kuberank-operator-"), operator_pod

    # The examples are valid against the installed CRDs.
    for example in sorted((REPO / "examples").glob("*.yaml")):
        kubectl.run("apply", "--dry-run=server", "-n", ns, "-f", str(example))
    # A second cluster-wide release would act on every model beside this one: refused.
    second = subprocess.run(
        [release, "install", "kr2", str(REPO / "charts" / "kuberank"), "-n", ns,
         "--dry-run=server", f"--kubeconfig={kubectl.kubeconfig}"],
        capture_output=True, text=True)
    assert second.returncode != 0
    assert (f'release "{RELEASE}" (namespace "{SYSTEM_NS}") already runs a cluster-wide '
            'kuberank operator') in second.stderr, (
        second.stderr)

    model = {
        "apiVersion": "kuberank.io/v1alpha1",
        "kind": "RerankModel",
        "metadata": {"name": "minilm"},
        "spec": {
            "source": {
                "url": {
                    "url": f"{model_server.url}/{MODEL_FILE}",
                    "sha256": model_server.sha256(MODEL_FILE),
                }
            },
            "resources": {"gpus": 1},
            "scheduling": {"nodeSelector": NODE_SELECTOR},
            "engine": {"threads": 1, "contextSize": 512, "batchSize": 512},
            "cache": {"claimName": "model-cache"},
        },
    }
    shared_cache(kubectl, ns)
    downloads = model_server.downloads(MODEL_FILE)
    began = time.monotonic()
    kubectl.apply(model, ns)
    kubectl.apply(
        {
            "apiVersion": "kuberank.io/v1alpha1",
            "kind": "ApiKey",
            "metadata": {"name": "app"},
            "spec": {"models": ["minilm"]},
        },
        ns,
    )

    def model_ready() -> bool:
        rrm = kubectl.json("get", "rerankmodel", "minilm", "-n", ns)
        return any(
            c["type"] == "Ready" and c["status"] == "True"
            for c in rrm.get("status", {}).get("conditions", [])
        )

    wait_for("RerankModel Ready", model_ready, timeout=240)
    log(f"RerankModel Ready after {time.monotonic() - began:.1f}s")
    secret = wait_for(
        "the ApiKey's Secret",
        lambda: (
            kubectl.json("get", "secrets", "-n", ns)["items"]
            and next(
                (
                    s
                    for s in kubectl.json("get", "secrets", "-n", ns)["items"]
                    if s["metadata"]["name"] == "app-key"
                ),
                None,
            )
        ),
        timeout=60,
    )
    key = base64.b64decode(secret["data"]["api-key"]).decode()
    assert key.startswith("kr_")

    url = gateway_url(kubectl) + "/v1/rerank"
    body = {"model": "minilm", "query": QUERY, "documents": DOCUMENTS}

    def answered() -> tuple[int, Any] | None:
        status, answer = post_json(url, body, key)
        return (status, answer) if status == 200 else None

    _, answer = wait_for("200 from the gateway", answered, timeout=60)
    log(f"first ranked answer after {time.monotonic() - began:.1f}s: {answer}")
    assert answer["model"] == "minilm" and answer["object"] == "list"
    assert answer["results"][0]["index"] == RELEVANT
    assert sorted(r["index"] for r in answer["results"]) == [0, 1, 2]
    scores = [r["relevance_score"] for r in answer["results"]]
    assert scores == sorted(scores, reverse=True)
    top = answer["results"][0]
    assert top["document"] == {"text": DOCUMENTS[top["index"]]}
    assert answer["usage"]["prompt_tokens"] > 0
    # The operator's metrics say the model is Ready (its pod's metrics port, as a scraper sees).
    leader = kubectl.json("get", "pod", "-n", SYSTEM_NS, operator_pod)["status"]["podIP"]
    wait_for("the model Ready in the operator's metrics", lambda: sample(
        get_text(f"http://{leader}:8082/metrics"), "kuberank_operator_model_condition",
        namespace=ns, name="minilm", condition="Ready") == 1, timeout=30)
    # The gateway stamped the key's last use (the chart lets it patch apikeys/status).
    wait_for("the key's lastUsedTime", lambda: kubectl.json("get", "apikey", "app", "-n", ns)
             .get("status", {}).get("lastUsedTime"), timeout=30)

    # Two replicas, and the gateway sends traffic to both.
    kubectl.run("scale", "rerankmodel", "minilm", "-n", ns, "--replicas=2")
    began = time.monotonic()
    wait_for(
        "2 ready replicas",
        lambda: (
            kubectl.json("get", "rerankmodel", "minilm", "-n", ns)
            .get("status", {})
            .get("readyReplicas")
            == 2
        ),
        timeout=240,
    )
    log(f"second replica Ready after {time.monotonic() - began:.1f}s")
    ips = [p["status"]["podIP"] for p in runtime_pods(kubectl, ns, "minilm")]
    assert len(ips) == 2
    before = {ip: served_requests(ip) for ip in ips}

    def both_served() -> bool:
        assert post_json(url, body, key)[0] == 200
        return all(served_requests(ip) > before[ip] for ip in ips)

    wait_for("both replicas to serve through the gateway", both_served, timeout=60)
    # The second replica found the file on the shared cache claim: one download for two pods.
    assert model_server.downloads(MODEL_FILE) - downloads == 1

    # Disabling the key takes effect within seconds.
    kubectl.run(
        "patch", "apikey", "app", "-n", ns, "--type=merge", "-p", '{"spec": {"disabled": true}}'
    )
    began = time.monotonic()
    wait_for("401 for the disabled key", lambda: post_json(url, body, key)[0] == 401, timeout=30)
    log(f"disabled key refused after {time.monotonic() - began:.1f}s")
    kubectl.run(
        "patch", "apikey", "app", "-n", ns, "--type=merge", "-p", '{"spec": {"disabled": false}}'
    )
    wait_for("200 again", lambda: post_json(url, body, key)[0] == 200, timeout=30)

    # Everything so far ran on the chart's RBAC alone (the cluster enforces owner-reference
    # permissions, as OpenShift does): neither the operator nor the gateway was refused a call
    # for want of a permission (other refusals, such as writes into another test's namespace
    # while it terminates, are no RBAC's doing).
    for component in ("operator", "gateway"):
        logged = agent_node.logs_of(SYSTEM_NS, f"{RELEASE}-kuberank-{component}-")
        assert logged, component
        assert (denied := first_denial(logged)) is None, f"{component}: {denied}"

    # Upgrading as README says: CRDs first (Helm installs them once and never upgrades them),
    # then the release. The gateway rolls (new log level) and the same key is answered again.
    kubectl.run("apply", "--server-side", "--force-conflicts",
                "-f", str(REPO / "charts" / "kuberank" / "crds"))
    began = time.monotonic()
    proc = subprocess.run(
        [release, "upgrade", RELEASE, str(REPO / "charts" / "kuberank"), "-n", SYSTEM_NS,
         f"--kubeconfig={kubectl.kubeconfig}", "--reset-then-reuse-values",
         "--set", "gateway.logLevel=debug",
         "--set", "operator.verbose=true", "--set", "operator.replicas=2",
         "--wait", "--timeout=180s"],
        capture_output=True, text=True,
    )
    assert proc.returncode == 0, proc.stderr + "\n" + agent_node.pod_logs()
    log(f"helm upgrade --wait: {time.monotonic() - began:.1f}s")
    gateway = kubectl.json("get", "deployment", "-n", SYSTEM_NS, "-l",
                           "app.kubernetes.io/component=gateway")["items"][0]
    env = {e["name"]: e.get("value") for e in gateway["spec"]["template"]["spec"]["containers"][0]
           .get("env", [])}
    assert "debug" in env.values(), env

    def answered_after_upgrade() -> str | None:
        try:
            upgraded = gateway_url(kubectl) + "/v1/rerank"
            return upgraded if post_json(upgraded, body, key)[0] == 200 else None
        except (AssertionError, OSError):
            return None  # no ready gateway pod yet

    url = wait_for("200 after the upgrade", answered_after_upgrade, timeout=60)
    # Two operator replicas now: the new pods stood by until the old one handed the Lease over;
    # one of them leads, the other stands by.
    def leader_other_than(previous: str) -> str | None:
        holder = lease_holder(kubectl)
        return holder if holder not in (None, previous) else None

    def operator_pods() -> list[str]:
        found = kubectl.json("get", "pods", "-n", SYSTEM_NS, "-l",
                             "app.kubernetes.io/component=operator")["items"]
        return sorted(p["metadata"]["name"] for p in found
                      if not p["metadata"].get("deletionTimestamp"))

    successor = wait_for("a new operator to lead", lambda: leader_other_than(operator_pod),
                         timeout=60)
    replicas = wait_for("two operator pods", lambda: len(pods := operator_pods()) == 2 and pods)
    assert successor in replicas and operator_pod not in replicas
    # The leader's pod goes (a node drain, say): another replica takes over (a graceful stop
    # hands the Lease over) — the standby, or the pod replacing the deleted one if it asks
    # first — and what follows, scale to zero and autoscaling, is its work.
    kubectl.run("delete", "pod", "-n", SYSTEM_NS, successor, "--wait=false")
    began = time.monotonic()
    standby = wait_for("another replica to lead", lambda: leader_other_than(successor),
                       timeout=60)
    log(f"another operator replica leads {time.monotonic() - began:.1f}s after the leader's "
        "pod was deleted")
    assert standby in operator_pods()

    # Idle with scaleToZero, it goes to zero replicas (the operator); the next request wakes it
    # and is held until the new replica answers (the gateway), both through the chart's RBAC.
    kubectl.run("patch", "rerankmodel", "minilm", "-n", ns, "--type=merge",
                "-p", '{"spec": {"scaleToZero": {"afterIdleSeconds": 10}}}')
    began = time.monotonic()
    wait_for("scaled to zero when idle", lambda: runtime_pods(kubectl, ns, "minilm") == [],
             timeout=120)
    log(f"idle model at zero pods after {time.monotonic() - began:.1f}s")
    began = time.monotonic()
    status, answer = post_json(url, body, key, timeout=240)
    assert status == 200, answer
    assert answer["results"][0]["index"] == RELEVANT
    log(f"request to a model at zero replicas answered in {time.monotonic() - began:.1f}s")
    rrm = kubectl.json("get", "rerankmodel", "minilm", "-n", ns)
    assert rrm["spec"]["replicas"] == 1 and rrm["status"]["lastRequestTime"]

    # Autoscaling on the load the gateway reports (scaleToZero off again): under four clients
    # that always have a request open, up to two replicas; idle again, back down to one.
    policy = {"minReplicas": 1, "maxReplicas": 2, "targetInFlight": 1, "scaleDownDelaySeconds": 10}
    kubectl.run("patch", "rerankmodel", "minilm", "-n", ns, "--type=merge",
                "-p", json.dumps({"spec": {"autoscaling": policy, "scaleToZero": None}}))

    def desired() -> int:
        return int(kubectl.json("get", "rerankmodel", "minilm", "-n", ns)["spec"]["replicas"])

    loaded = threading.Event()

    def client() -> None:
        while not loaded.is_set():
            post_json(url, body, key)

    with ThreadPoolExecutor(4) as pool:
        for _ in range(4):
            pool.submit(client)
        try:
            began = time.monotonic()
            wait_for("autoscaled up to 2 replicas", lambda: desired() == 2, timeout=90)
            log(f"loaded: autoscaled to 2 replicas after {time.monotonic() - began:.1f}s")
        finally:
            loaded.set()
    load = kubectl.json("get", "rerankmodel", "minilm", "-n", ns)["status"]["gatewayLoad"]
    assert any(name.startswith(f"{RELEASE}-") for name in load), load  # the gateway pod's name
    began = time.monotonic()
    wait_for("autoscaled down to 1 replica", lambda: desired() == 1, timeout=90)
    log(f"idle: autoscaled to 1 replica after {time.monotonic() - began:.1f}s")

    # Deleting the model: 404 at the gateway, its pods gone.
    kubectl.run("delete", "rerankmodel", "minilm", "-n", ns, "--wait=false")
    wait_for("404 for the deleted model", lambda: post_json(url, body, key)[0] == 404, timeout=60)
    wait_for("runtime pods gone", lambda: runtime_pods(kubectl, ns, "minilm") == [], timeout=90)

    # Uninstall leaves nothing of ours but the CRDs.
    proc = subprocess.run(
        [
            release,
            "uninstall",
            RELEASE,
            "-n",
            SYSTEM_NS,
            "--wait",
            f"--kubeconfig={kubectl.kubeconfig}",
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr

    def leftovers() -> list[str]:
        names = kubectl.run(
            "get",
            "all,sa,role,rolebinding,networkpolicy,pdb,ingress,hpa",
            "-n",
            SYSTEM_NS,
            "-o",
            "name",
            "-l",
            "app.kubernetes.io/part-of=kuberank",
        ).split()
        names += [
            n
            for n in kubectl.run("get", "clusterrole,clusterrolebinding", "-o", "name").split()
            if "kuberank" in n
        ]
        return names

    seen: list[str] = []

    def nothing_left() -> bool:
        seen[:] = leftovers()
        return not seen

    try:
        # Pods go after their Deployment, each within its grace period (the gateway's is 70 s:
        # drain, upstream timeout, 5 s), and garbage collection lags on a loaded machine.
        wait_for("nothing left after uninstall", nothing_left, timeout=180)
    except BaseException:
        raise AssertionError(f"left after uninstall: {seen}") from None
    crds = kubectl.run("get", "crd", "-o", "name").split()
    assert "customresourcedefinition.apiextensions.k8s.io/rerankmodels.kuberank.io" in crds
    assert "customresourcedefinition.apiextensions.k8s.io/apikeys.kuberank.io" in crds
