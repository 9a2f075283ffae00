"""The node agent runs pods for real: init containers, volumes at their mountPaths, env from the
downward API and Secrets, readiness from probes, a pod IP on kr0, in-cluster API access, GPU
scheduling, and processes gone after deletion."""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from e2ekit import NODE_SELECTOR, AgentNode, Kubectl, get_text, wait_for

pytestmark = pytest.mark.e2e

API_CHECK = (
    "import os, ssl, urllib.request as u\n"
    "sa = '/var/run/secrets/kubernetes.io/serviceaccount/'\n"
    "ctx = ssl.create_default_context(cafile=sa + 'ca.crt')\n"
    "url = f\"https://{os.environ['KUBERNETES_SERVICE_HOST']}:{os.environ['KUBERNETES_SERVICE_PORT']}/version\"\n"
    "req = u.Request(url, headers={'Authorization': 'Bearer ' + open(sa + 'token').read()})\n"
    "open('/data/api.json', 'wb').write(u.urlopen(req, context=ctx).read())\n"
)

WRITE = (
    "import os; open('/data/index.html', 'w').write("
    "os.environ['GREETING'] + ' ' + os.environ['POD_NS'] + ' ' + open('/secret/word').read())"
)


def web_pod(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "nodeSelector": NODE_SELECTOR,
            "terminationGracePeriodSeconds": 5,
            "initContainers": [
                {
                    "name": "write",
                    "image": "unused",
                    "command": ["python3", "-c"],
                    "args": [WRITE],
                    "env": [
                        {
                            "name": "GREETING",
                            "valueFrom": {"secretKeyRef": {"name": "words", "key": "greeting"}},
                        },
                        {
                            "name": "POD_NS",
                            "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}},
                        },
                    ],
                    "volumeMounts": [
                        {"name": "data", "mountPath": "/data"},
                        {"name": "secret", "mountPath": "/secret", "readOnly": True},
                    ],
                },
                {
                    "name": "api",
                    "image": "unused",
                    "command": ["python3", "-c", API_CHECK],
                    "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                },
            ],
            "containers": [
                {
                    "name": "web",
                    "image": "unused",
                    "command": ["python3", "-m", "http.server", "$(PORT)", "--directory", "/data"],
                    "env": [{"name": "PORT", "value": "8000"}],
                    "ports": [{"name": "http", "containerPort": 8000}],
                    "readinessProbe": {
                        "httpGet": {"path": "/index.html", "port": "http"},
                        "periodSeconds": 1,
                    },
                    "resources": {"limits": {"nvidia.com/gpu": 1}},
                    "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                }
            ],
            "volumes": [
                {"name": "data", "emptyDir": {}},
                {
                    "name": "secret",
                    "secret": {"secretName": "words", "items": [{"key": "word", "path": "word"}]},
                },
            ],
        },
    }


def test_agent_runs_a_pod_with_init_containers_volumes_env_probe_and_api_access(
    agent_node: AgentNode, kubectl: Kubectl, namespace: str
) -> None:
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "words"},
        "data": {
            k: base64.b64encode(v.encode()).decode()
            for k, v in {"greeting": "hello", "word": "panda"}.items()
        },
    }
    kubectl.apply(secret, namespace)
    kubectl.apply(web_pod("web"), namespace)

    def ready() -> dict[str, Any] | None:
        pod = kubectl.json("get", "pod", "web", "-n", namespace)
        conds = {c["type"]: c["status"] for c in pod["status"].get("conditions", [])}
        return pod if conds.get("Ready") == "True" else None

    pod = wait_for("pod web Ready", ready, timeout=60)
    assert pod["spec"]["nodeName"] == agent_node.name  # scheduled there for its GPU request
    ip = pod["status"]["podIP"]
    assert ip.startswith("10.250.0.") and ip != "10.250.0.1"
    assert pod["status"]["phase"] == "Running"
    assert [
        c["state"]["terminated"]["exitCode"] for c in pod["status"]["initContainerStatuses"]
    ] == [0, 0]
    web = pod["status"]["containerStatuses"][0]
    assert (
        web["ready"] and web["started"] and web["restartCount"] == 0 and "running" in web["state"]
    )
    assert get_text(f"http://{ip}:8000/index.html") == f"hello {namespace} panda"
    assert json.loads(get_text(f"http://{ip}:8000/api.json"))["major"] == "1"

    kubectl.run("delete", "pod", "web", "-n", namespace, "--wait=false")
    wait_for(
        "pod web gone",
        lambda: (
            "NotFound"
            in subprocess.run(
                [
                    "kubectl",
                    f"--kubeconfig={kubectl.kubeconfig}",
                    "get",
                    "pod",
                    "web",
                    "-n",
                    namespace,
                ],
                capture_output=True,
                text=True,
            ).stderr
        ),
        timeout=30,
    )
    with pytest.raises(OSError):
        get_text(f"http://{ip}:8000/index.html", timeout=2)


