"""The local control plane behaves like a real cluster in the ways the operator depends on:
GPU-aware scheduling, garbage collection, CRD schema validation, kubectl and helm."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import localcluster
import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

pytestmark = pytest.mark.cluster

T = TypeVar("T")
GPU_NODES = {"gpu-node-1", "gpu-node-2"}


def poll(what: str, probe: Callable[[], T | None], timeout: float = 60.0) -> T:
    """Return probe()'s first truthy value, or fail naming what never happened."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.25)


def as_dict(obj: object) -> Any:
    """The API's JSON shape (camelCase keys) of a client model, free of Optional noise."""
    return client.ApiClient().sanitize_for_serialization(obj)  # type: ignore[no-untyped-call]


def gpu_deployment(name: str, gpus: int) -> client.V1Deployment:
    labels = {"app": name}
    container = client.V1Container(
        name="main",
        image="registry.invalid/kuberank/noop:1",  # kwok never pulls images
        command=["kuberank-runtime"],
        resources=client.V1ResourceRequirements(limits={"nvidia.com/gpu": str(gpus)}),
    )
    return client.V1Deployment(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1DeploymentSpec(
            replicas=1,
            selector=client.V1LabelSelector(match_labels=labels),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=labels),
                spec=client.V1PodSpec(containers=[container]),
            ),
        ),
    )


def test_deployment_with_one_gpu_becomes_available_on_a_gpu_node(
    api_client: client.ApiClient, namespace: str
) -> None:
    apps, core = client.AppsV1Api(api_client), client.CoreV1Api(api_client)
    apps.create_namespaced_deployment(namespace, gpu_deployment("one-gpu", 1))

    def available() -> bool:
        status = as_dict(apps.read_namespaced_deployment_status("one-gpu", namespace))["status"]
        conditions = {c["type"]: c["status"] for c in status.get("conditions", [])}
        return bool(status.get("availableReplicas") == 1 and conditions.get("Available") == "True")

    poll("Deployment one-gpu to become Available", available, timeout=90)
    pods = as_dict(core.list_namespaced_pod(namespace, label_selector="app=one-gpu"))["items"]
    assert [p["spec"]["nodeName"] in GPU_NODES for p in pods] == [True]
    assert pods[0]["status"]["phase"] == "Running"


def test_deployment_asking_more_gpus_than_any_node_has_stays_pending(
    api_client: client.ApiClient, namespace: str
) -> None:
    apps, core = client.AppsV1Api(api_client), client.CoreV1Api(api_client)
    apps.create_namespaced_deployment(namespace, gpu_deployment("three-gpus", 3))

    def unschedulable_message() -> str | None:
        pods = core.list_namespaced_pod(namespace, label_selector="app=three-gpus")
        for pod in as_dict(pods)["items"]:
            for cond in pod["status"].get("conditions", []):
                if cond["type"] == "PodScheduled" and cond["status"] == "False":
                    return str(cond["message"])
        return None

    message = poll("a PodScheduled=False condition", unschedulable_message, timeout=90)
    assert "Insufficient nvidia.com/gpu" in message
    pods = as_dict(core.list_namespaced_pod(namespace, label_selector="app=three-gpus"))["items"]
    assert [(p["status"]["phase"], p["spec"].get("nodeName")) for p in pods] == [("Pending", None)]


def test_deleting_an_owner_garbage_collects_its_owned_configmap(
    api_client: client.ApiClient, namespace: str
) -> None:
    core = client.CoreV1Api(api_client)
    owner = core.create_namespaced_config_map(
        namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="owner"))
    )
    ref = client.V1OwnerReference(
        api_version="v1", kind="ConfigMap", name="owner", uid=as_dict(owner)["metadata"]["uid"]
    )
    core.create_namespaced_config_map(
        namespace,
        client.V1ConfigMap(metadata=client.V1ObjectMeta(name="owned", owner_references=[ref])),
    )
    core.delete_namespaced_config_map("owner", namespace)

    def owned_gone() -> bool:
        try:
            core.read_namespaced_config_map("owned", namespace)
        except ApiException as err:
            return bool(err.status == 404)
        return False

    poll("the garbage collector to delete ConfigMap owned", owned_gone, timeout=60)


