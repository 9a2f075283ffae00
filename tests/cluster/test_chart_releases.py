"""The chart refuses a release whose operator would share a namespace with another release's:
two operators on one namespace both act on its models and keys (two keys minted for one
ApiKey). helm's `lookup` runs against a real API server (server-side dry runs); the other
release stands there as the RBAC objects the chart finds it by."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml

if TYPE_CHECKING:
    from conftest import Kubectl
    from localcluster import Cluster

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]
OTHER = "other"  # the release already installed
LABELS = {"app.kubernetes.io/part-of": "kuberank", "app.kubernetes.io/component": "operator",
          "app.kubernetes.io/managed-by": "Helm"}


def rbac(kind: str, name: str, release: str = OTHER, release_namespace: str = "kr-system",
         ) -> dict[str, Any]:
    """An operator's role as the chart makes it (labels, and Helm's own annotations)."""
    annotations = {"meta.helm.sh/release-name": release,
                   "meta.helm.sh/release-namespace": release_namespace}
    labels = {**LABELS, "app.kubernetes.io/instance": release,
              "app.kubernetes.io/name": "renamed"}  # nameOverride: part-of is kept
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": kind,
            "metadata": {"name": name, "labels": labels, "annotations": annotations},
            "rules": []}


def create_in(kubectl: Kubectl, namespace: str, obj: dict[str, Any]) -> None:
    kubectl.run("apply", f"--namespace={namespace}", "-f", "-", stdin=json.dumps(obj))


@pytest.fixture
def install(cluster: Cluster, namespace: str) -> Iterator[Any]:
    def dry_run(*values: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(cluster.bin_dir / "helm"), "install", "mine", str(REPO / "charts" / "kuberank"),
             "-n", namespace, "--dry-run=server", f"--kubeconfig={cluster.kubeconfig}",
             *values], capture_output=True, text=True, timeout=120)

    yield dry_run


def watching(*namespaces: str) -> str:
    return f"--set-json=operator.watchNamespaces={json.dumps(list(namespaces))}"


def test_a_release_sharing_a_namespace_with_another_releases_operator_is_refused(
    kubectl: Kubectl, install: Any, namespace: str,
) -> None:
    team_a, team_b = f"{namespace}-a", f"{namespace}-b"
    for ns in (team_a, team_b):
        kubectl.run("create", "namespace", ns)
    try:
        # The other release watches team-a; its leader-election Role lives in this namespace.
        create_in(kubectl, team_a, rbac("Role", f"{OTHER}-kuberank-operator"))
        create_in(kubectl, namespace, rbac("Role", f"{OTHER}-kuberank-operator-lease"))
        refused = install(watching(team_b, team_a))
        assert refused.returncode != 0
        assert (f'release "{OTHER}" (namespace "kr-system") already runs a kuberank operator '
                f'for namespace "{team_a}"' in refused.stderr), refused.stderr
        everywhere = install()  # a cluster-wide release would act on team-a too
        assert everywhere.returncode != 0
        assert f'for namespace "{team_a}"' in everywhere.stderr, everywhere.stderr
        # Disjoint namespaces are fine (its lease Role's namespace is not one it watches).
        beside = install(watching(team_b, namespace))
        assert beside.returncode == 0, beside.stderr
        # Where the installer may not read roles cluster-wide, the check can be turned off.
        unchecked = install(watching(team_a), "--set=operator.checkOtherReleases=false")
        assert unchecked.returncode == 0, unchecked.stderr
    finally:
        for ns in (team_a, team_b):
            kubectl.run("delete", "namespace", ns, "--wait=false")


def test_a_releases_own_roles_are_not_another_release(
    kubectl: Kubectl, install: Any, namespace: str,
) -> None:
    """An upgrade finds the release's own Role in the namespace it watches; a release of the
    same name in another namespace is another release."""
    team = f"{namespace}-t"
    kubectl.run("create", "namespace", team)
    try:
        create_in(kubectl, team, rbac("Role", "mine-kuberank-operator", "mine", namespace))
        upgrade = install(watching(team))
        assert upgrade.returncode == 0, upgrade.stderr
        create_in(kubectl, team, rbac("Role", "mine-x-operator", "mine", "elsewhere"))
        refused = install(watching(team))
        assert refused.returncode != 0
        assert (f'release "mine" (namespace "elsewhere") already runs a kuberank operator for '
                f'namespace "{team}"' in refused.stderr), refused.stderr
    finally:
        kubectl.run("delete", "namespace", team, "--wait=false")


def test_no_release_may_join_a_cluster_wide_one(kubectl: Kubectl, install: Any,
                                               namespace: str) -> None:
    kubectl.apply(rbac("ClusterRole", f"{namespace}-{OTHER}-kuberank-operator"))
    try:
        for values in ((), (watching(namespace),)):
            refused = install(*values)
            assert refused.returncode != 0
            assert (f'release "{OTHER}" (namespace "kr-system") already runs a cluster-wide '
                    'kuberank operator' in refused.stderr), refused.stderr
    finally:
        kubectl.run("delete", "clusterrole", f"{namespace}-{OTHER}-kuberank-operator")
    assert install(watching(namespace)).returncode == 0


def test_turning_gateway_autoscaling_on_keeps_the_live_replica_count(
    kubectl: Kubectl, install: Any, namespace: str,
) -> None:
    """The count was left out for the HPA: the upgrade that turned autoscaling on removed the
    field, and the API server made it 1 (the surplus gateway pods went at once). The live
    count is rendered instead, within the HPA's bounds."""
    labels = {"app": "gw"}
    create_in(kubectl, namespace, {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "mine-kuberank-gateway",  # as release "mine" left it
                     "labels": {"app.kubernetes.io/managed-by": "Helm"},
                     "annotations": {"meta.helm.sh/release-name": "mine",
                                     "meta.helm.sh/release-namespace": namespace}},
        "spec": {"replicas": 3, "selector": {"matchLabels": labels}, "template": {
            "metadata": {"labels": labels},
            "spec": {"containers": [{"name": "c", "image": "example.invalid/gw"}]}}}})

    def gateway_replicas(*values: str) -> int:
        # Watching its own namespace only: other tests' releases stand cluster-wide meanwhile.
        rendered = install(watching(namespace), "--set", "gateway.autoscaling.enabled=true",
                           *values)
        assert rendered.returncode == 0, rendered.stderr
        manifest = rendered.stdout.split("\nMANIFEST:\n", 1)[-1]
        gateway = next(d for d in yaml.safe_load_all(manifest) if d and d["kind"] == "Deployment"
                       and d["metadata"]["name"] == "mine-kuberank-gateway")
        return int(gateway["spec"]["replicas"])

    assert gateway_replicas() == 3
    assert gateway_replicas("--set", "gateway.autoscaling.maxReplicas=2") == 2
    assert gateway_replicas("--set", "gateway.autoscaling.minReplicas=4") == 4


