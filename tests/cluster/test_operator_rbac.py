"""An operator limited to some namespaces runs on exactly the RBAC the chart grants it there (the
Role `helm template` renders for `operator.watchNamespaces`, bound to its ServiceAccount's
token): it serves a model and a key, adds and removes a PDB, puts back an edited child and an
edited owner reference, and is never refused anything (the cluster enforces owner-reference
permissions, as OpenShift does), so it neither lacks a permission nor asks for a cluster-wide
one (kopf's scans of namespaces and CRDs were refused and retried for about a minute before it
started)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml
from conftest import start_operator
from denials import first_denial
from kuberank.operator.kube import Kube

if TYPE_CHECKING:
    from conftest import Kubectl
    from localcluster import Cluster

Wait = Callable[..., Any]
pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]
SHA = "0" * 64


def operator_rbac(cluster: Cluster, namespace: str) -> list[dict[str, Any]]:
    """The operator's ServiceAccount, Role and RoleBinding as the chart renders them for a
    release in ``namespace`` watching only ``namespace``."""
    rendered = subprocess.run(
        [str(cluster.bin_dir / "helm"), "template", "kr", str(REPO / "charts" / "kuberank"),
         "-n", namespace, f"--set-json=operator.watchNamespaces={json.dumps([namespace])}",
         "--set=operator.leaderElection.enabled=false"],
        capture_output=True, text=True, timeout=120, check=True).stdout
    docs = [d for d in yaml.safe_load_all(rendered) if d]
    wanted = [d for d in docs if d["kind"] in ("ServiceAccount", "Role", "RoleBinding")
              and d["metadata"]["labels"].get("app.kubernetes.io/component") == "operator"]
    assert sorted(d["kind"] for d in wanted) == ["Role", "RoleBinding", "ServiceAccount"], wanted
    return wanted


def token_kubeconfig(cluster: Cluster, token: str, path: Path) -> Path:
    """The cluster's kubeconfig with the admin's credentials swapped for ``token``."""
    config = yaml.safe_load(cluster.kubeconfig.read_text())
    for user in config["users"]:
        user["user"] = {"token": token}
    path.write_text(yaml.safe_dump(config))
    return path


def test_a_namespaced_operator_needs_nothing_but_the_charts_role(
    cluster: Cluster, kubectl: Kubectl, namespace: str, crds: Path, wait_for: Wait,
    tmp_path: Path,
) -> None:
    objects = operator_rbac(cluster, namespace)
    for obj in objects:
        kubectl.apply(obj)
    account = next(o for o in objects if o["kind"] == "ServiceAccount")["metadata"]["name"]
    token = kubectl.run("create", "token", account, "--duration=1h").stdout.strip()
    config = token_kubeconfig(cluster, token, tmp_path / "operator.kubeconfig")
    op = start_operator(config, namespace, tmp_path / "operator.log")
    try:
        kubectl.apply({"apiVersion": "kuberank.io/v1alpha1", "kind": "ApiKey",
                       "metadata": {"name": "app"}, "spec": {"models": ["*"]}})
        kubectl.apply({"apiVersion": "kuberank.io/v1alpha1", "kind": "RerankModel",
                       "metadata": {"name": "cpu"},
                       "spec": {"source": {"url": {"url": "https://models.example/m.gguf",
                                                   "sha256": SHA}},
                                "resources": {"gpus": 0}}})
        wait_for("the key's Secret and status", lambda: kubectl.get("secret", "app-key")
                 and ((kubectl.get("ak", "app") or {}).get("status") or {}).get("keyId"))
        wait_for("the model's Deployment and status",
                 lambda: kubectl.get("deployment", "rrm-cpu")
                 and ((kubectl.get("rrm", "cpu") or {}).get("status") or {}).get("conditions"))
        # Every other write the operator makes: a PDB for two replicas, a child someone edited
        # put back, the PDB deleted when one replica is left.
        # An owner reference someone edited is put back by the next apply, which the
        # admission plugin allows only to who may delete the child.
        kubectl.run("patch", "service", "rrm-cpu", "--type=json", "-p",
                    '[{"op": "replace", "path": "/metadata/ownerReferences/0/blockOwnerDeletion",'
                    ' "value": false}]')
        kubectl.run("scale", "rrm", "cpu", "--replicas=2")
        wait_for("the model's PDB", lambda: kubectl.get("pdb", "rrm-cpu"))
        wait_for("the Service's owner reference put back", lambda: (kubectl.get(
            "service", "rrm-cpu") or {})["metadata"]["ownerReferences"][0].get(
                "blockOwnerDeletion") is True)
        kubectl.run("patch", "service", "rrm-cpu", "--type=json", "-p",
                    '[{"op": "replace", "path": "/spec/ports/0/port", "value": 9999}]')
        wait_for("the edited Service put back", lambda: (kubectl.get("service", "rrm-cpu") or {})
                 .get("spec", {}).get("ports", [{}])[0].get("port") not in (None, 9999))
        kubectl.run("scale", "rrm", "cpu", "--replicas=1")
        wait_for("the PDB gone", lambda: kubectl.get("pdb", "rrm-cpu") is None)
        assert op.alive(), op.logs()[-3000:]
    finally:
        op.stop()
    assert (denied := first_denial(op.logs())) is None, denied


def test_what_the_api_server_serves_is_read_from_discovery(
    api_client: Any, crds: Path,
) -> None:
    """What a namespaced operator checks before it starts (it exits when the CRDs are not
    served, rather than idle): the installed group version, and one that does not exist."""
    kube = Kube(api_client)
    assert {"rerankmodels", "apikeys"} <= kube.served("kuberank.io/v1alpha1")
    assert kube.served("kuberank.io/v9") == set()