WIDGET_CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.test.kuberank.io"},
    "spec": {
        "group": "test.kuberank.io",
        "scope": "Namespaced",
        "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "required": ["size"],
                                "properties": {"size": {"type": "integer", "minimum": 1}},
                            }
                        },
                    }
                },
            }
        ],
    },
}


def widget(name: str, size: object) -> dict[str, object]:
    return {
        "apiVersion": "test.kuberank.io/v1",
        "kind": "Widget",
        "metadata": {"name": name},
        "spec": {"size": size},
    }


def test_crd_schema_rejects_an_invalid_object_with_422(
    api_client: client.ApiClient, namespace: str, cluster: localcluster.Cluster, tmp_path: Path
) -> None:
    ext, custom = client.ApiextensionsV1Api(api_client), client.CustomObjectsApi(api_client)
    ext.create_custom_resource_definition(WIDGET_CRD)  # type: ignore[arg-type]  # dicts work
    try:

        def established() -> bool:
            crd = as_dict(ext.read_custom_resource_definition("widgets.test.kuberank.io"))
            return any(
                c["type"] == "Established" and c["status"] == "True"
                for c in crd.get("status", {}).get("conditions", [])
            )

        poll("CRD widgets.test.kuberank.io to be Established", established)
        args = ("test.kuberank.io", "v1", namespace, "widgets")
        custom.create_namespaced_custom_object(*args, widget("good", 3))

        with pytest.raises(ApiException) as raised:
            custom.create_namespaced_custom_object(*args, widget("too-small", 0))
        assert raised.value.status == 422
        assert "spec.size" in str(raised.value.body)

        bad = tmp_path / "bad.json"
        bad.write_text(json.dumps(widget("not-a-number", "big")))
        out = subprocess.run(
            ["kubectl", "create", "-n", namespace, "-f", str(bad)],
            env=cluster.env(),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode != 0
        assert "Invalid value" in out.stderr and "spec.size" in out.stderr
    finally:
        ext.delete_custom_resource_definition("widgets.test.kuberank.io")


def test_kubectl_and_built_helm_install_a_chart_that_helm_lists_as_deployed(
    cluster: localcluster.Cluster, namespace: str, tmp_path: Path
) -> None:
    chart = tmp_path / "throwaway"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: throwaway\nversion: 0.1.0\n")
    (chart / "templates" / "configmap.yaml").write_text(
        textwrap.dedent("""\
        apiVersion: v1
        kind: ConfigMap
        metadata:
          name: {{ .Release.Name }}-settings
        data:
          greeting: {{ .Values.greeting | quote }}
        """)
    )
    (chart / "values.yaml").write_text("greeting: hello\n")
    env = cluster.env()
    assert shutil.which("helm", path=env["PATH"]) == str(cluster.bin_dir / "helm")

    def run(*argv: str) -> str:
        out = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, f"{argv} failed: {out.stderr}"
        return out.stdout

    run("helm", "install", "demo", str(chart), "-n", namespace, "--wait", "--timeout", "60s")
    releases = json.loads(run("helm", "list", "-n", namespace, "-o", "json"))
    assert [(r["name"], r["status"]) for r in releases] == [("demo", "deployed")]
    cm = json.loads(
        run("kubectl", "get", "configmap", "demo-settings", "-n", namespace, "-o", "json")
    )
    assert cm["data"] == {"greeting": "hello"}


def test_built_binaries_report_their_pinned_versions(cluster: localcluster.Cluster) -> None:
    env = cluster.env()
    server = json.loads(
        subprocess.run(
            ["kubectl", "version", "-o", "json"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout
    )
    assert server["serverVersion"]["gitVersion"].startswith("v1.34.")
    helm = subprocess.run(
        ["helm", "version", "--short"], env=env, capture_output=True, text=True, timeout=60
    ).stdout
    assert helm.startswith("v3.")
    etcd = subprocess.run(
        [str(cluster.bin_dir / "etcd"), "--version"], capture_output=True, text=True, timeout=60
    ).stdout
    assert "etcd Version: 3.6." in etcd


def test_nodes_advertise_their_gpus_and_are_managed_by_kwok(api_client: client.ApiClient) -> None:
    nodes = as_dict(client.CoreV1Api(api_client).list_node(label_selector="type=kwok"))["items"]
    gpus = {n["metadata"]["name"]: n["status"]["allocatable"].get("nvidia.com/gpu") for n in nodes}
    assert gpus == {"gpu-node-1": "2", "gpu-node-2": "1", "cpu-node-1": None}
    assert all(n["metadata"]["annotations"]["kwok.x-k8s.io/node"] == "fake" for n in nodes)


def test_a_component_that_dies_at_start_is_named_with_its_log(tmp_path: Path) -> None:
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    for exe in ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok"):
        (fake_bin / exe).write_text('#!/bin/sh\necho "boom: bad flag $1" >&2\nexit 3\n')
        os.chmod(fake_bin / exe, 0o755)
    (fake_bin / "kwok-stages").mkdir()
    for stage in localcluster.STAGES:
        (fake_bin / "kwok-stages" / f"{stage}.yaml").write_text(f"kind: Stage\nname: {stage}\n")

    with pytest.raises(localcluster.ClusterError) as raised:
        localcluster.start(tmp_path / "state", fake_bin, timeout=30)
    message = str(raised.value)
    assert message.startswith("etcd exited with code 3")
    assert "boom: bad flag" in message


def test_up_fails_clearly_when_binaries_are_missing(tmp_path: Path) -> None:
    out = subprocess.run(
        [
            sys.executable,
            str(localcluster.repo_root() / "tools" / "localcluster.py"),
            "up",
            "--state",
            str(tmp_path / "state"),
            "--bin",
            str(tmp_path / "empty"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 1
    assert f"{tmp_path / 'empty' / 'etcd'} missing" in out.stderr
    assert "tools/controlplane/build.sh" in out.stderr


def test_up_refuses_to_take_over_a_directory_it_did_not_create(tmp_path: Path) -> None:
    (tmp_path / "precious.txt").write_text("keep me")
    with pytest.raises(localcluster.ClusterError, match="not a localcluster state dir"):
        localcluster.start(tmp_path, localcluster.ensure_binaries())
    localcluster.stop(tmp_path)
    assert (tmp_path / "precious.txt").read_text() == "keep me"


def test_cli_up_prints_kubeconfig_and_down_from_another_process_stops_everything(
    tmp_path: Path, cluster: localcluster.Cluster
) -> None:
    cli = [sys.executable, str(localcluster.repo_root() / "tools" / "localcluster.py")]
    state = tmp_path / "state"
    up = subprocess.run([*cli, "up", "--state", str(state)], capture_output=True, text=True,
                        timeout=240)
    assert up.returncode == 0, up.stderr
    kubeconfig = Path(up.stdout.strip())
    assert kubeconfig == state / "kubeconfig"
    pids = json.loads((state / "pids.json").read_text())
    assert sorted(pids) == sorted(localcluster.COMPONENTS)
    nodes = subprocess.run(["kubectl", "get", "nodes", "-o", "name"],
                           env={**cluster.env(), "KUBECONFIG": str(kubeconfig)},
                           capture_output=True, text=True, timeout=60)
    assert sorted(nodes.stdout.split()) == [
        "node/cpu-node-1", "node/gpu-node-1", "node/gpu-node-2"]

    down = subprocess.run([*cli, "down", "--state", str(state)], capture_output=True,
                          text=True, timeout=120)
    assert down.returncode == 0, down.stderr
    assert not state.exists()
    assert not [pid for pid in pids.values() if alive(pid)]


def alive(pid: int) -> bool:
    """Running, as opposed to gone or a zombie waiting for init to reap it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"