def python_pod(name: str, script: str, **container: Any) -> dict[str, Any]:
    """A pod of one container running ``python3 -c script`` on the agent's node."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "nodeSelector": NODE_SELECTOR,
            "containers": [{"name": "c", "image": "unused",
                            "command": ["python3", "-c", script], **container}],
        },
    }


def container_status(kubectl: Kubectl, pod: str, namespace: str) -> dict[str, Any]:
    """The pod's first container status ({} before the agent reports one)."""
    status = kubectl.json("get", "pod", pod, "-n", namespace)["status"]
    return dict((status.get("containerStatuses") or [{}])[0])


def test_agent_restarts_a_crashing_container_and_reports_it(
    agent_node: AgentNode, kubectl: Kubectl, namespace: str
) -> None:
    kubectl.apply(python_pod("crash", "raise SystemExit(3)"), namespace)

    def restarted() -> dict[str, Any] | None:
        st = container_status(kubectl, "crash", namespace)
        return st if st.get("restartCount", 0) >= 2 else None

    st = wait_for("two restarts", restarted, timeout=60)
    assert st["lastState"]["terminated"]["exitCode"] == 3
    assert st["ready"] is False
    kubectl.run("delete", "pod", "crash", "-n", namespace, "--wait=true", "--timeout=30s")


@pytest.mark.parametrize(("script", "policy", "message"), [
    # what a container writes to its termination log, as the model fetcher does
    ("import os; open(os.environ['KUBERANK_TERMINATION_LOG'], 'w').write('sha256 mismatch');"
     "raise SystemExit(1)", "File", "sha256 mismatch"),
    # nothing written: the end of its log, when the spec asks for that
    ("print('not a reranker', flush=True); raise SystemExit(1)", "FallbackToLogsOnError",
     "not a reranker"),
])
def test_a_failed_container_reports_its_termination_message(
    agent_node: AgentNode, kubectl: Kubectl, namespace: str, script: str, policy: str,
    message: str,
) -> None:
    pod = python_pod("last-words", script, terminationMessagePolicy=policy)
    pod["spec"]["restartPolicy"] = "Never"
    kubectl.apply(pod, namespace)

    def terminated() -> dict[str, Any] | None:
        return (container_status(kubectl, "last-words", namespace).get("state") or {}).get(
            "terminated")

    state = wait_for("terminated", terminated, timeout=60)
    assert state["exitCode"] == 1 and state["message"] == message
    kubectl.run("delete", "pod", "last-words", "-n", namespace, "--wait=true", "--timeout=30s")


def test_a_volume_over_tmp_does_not_hide_a_checkout_that_lives_under_tmp(tmp_path: Path) -> None:
    """CI may clone the repository under /tmp while pods mount an emptyDir at /tmp: the shim
    binds the host paths a command needs back over the volume."""
    repo = tmp_path / "checkout"
    repo.mkdir()
    (repo / "marker").write_text("still here")
    volume = tmp_path / "emptydir"
    volume.mkdir()
    shim = Path(__file__).resolve().parents[2] / "tools" / "nodeagent" / "shim.py"
    spec = {
        "workdir": "",
        "mounts": [[str(volume), str(tmp_path), "rw"]],
        "keep": [str(repo)],
        "argv": ["cat", str(repo / "marker")],
    }
    run = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "python3", "-I", str(shim),
         json.dumps(spec)],
        capture_output=True, text=True, timeout=30,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout == "still here"
    without_keep = {**spec, "keep": []}
    hidden = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "python3", "-I", str(shim),
         json.dumps(without_keep)],
        capture_output=True, text=True, timeout=30,
    )
    assert hidden.returncode != 0


def test_a_pods_readiness_changed_by_another_writer_is_reported_again(
    agent_node: AgentNode, kubectl: Kubectl, namespace: str
) -> None:
    """The node controller marks the pods of a node that stopped reporting not ready; the agent
    re-reported a pod only when its own view changed, so once its node was back the pod stayed
    not ready for ever (and the model behind it answered 503)."""
    kubectl.apply(python_pod("steady", "import time; time.sleep(600)"), namespace)

    def readiness() -> str | None:
        pod = kubectl.json("get", "pod", "steady", "-n", namespace)
        conds = {c["type"]: c["status"] for c in pod["status"].get("conditions", [])}
        return conds.get("Ready")

    wait_for("pod steady Ready", lambda: readiness() == "True", timeout=60)
    not_ready = {"status": {"conditions": [{"type": "Ready", "status": "False"}]}}
    patched = json.loads(kubectl.run("patch", "pod", "steady", "-n", namespace,
                                     "--subresource=status", "-o", "json",
                                     "-p", json.dumps(not_ready)))
    assert {c["type"]: c["status"] for c in patched["status"]["conditions"]}["Ready"] == "False"
    wait_for("the agent to report the pod ready again", lambda: readiness() == "True", timeout=20)
    kubectl.run("delete", "pod", "steady", "-n", namespace, "--wait=false")