def test_a_tenant_admin_installs_a_release_once_granted_the_installer_role(
    kubectl: Kubectl, cluster: Cluster, namespace: str,
) -> None:
    """README's tenant-admin install (--skip-crds, checkOtherReleases=false): Kubernetes'
    "admin" alone may not grant the chart's Roles (status, finalizers: RBAC refuses to grant
    what one does not hold); with examples/tenant-installer-role.yaml bound it may."""
    team, user = f"{namespace}-t", f"{namespace}-admin"

    def helm(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(cluster.bin_dir / "helm"), *args, "-n", namespace,
                               f"--kubeconfig={cluster.kubeconfig}"],
                              capture_output=True, text=True, timeout=120)

    def install_as_tenant() -> subprocess.CompletedProcess[str]:
        # A real install: a server-side dry run sends Helm's objects nowhere.
        return helm("install", "t", str(REPO / "charts" / "kuberank"), "--kube-as-user", user,
                    "--skip-crds", "--set=operator.checkOtherReleases=false",
                    "--set=rbac.aggregateToDefaultRoles=false", watching(team))

    kubectl.run("create", "namespace", team)
    try:
        for ns in (namespace, team):
            kubectl.run("create", "rolebinding", "tenant-admin", "-n", ns, "--clusterrole=admin",
                        f"--user={user}")
        refused = install_as_tenant()
        assert refused.returncode != 0
        assert "attempting to grant RBAC permissions not currently held" in refused.stderr
        assert helm("uninstall", "t", "--wait").returncode == 0  # the failed release
        kubectl.run("apply", "-f", str(REPO / "examples" / "tenant-installer-role.yaml"))
        for ns in (namespace, team):
            kubectl.run("create", "rolebinding", "kuberank-installer", "-n", ns,
                        "--clusterrole=kuberank-installer", f"--user={user}")
        installed = install_as_tenant()
        assert installed.returncode == 0, installed.stderr
        roles = kubectl.run("get", "roles", "-n", team, "-o", "name").stdout.split()
        assert sorted(roles) == ["role.rbac.authorization.k8s.io/t-kuberank-gateway",
                                 "role.rbac.authorization.k8s.io/t-kuberank-operator"]
    finally:
        helm("uninstall", "t", "--wait")
        kubectl.run("delete", "namespace", team, "--wait=false")
        # Cluster-scoped: the e2e's uninstall check, on the same API server, would find it.
        kubectl.run("delete", "clusterrole", "kuberank-installer", "--ignore-not-found")
