"""The Helm chart: CRDs identical to crds/, lint clean, schema rejects bad values, checkov clean,
hardened pods; the images' Dockerfiles pass hadolint and share one install script with setup."""

from __future__ import annotations

import filecmp
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import buildtools
import pytest
import yaml
from kuberank.gateway.settings import OWN_SEGMENTS, GatewaySettings
from kuberank.operator.builders.meta import labels as runtime_pod_labels
from kuberank.operator.settings import OperatorSettings
from kuberank.protocol.dialects import Dialect
from kuberank.protocol.paths import SPELLINGS

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "kuberank"
ALL_FEATURES = [
    "--set",
    "gateway.ingress.enabled=true",
    "--set",
    "gateway.ingress.tls.enabled=true",
    "--set",
    "gateway.ingress.className=nginx",
    "--set",
    "gateway.autoscaling.enabled=true",
    "--set",
    "metrics.serviceMonitor.enabled=true",
    "--set",
    "metrics.podMonitor.enabled=true",
    "--set",
    "metrics.prometheusRule.enabled=true",
    "--set",
    "metrics.scrapeFrom[0].namespaceSelector.matchLabels.kubernetes\\.io/metadata\\.name=monitoring",
]
PROMETHEUS = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}


def _tool(name: str) -> str:
    """A linter (checkov, hadolint) from images/lint-tools.sh."""
    out = subprocess.run(["bash", str(REPO / "images" / "lint-tools.sh")],
                         capture_output=True, text=True, check=True)
    return str(Path(out.stdout.strip().splitlines()[-1]) / name)


@pytest.fixture(scope="module")
def helm() -> str:
    return buildtools.helm()


def render(helm: str, *args: str) -> list[dict[str, Any]]:
    proc = subprocess.run(
        [helm, "template", "kr", str(CHART), "--namespace", "kuberank-system", *args],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    return [d for d in yaml.safe_load_all(proc.stdout) if d]


def test_chart_crds_are_identical_to_the_generated_crds() -> None:
    top = sorted(p.name for p in (REPO / "crds").glob("*.yaml"))
    chart = sorted(p.name for p in (CHART / "crds").glob("*.yaml"))
    assert top == chart
    _, mismatch, errors = filecmp.cmpfiles(REPO / "crds", CHART / "crds", top, shallow=False)
    assert mismatch == [] and errors == [], "run kuberank-crds: it writes both copies"


@pytest.mark.parametrize("extra", [[], ALL_FEATURES, ["--set", "operator.watchNamespaces={a,b}"]])
def test_helm_lint_is_clean(helm: str, extra: list[str]) -> None:
    proc = subprocess.run(
        [helm, "lint", "--strict", str(CHART), *extra], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("gateway.replicas=0", "minimum"),
        ("gateway.bogus=1", "additional properties"),
        ("operator.image.pullPolicy=Sometimes", "value must be one of"),
        ("gateway.service.type=ExternalName", "value must be one of"),
        ("gateway.ingress.path=noslash", "pattern"),
        ("gateway.logLevel=loud", "value must be one of"),
        ("operator.watchNamespaces=team-a", "want array"),
        ("gateway.autoscaling.targetCPUUtilizationPercentage=150", "maximum"),
        ("metrics.scrapeFrom[0].namespace=monitoring", "additional properties"),
        ("metrics.serviceMonitor.interval=soon", "pattern"),
        ("operator.replicas=0", "minimum"),
        ("operator.leaderElection.leaseSeconds=1", "minimum"),
        ("gateway.maxBodyBytes=33554432", "maximum"),  # past what a runtime accepts
        ("gateway.maxDocuments=5000", "maximum"),
        ("gateway.keyUseSeconds=0", "minimum"),
        ("gateway.ingress.path=/v1", "gateway.ingress.path /v1 begins like the gateway's own"),
        ("gateway.ingress.path=/metrics/x", "begins like the gateway's own paths (/metrics/"),
        ("gateway.ingress.path=/models", "begins like the gateway's own paths (/models/"),
        ("operator.resources.limits.memory=4GB", "pattern"),
        ("gateway.ingress.host=a.*.example.com", "pattern"),
        ("gateway.ingress.path=/a b", "pattern"),
        ("fullnameOverride=" + "a" * 55, "maxLength"),
        ("operator.image.digest=abc", "pattern"),
        ("gateway.tolerations[0].efect=NoSchedule", "additional properties"),
        ("networkPolicy.gatewayFrom[0].namespaceSelectr.x=y", "additional properties"),
    ],
)
def test_values_schema_rejects_bad_values(helm: str, setting: str, message: str) -> None:
    proc = subprocess.run(
        [helm, "template", "kr", str(CHART), "--set", setting], capture_output=True, text=True
    )
    assert proc.returncode != 0
    assert message in proc.stderr


@pytest.mark.parametrize("segment", sorted(OWN_SEGMENTS))
def test_the_chart_refuses_an_ingress_path_under_each_of_the_gateways_own_segments(
    helm: str, segment: str
) -> None:
    """The chart lists the gateway's own first segments by hand: a new one must be added there."""
    proc = subprocess.run(
        [helm, "template", "kr", str(CHART), "--set", f"gateway.ingress.path=/{segment}/x"],
        capture_output=True, text=True,
    )
    assert proc.returncode != 0
    assert f"begins like the gateway's own paths (/{segment}/" in proc.stderr


def test_optional_ingress_carries_class_host_tls_and_annotations(helm: str) -> None:
    docs = render(
        helm,
        *ALL_FEATURES,
        "--set",
        "gateway.ingress.host=rr.example.org",
        "--set",
        "gateway.ingress.annotations.team=search",
    )
    ingress = next(d for d in docs if d["kind"] == "Ingress")
    assert ingress["spec"]["ingressClassName"] == "nginx"
    assert ingress["spec"]["tls"] == [{"hosts": ["rr.example.org"], "secretName": "rerank-tls"}]
    assert ingress["spec"]["rules"][0]["host"] == "rr.example.org"
    assert ingress["metadata"]["annotations"]["team"] == "search"
    gateway = next(
        d for d in docs if d["kind"] == "Deployment" and "gateway" in d["metadata"]["name"]
    )
    # The HPA owns the count; with no live Deployment to keep, it starts at minReplicas (2).
    assert gateway["spec"]["replicas"] == 2
    assert any(d["kind"] == "HorizontalPodAutoscaler" for d in docs)


def test_ingress_nginx_gets_the_gateways_body_limit_and_waits_unless_told_otherwise(
    helm: str,
) -> None:
    """nginx's own 1m body cap and 60 s timeouts would answer in HTML before the gateway."""
    def annotations(*extra: str) -> dict[str, str]:
        ingress = next(d for d in render(helm, "--set", "gateway.ingress.enabled=true", *extra)
                       if d["kind"] == "Ingress")
        found: dict[str, str] = ingress["metadata"].get("annotations") or {}
        return found

    nginx = "nginx.ingress.kubernetes.io/"
    assert annotations("--set", "gateway.ingress.className=nginx") == {
        nginx + "proxy-body-size": str(8 * 1024 * 1024),
        nginx + "proxy-read-timeout": "305",  # a scale-to-zero wake may hold a request 300 s
        nginx + "proxy-send-timeout": "305",
    }
    escaped = nginx.replace(".", "\\.")  # --set splits keys at unescaped dots
    mine = annotations("--set", "gateway.ingress.className=nginx", "--set",
                       "gateway.upstreamTimeoutSeconds=600", "--set-string",
                       f"gateway.ingress.annotations.{escaped}proxy-body-size=1m")
    assert mine[nginx + "proxy-body-size"] == "1m" and mine[nginx + "proxy-read-timeout"] == "605"
    assert annotations("--set", "gateway.ingress.className=traefik") == {}
    assert annotations("--set", "gateway.ingress.className=nginx-internal")[
        nginx + "proxy-body-size"] == str(8 * 1024 * 1024)


def test_ingress_exposes_the_rerank_api_and_never_metrics_or_probes(helm: str) -> None:
    def paths(*extra: str) -> list[str]:
        ingress = next(d for d in render(helm, *ALL_FEATURES, *extra) if d["kind"] == "Ingress")
        return [p["path"] for p in ingress["spec"]["rules"][0]["http"]["paths"]]

    assert paths() == ["/v1/rerank", "/v2/rerank", "/rerank", "/v1/models", "/v1/reranking",
                       "/reranking", "/models"]
    assert paths("--set", "gateway.ingress.path=/search/") == [
        "/search/v1/rerank", "/search/v2/rerank", "/search/rerank", "/search/v1/models",
        "/search/v1/reranking", "/search/reranking", "/search/models"]
    # ... and the gateway, told the prefix, serves what the Ingress forwards unstripped
    docs = render(helm, *ALL_FEATURES, "--set", "gateway.ingress.path=/search/")
    gateway = next(d for d in docs if d["kind"] == "Deployment"
                   and d["metadata"]["name"] == "kr-kuberank-gateway")
    (container,) = gateway["spec"]["template"]["spec"]["containers"]
    prefix = next(e["value"] for e in container["env"] if e["name"].endswith("PATH_PREFIX"))
    assert GatewaySettings(path_prefix=prefix).path_prefix == "/search"


def test_ingress_paths_are_the_gateways_dialects_and_model_list(helm: str) -> None:
    """The chart lists the paths by hand: a new dialect (or spelling) must be added there too."""
    ingress = next(d for d in render(helm, *ALL_FEATURES) if d["kind"] == "Ingress")
    paths = {p["path"] for p in ingress["spec"]["rules"][0]["http"]["paths"]}
    assert paths == {d.value for d in Dialect} | {"/v1/models", "/models"} | set(SPELLINGS)


def test_monitors_scrape_the_gateway_service_and_every_models_runtime_pods(helm: str) -> None:
    docs = render(helm, *ALL_FEATURES, "--set", "metrics.serviceMonitor.labels.release=prom",
                  "--set", "metrics.podMonitor.interval=15s")
    service = next(d for d in docs if d["kind"] == "Service" and "gateway" in d["metadata"]["name"])
    monitor = next(d for d in docs if d["kind"] == "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "prom"
    selected = monitor["spec"]["selector"]["matchLabels"]
    assert selected.items() <= service["metadata"]["labels"].items()
    # honorLabels: the gateway's per-model series keep the tenant's namespace label
    assert monitor["spec"]["endpoints"] == [
        {"port": "http", "path": "/metrics", "interval": "30s", "honorLabels": True}]
    operator_monitor = next(d for d in docs if d["kind"] == "PodMonitor"
                            and d["metadata"]["name"].endswith("operator"))["spec"]
    operator_pod = next(d for d in docs if d["kind"] == "Deployment"
                        and d["metadata"]["name"].endswith("operator"))["spec"]["template"]
    assert operator_monitor["selector"]["matchLabels"].items() <= (
        operator_pod["metadata"]["labels"].items())
    assert operator_monitor["podMetricsEndpoints"] == [
        {"port": "metrics", "path": "/metrics", "interval": "15s", "honorLabels": True}]
    assert {"name": "metrics", "containerPort": 8082, "protocol": "TCP"} in (
        operator_pod["spec"]["containers"][0]["ports"])
    pods = next(d for d in docs if d["kind"] == "PodMonitor"
                and d["metadata"]["name"].endswith("runtime"))["spec"]
    assert pods["namespaceSelector"] == {"any": True}
    assert pods["podMetricsEndpoints"] == [{"port": "http", "path": "/metrics", "interval": "15s"}]
    assert pods["selector"]["matchLabels"].items() <= runtime_pod_labels("bge").items()
    # each runtime series names its model (label kuberank_io_model), as the dashboard expects
    assert pods["podTargetLabels"] == ["kuberank.io/model"]
    assert runtime_pod_labels("bge")["kuberank.io/model"] == "bge"
    scoped = render(helm, *ALL_FEATURES, "--set", "operator.watchNamespaces={a,b}")
    assert next(d for d in scoped if d["kind"] == "PodMonitor")["spec"]["namespaceSelector"] == {
        "matchNames": ["a", "b"]}


def test_scrape_from_reaches_the_operator_and_the_narrowed_gateway_policy(helm: str) -> None:
    docs = render(helm, "--set-json", f"metrics.scrapeFrom={json.dumps([PROMETHEUS])}",
                  "--set-json", 'networkPolicy.gatewayFrom=[{"podSelector": {}}]')
    operator = next(d for d in docs if d["kind"] == "Deployment" and "operator" in
                    d["metadata"]["name"])
    env = {e["name"]: e.get("value") for e in operator["spec"]["template"]["spec"]["containers"][0]
           ["env"]}
    assert OperatorSettings(metrics_from=json.loads(env["KUBERANK_METRICS_FROM"])).metrics_from == [
        PROMETHEUS]
    policy = next(d for d in docs if d["kind"] == "NetworkPolicy" and "gateway" in
                  d["metadata"]["name"])
    assert policy["spec"]["ingress"][0]["from"] == [{"podSelector": {}}, PROMETHEUS]
    gateway = next(d for d in docs if d["kind"] == "Deployment" and "gateway" in
                   d["metadata"]["name"])
    assert gateway["spec"]["template"]["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
    assert not any(d["kind"] in ("ServiceMonitor", "PodMonitor") for d in docs)  # opt-in


def test_defaults_render_no_ingress_no_hpa_and_one_operator(helm: str) -> None:
    docs = render(helm)
    kinds = {d["kind"] for d in docs}
    assert "Ingress" not in kinds and "HorizontalPodAutoscaler" not in kinds
    operator = next(
        d
        for d in docs
        if d["metadata"]["name"] == "kr-kuberank-operator" and d["kind"] == "Deployment"
    )
    assert operator["spec"]["replicas"] == 1


def _operator_deployment(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return next(d for d in docs if d["kind"] == "Deployment"
                and d["metadata"]["name"] == "kr-kuberank-operator")


def test_operator_replicas_elect_a_leader_through_a_lease_in_the_release_namespace(
    helm: str,
) -> None:
    docs = render(helm, "--set", "operator.replicas=2", "--set",
                  "operator.leaderElection.leaseSeconds=20")
    deployment = _operator_deployment(docs)
    assert deployment["spec"]["replicas"] == 2
    # the new pod stands by until the old one hands the Lease over on SIGTERM
    assert deployment["spec"]["strategy"] == {
        "type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    env = {e["name"]: e for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    values = {name: e.get("value") for name, e in env.items()}
    settings = OperatorSettings(
        leader_elect=values["KUBERANK_LEADER_ELECT"],
        lease_namespace=values["KUBERANK_LEASE_NAMESPACE"],
        lease_name=values["KUBERANK_LEASE_NAME"],
        lease_seconds=values["KUBERANK_LEASE_SECONDS"],
    )
    assert (settings.leader_elect, settings.lease_namespace, settings.lease_name,
            settings.lease_seconds) == (True, "kuberank-system", "kr-kuberank-operator", 20)
    assert env["KUBERANK_IDENTITY"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    # runtime NetworkPolicies admit this release's gateway pods, not look-alikes elsewhere
    assert OperatorSettings(gateway_namespace=values["KUBERANK_GATEWAY_NAMESPACE"]
                            ).gateway_namespace == "kuberank-system"
    role = next(d for d in docs if d["kind"] == "Role"
                and d["metadata"]["name"] == "kr-kuberank-operator-lease")
    assert role["metadata"]["namespace"] == "kuberank-system"
    assert role["rules"] == [{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
                              "verbs": ["get", "create", "update"]}]
    binding = next(d for d in docs if d["kind"] == "RoleBinding"
                   and d["metadata"]["name"] == "kr-kuberank-operator-lease")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "kr-kuberank-operator",
                                    "namespace": "kuberank-system"}]
    [budget] = [d for d in docs if d["kind"] == "PodDisruptionBudget"
                and d["metadata"]["name"] == "kr-kuberank-operator"]
    assert budget["spec"]["maxUnavailable"] == 1  # a drain keeps one replica
    assert budget["spec"]["selector"]["matchLabels"].items() <= (
        deployment["spec"]["template"]["metadata"]["labels"].items())
    # one replica: no budget, which would block every drain of its node
    assert not any(d["kind"] == "PodDisruptionBudget" and d["metadata"]["name"] ==
                   "kr-kuberank-operator" for d in render(helm))


def test_gateway_drains_and_gets_the_grace_to_finish_requests_in_flight(helm: str) -> None:
    def gateway_pod(*args: str) -> dict[str, Any]:
        docs = render(helm, *args)
        deployment = next(d for d in docs if d["kind"] == "Deployment"
                          and d["metadata"]["name"] == "kr-kuberank-gateway")
        return dict(deployment["spec"]["template"]["spec"])

    pod = gateway_pod()
    env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
    assert env["KUBERANK_GATEWAY_DRAIN_SECONDS"] == "5"
    # idle client connections outlive the proxies' (ingress-nginx keeps its own for 60 s)
    assert GatewaySettings(keep_alive_seconds=env["KUBERANK_GATEWAY_KEEP_ALIVE_SECONDS"]
                           ).keep_alive_seconds == 75 > 60
    assert GatewaySettings(access_log=env["KUBERANK_GATEWAY_ACCESS_LOG"]).access_log is False
    assert GatewaySettings(read_timeout=env["KUBERANK_GATEWAY_READ_TIMEOUT"]).read_timeout == 60
    assert pod["terminationGracePeriodSeconds"] == 5 + 60 + 5  # drain + upstream timeout
    pod = gateway_pod("--set", "gateway.drainSeconds=0", "--set-json",
                      "gateway.upstreamTimeoutSeconds=2.5")
    assert pod["terminationGracePeriodSeconds"] == 0 + 3 + 5
    # a model with a longer limits.timeoutSeconds needs a longer grace: set it outright
    assert gateway_pod("--set", "gateway.terminationGracePeriodSeconds=600")[
        "terminationGracePeriodSeconds"] == 600


def test_gateway_and_operator_replicas_spread_over_nodes_softly_unless_turned_off(
    helm: str,
) -> None:
    deployments = {d["metadata"]["name"]: d for d in render(helm) if d["kind"] == "Deployment"}
    for component in ("gateway", "operator"):
        pod = deployments[f"kr-kuberank-{component}"]["spec"]["template"]
        [spread] = pod["spec"]["topologySpreadConstraints"]
        # soft: a single-node cluster still schedules every replica
        assert spread["whenUnsatisfiable"] == "ScheduleAnyway"
        assert spread["topologyKey"] == "kubernetes.io/hostname"
        selector = spread["labelSelector"]["matchLabels"]
        assert selector.items() <= pod["metadata"]["labels"].items()
        assert selector["app.kubernetes.io/component"] == component
    off = render(helm, "--set", "gateway.spreadOverNodes=false",
                 "--set", "operator.spreadOverNodes=false")
    assert not any("topologySpreadConstraints" in d["spec"]["template"]["spec"]
                   for d in off if d["kind"] == "Deployment")


def test_without_leader_election_the_operator_is_one_replica_replaced_by_recreate(
    helm: str,
) -> None:
    docs = render(helm, "--set", "operator.leaderElection.enabled=false")
    deployment = _operator_deployment(docs)
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    env = {e["name"] for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert not any(name.startswith("KUBERANK_LEASE") for name in env)
    assert not any(d["metadata"]["name"].endswith("operator-lease") for d in docs)
    refused = subprocess.run(
        [helm, "template", "kr", str(CHART), "--set", "operator.leaderElection.enabled=false",
         "--set", "operator.replicas=2"], capture_output=True, text=True)
    assert refused.returncode != 0
    assert "operator.replicas > 1 needs operator.leaderElection.enabled=true" in refused.stderr


@pytest.mark.parametrize(("values", "message"), [
    (["operator.metricsPort=8081"], "operator.metricsPort and operator.healthPort must differ"),
    (["gateway.autoscaling.enabled=true", "gateway.autoscaling.minReplicas=5",
      "gateway.autoscaling.maxReplicas=3"], "minReplicas must not exceed"),
    (["nameOverride=Ranker"], "nameOverride"),  # names of objects are lower case
    (["operator.runtimeImage=reg.example/runtime@sha256:" + "a" * 64],
     "set operator.runtimeCpuImage too"),  # the operator would refuse to start
    # the roles would be bound to the namespace's default ServiceAccount
    (["operator.serviceAccount.create=false"], "operator.serviceAccount.name is needed"),
    (["gateway.serviceAccount.create=false"], "gateway.serviceAccount.name is needed"),
    (["operator.serviceAccount.name=kr", "gateway.serviceAccount.name=kr"], "must differ"),
    (["operator.watchNamespaces={team-a}", "gateway.watchNamespaces={team-a,team-b}"],
     'gateway.watchNamespaces holds "team-b"'),
    (["operator.serviceAccount.create=false", "operator.serviceAccount.name=default"],
     "operator.serviceAccount.name may not be default"),
    (["gateway.serviceAccount.name=default"], "gateway.serviceAccount.name may not be default"),
    (["metrics.podMonitor.enabled=true"], "metrics.podMonitor needs metrics.scrapeFrom"),
    # every model's NetworkPolicy is the operator's, made whatever the chart's own switch says
    (["metrics.podMonitor.enabled=true", "networkPolicy.enabled=false"],
     "metrics.podMonitor needs metrics.scrapeFrom"),
    (["gateway.extraEnv[0].name=KUBERANK_GATEWAY_DRAIN_SECONDS", "gateway.extraEnv[0].value=9"],
     "gateway.extraEnv may not set KUBERANK_GATEWAY_DRAIN_SECONDS"),
    (["operator.extraEnv[0].name=KUBERANK_NAMESPACES", "operator.extraEnv[0].value=a"],
     "operator.extraEnv may not set KUBERANK_NAMESPACES"),
    (["commonLabels.app\\.kubernetes\\.io/part-of=acme"],
     "commonLabels may not set app.kubernetes.io/part-of"),
    (["gateway.podLabels.app\\.kubernetes\\.io/component=x"],
     "gateway.podLabels may not set app.kubernetes.io/component"),
])
def test_values_that_would_break_a_pod_are_refused_by_helm(
    helm: str, values: list[str], message: str
) -> None:
    argv = [a for v in values for a in ("--set", v)]
    refused = subprocess.run([helm, "template", "kr", str(CHART), *argv],
                             capture_output=True, text=True)
    assert refused.returncode != 0 and message in refused.stderr, refused.stderr


def test_a_cluster_wide_operator_may_read_crds_as_kopf_watches_them(helm: str) -> None:
    role = next(d for d in render(helm) if d["kind"] == "ClusterRole"
                and d["metadata"]["name"] == "kr-kuberank-kuberank-system-operator")
    assert {"apiGroups": ["apiextensions.k8s.io"], "resources": ["customresourcedefinitions"],
            "verbs": ["get", "list", "watch"]} in role["rules"]


def test_watch_namespaces_turn_cluster_roles_into_roles(helm: str) -> None:
    docs = render(
        helm,
        "--set",
        "operator.watchNamespaces={team-a,team-b}",
        "--set",
        "gateway.watchNamespaces={team-a}",
    )
    roles = sorted(  # the operator's and gateway's (tenants' aggregated roles are apart)
        (d["kind"], d["metadata"].get("namespace", "")) for d in docs
        if "Role" in d["kind"] and "-tenant-" not in d["metadata"]["name"]
        and "-tenant-" not in d.get("roleRef", {}).get("name", "")
    )
    assert ("ClusterRole", "") not in roles
    assert roles.count(("Role", "team-a")) == 2 and roles.count(("Role", "team-b")) == 1
    # the gateway reads its own Service's slices in the release namespace (its replica count)
    peers = [d for d in docs if d["kind"] == "Role" and d["metadata"]["name"].endswith("peers")]
    assert [(r["metadata"]["namespace"], r["rules"][0]["resources"]) for r in peers] == [
        ("kuberank-system", ["endpointslices"])]
    gateway = next(d for d in docs if d["kind"] == "Deployment"
                   and d["metadata"]["name"].endswith("gateway"))
    container = gateway["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["KUBERANK_GATEWAY_PEERS"] == "kuberank-system/kr-kuberank-gateway"


def test_gateway_rbac_writes_only_model_scale_and_model_and_key_status(helm: str) -> None:
    docs = render(helm)
    role = next(
        d for d in docs if d["kind"] == "ClusterRole" and d["metadata"]["name"].endswith("gateway")
    )
    writes = {
        (resource, verb)
        for rule in role["rules"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
        if verb not in ("get", "list", "watch")
    }
    # scaleToZero: wake a model (scale subresource), stamp status.lastRequestTime; and stamp
    # each key's status.lastUsedTime
    assert writes == {("rerankmodels/scale", "update"), ("rerankmodels/status", "patch"),
                      ("apikeys/status", "patch")}
    assert all(
        "*" not in rule["resources"]
        for d in docs
        if "Role" in d["kind"]
        for rule in d.get("rules", [])
    )


def test_operator_rbac_writes_only_what_the_operator_calls(helm: str) -> None:
    """Key Secrets are applied, never updated; finalizers may be set and children deleted, as
    owner-reference enforcement requires (to set blockOwnerDeletion, and to put back an owner
    reference someone edited), though the operator deletes only PDBs itself."""
    role = next(d for d in render(helm) if d["kind"] == "ClusterRole"
                and d["metadata"]["name"].endswith("-operator"))
    writes = {(resource, verb) for rule in role["rules"] for resource in rule["resources"]
              for verb in rule["verbs"] if verb not in ("get", "list", "watch")}
    children = {(kind, verb) for kind in ("deployments", "services", "networkpolicies",
                                          "poddisruptionbudgets")
                for verb in ("create", "patch", "update", "delete")}
    assert writes == children | {
        ("rerankmodels", "patch"), ("apikeys", "patch"),
        ("rerankmodels/status", "patch"), ("apikeys/status", "patch"),
        ("rerankmodels/finalizers", "update"), ("apikeys/finalizers", "update"),
        ("rerankmodels/scale", "update"),
        ("secrets", "create"), ("secrets", "patch"), ("secrets", "delete"), ("events", "create"),
    }


def test_pods_meet_pod_security_restricted(helm: str) -> None:
    for dep in (d for d in render(helm, *ALL_FEATURES) if d["kind"] == "Deployment"):
        pod = dep["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        for c in pod["containers"]:
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False
            assert sc["capabilities"] == {"drop": ["ALL"]}
            assert c["command"][0].startswith("kuberank-")
        assert not pod.get("hostNetwork") and not pod.get("hostPID")


def test_checkov_passes_and_every_skip_has_a_reason(helm: str, tmp_path: Path) -> None:
    rendered = tmp_path / "rendered.yaml"
    rendered.write_text(yaml.safe_dump_all(render(helm, *ALL_FEATURES)))
    proc = subprocess.run(
        [
            _tool("checkov"),
            "-f",
            str(rendered),
            "--framework",
            "kubernetes",
            "--skip-download",
            "-o",
            "json",
        ],
        capture_output=True,
        text=True,
    )
    report = json.loads(proc.stdout)
    assert report["results"]["failed_checks"] == [], proc.stdout[:2000]
    assert report["summary"]["passed"] > 100
    assert report["summary"]["skipped"] == len(report["results"]["skipped_checks"]) > 0
    for skipped in report["results"]["skipped_checks"]:
        assert len(skipped["check_result"].get("suppress_comment", "")) > 20, skipped["check_id"]


def test_dockerfiles_pass_hadolint() -> None:
    files = [str(REPO / "images" / "Dockerfile"), str(REPO / "images" / "Dockerfile.runtime")]
    proc = subprocess.run([_tool("hadolint"), *files], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_images_and_setup_install_through_the_same_script() -> None:
    for path in ("images/Dockerfile", "images/Dockerfile.runtime", "scripts/setup.sh"):
        text = (REPO / path).read_text()
        assert "images/install.sh" in text, path
        assert "pip install" not in text.replace("images/install.sh", ""), path


def test_runtime_image_builds_cuda_by_default_with_a_cpu_variant() -> None:
    text = (REPO / "images" / "Dockerfile.runtime").read_text()
    assert "ARG ACCEL=cuda" in text and "nvidia/cuda" in text and "-devel-" in text
    assert "USER 65532" in text
    assert text.count("FROM ") == 2  # builder stage, then the slim runtime stage


def test_runtime_image_compiles_llama_cpp_for_any_node_not_the_builder() -> None:
    """An image built with -march=native on an AVX-512 host dies of SIGILL on older nodes."""
    assert "KUBERANK_PORTABLE=1 bash images/install.sh" in (
        REPO / "images" / "Dockerfile.runtime").read_text()
    proc = subprocess.run(["bash", "images/install.sh", "--print-cmake-args"], cwd=REPO,
                          env={"PATH": "/usr/bin:/bin", "KUBERANK_PORTABLE": "1"},
                          capture_output=True, text=True, check=True)
    flags = proc.stdout.split()
    assert "-DGGML_NATIVE=OFF" in flags and "-DGGML_AVX2=ON" in flags
    assert "-DLLAVA_BUILD=OFF" in flags
    local = subprocess.run(["bash", "images/install.sh", "--print-cmake-args"], cwd=REPO,
                           env={"PATH": "/usr/bin:/bin"}, capture_output=True, text=True,
                           check=True).stdout.split()
    assert "-DGGML_NATIVE=OFF" not in local  # scripts/setup.sh builds for this machine
    cuda = subprocess.run(["bash", "images/install.sh", "--print-cmake-args"], cwd=REPO,
                          env={"PATH": "/usr/bin:/bin", "KUBERANK_PORTABLE": "1",
                               "KUBERANK_ACCEL": "cuda"},
                          capture_output=True, text=True, check=True).stdout.split()
    archs = next(f for f in cuda if f.startswith("-DCMAKE_CUDA_ARCHITECTURES="))
    assert "80-real" in archs and archs.endswith(";90")  # A100 code, PTX for what comes next
    assert "CUDA_CACHE_PATH=/tmp/" in (REPO / "images" / "Dockerfile.runtime").read_text()


@pytest.mark.parametrize(("values", "pdb"), [
    ([], True),  # 2 replicas, at least 1 available
    (["gateway.replicas=1"], False),  # minAvailable 1 of 1 would block every drain
    (["gateway.autoscaling.enabled=true", "gateway.autoscaling.minReplicas=3"], True),
])
def test_the_gateway_pdb_is_rendered_only_when_an_eviction_can_satisfy_it(
    helm: str, values: list[str], pdb: bool
) -> None:
    docs = render(helm, *[a for v in values for a in ("--set", v)])
    assert any(d["kind"] == "PodDisruptionBudget" and d["metadata"]["name"] == "kr-kuberank-gateway"
               for d in docs) is pdb


def test_runtime_pods_pull_a_digest_pinned_image_with_the_secrets_given(
    helm: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    gpu, cpu = "reg.corp/kuberank/runtime@sha256:" + "a" * 64, "reg.corp/kuberank/cpu:1"
    docs = render(helm, "--set", f"operator.runtimeImage={gpu}", "--set",
                  f"operator.runtimeCpuImage={cpu}", "--set",
                  "operator.runtimeImagePullSecrets={corp-pull,mirror}")
    env = _operator_deployment(docs)["spec"]["template"]["spec"]["containers"][0]["env"]
    for variable in env:
        if "value" in variable:
            monkeypatch.setenv(variable["name"], variable["value"])
    settings = OperatorSettings()
    assert (settings.runtime_image, settings.cpu_runtime_image) == (gpu, cpu)
    assert settings.runtime_image_pull_secrets == ["corp-pull", "mirror"]
    monkeypatch.setenv("KUBERANK_RUNTIME_CPU_IMAGE", "")
    with pytest.raises(ValueError, match="pinned by digest"):
        OperatorSettings()  # a digest has no tag to derive the CPU image from
    refused = subprocess.run(
        [helm, "template", "kr", str(CHART), "--set",
         "operator.runtimeImagePullSecrets={Bad_Name}"], capture_output=True, text=True)
    assert refused.returncode != 0 and "runtimeImagePullSecrets" in refused.stderr


def test_tenants_get_models_and_keys_through_the_default_view_edit_and_admin_roles(
    helm: str,
) -> None:
    roles = {d["metadata"]["name"]: d for d in render(helm) if d["kind"] == "ClusterRole"
             and d["metadata"]["name"].startswith("kr-kuberank-kuberank-system-tenant-")}
    aggregate = "rbac.authorization.k8s.io/aggregate-to-"
    tenant = "kr-kuberank-kuberank-system-tenant-"  # cluster-scoped: the namespace is in it
    view, edit = roles[tenant + "view"], roles[tenant + "edit"]
    assert {k for k in view["metadata"]["labels"] if k.startswith(aggregate)} == {
        aggregate + "view", aggregate + "edit", aggregate + "admin"}
    assert {k for k in edit["metadata"]["labels"] if k.startswith(aggregate)} == {
        aggregate + "edit", aggregate + "admin"}
    granted = [(r, v) for role in (view, edit) for rule in role["rules"]
               for r in rule["resources"] for v in rule["verbs"]]
    assert ("rerankmodels", "create") in granted and ("apikeys", "delete") in granted
    assert ("rerankmodels/scale", "update") in granted
    assert not [r for r, _ in granted if r.endswith("/status") or r == "secrets"]
    viewed = {v for rule in view["rules"] for v in rule["verbs"]}
    assert viewed == {"get", "list", "watch"}  # viewers change nothing
    off = render(helm, "--set", "rbac.aggregateToDefaultRoles=false")
    assert not [d for d in off if d["metadata"]["name"].startswith(tenant)]


def test_how_often_a_keys_last_use_is_written_is_the_platforms_to_choose(helm: str) -> None:
    docs = render(helm, "--set", "gateway.keyUseSeconds=300")
    gateway = next(d for d in docs if d["kind"] == "Deployment"
                   and d["metadata"]["name"] == "kr-kuberank-gateway")
    (container,) = gateway["spec"]["template"]["spec"]["containers"]
    value = next(e["value"] for e in container["env"] if e["name"].endswith("KEY_USE_SECONDS"))
    assert GatewaySettings(key_use_seconds=value).key_use_seconds == 300


def rendered_notes(helm: str, tmp_path: Path, *args: str) -> str:
    """NOTES.txt as `helm install` prints it (helm template leaves NOTES out: a copy of the
    chart renders it as a value)."""
    chart = tmp_path / "chart"
    shutil.copytree(CHART, chart)
    (chart / "templates" / "NOTES.txt").rename(chart / "notes.src")
    (chart / "templates" / "notes.yaml").write_text(
        'notes: {{ tpl (.Files.Get "notes.src") . | toJson }}\n')
    out = subprocess.run([helm, "template", "kr", str(chart), "-n", "kuberank-system",
                          "--show-only", "templates/notes.yaml", *args],
                         capture_output=True, text=True, check=True).stdout
    return str(yaml.safe_load(out)["notes"])


@pytest.mark.parametrize(("values", "namespace", "created"), [
    ([], "team-a", True),
    (["--set-json", 'operator.watchNamespaces=["team-b"]'], "team-b", False),  # it exists
    (["--set-json", 'operator.watchNamespaces=["team-b","team-c"]',
      "--set-json", 'gateway.watchNamespaces=["team-c"]'], "team-c", False),  # the gateway's
])
def test_notes_commands_run_as_pasted_in_the_namespace_the_operator_watches(
    helm: str, tmp_path: Path, values: list[str], namespace: str, created: bool
) -> None:
    """The command blocks of steps 1 and 2 pasted into bash apply a RerankModel and an ApiKey,
    each on its own, in a namespace the operator watches (a kubectl on PATH records what it
    is given)."""
    notes = rendered_notes(helm, tmp_path, *values)
    prose_dropped = [line for line in notes[notes.index("\n1. "):notes.index("\n3. ")]
                     .splitlines() if line.startswith("  ") or line == "YAML"]
    steps = "\n".join(prose_dropped) + "\n"
    calls = tmp_path / "calls"
    calls.mkdir()
    recorder = tmp_path / "bin" / "kubectl"
    recorder.parent.mkdir()
    recorder.write_text('#!/bin/bash\nn=$(ls "$CALLS"/*.args 2>/dev/null | wc -l)\n'
                        'echo "$*" > "$CALLS/$n.args"\n'
                        'if [ "$1" = apply ]; then cat > "$CALLS/$n.stdin"; fi\n')
    recorder.chmod(0o755)
    ran = subprocess.run(["bash", "-e"], input=steps, capture_output=True, text=True,
                         env={"PATH": f"{recorder.parent}:/usr/bin:/bin", "CALLS": str(calls)})
    assert ran.returncode == 0 and not ran.stderr, ran.stderr
    args = [(calls / f"{n}.args").read_text().split() for n in range(len(list(
        calls.glob("*.args"))))]
    creates = [["create", "namespace", namespace]] if created else []
    assert [a[:3] for a in args] == [*creates, ["apply", "-n", namespace],
                                     ["get", "rerankmodels", "-n"], ["apply", "-n", namespace]]
    first = len(creates)
    applied = [yaml.safe_load((calls / f"{n}.stdin").read_text()) for n in (first, first + 2)]
    assert [(d["kind"], d["metadata"]["name"]) for d in applied] == [
        ("RerankModel", "bge-reranker-v2-m3"), ("ApiKey", "my-app")]


def _unique_keys(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    keys = [loader.construct_object(key) for key, _ in node.value]
    assert len(keys) == len(set(keys)), f"a key twice in one mapping: {keys}"
    return loader.construct_mapping(node)


class _StrictLoader(yaml.SafeLoader):
    """YAML as strict tools (yamllint, kubeconform --strict) read it: no key twice."""


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _unique_keys)


def test_every_object_of_a_release_is_found_by_its_instance_label_and_labels_merge(
    helm: str,
) -> None:
    """NetworkPolicies, tenant roles and monitoring objects lacked name and instance; a label
    in commonLabels and in podLabels (or a monitor's labels) was written twice."""
    out = subprocess.run(
        [helm, "template", "kr", str(CHART), "-n", "kuberank-system",
         "--set", "commonLabels.team=a", "--set", "operator.podLabels.team=b",
         "--set", "metrics.serviceMonitor.enabled=true",
         "--set", "metrics.serviceMonitor.labels.team=c",
         "--set", "metrics.podMonitor.enabled=true",
         "--set", "metrics.prometheusRule.enabled=true",
         "--set", "metrics.grafanaDashboard.enabled=true",
         "--set-json", 'metrics.scrapeFrom=[{"podSelector": {}}]'],
        capture_output=True, text=True, check=True).stdout
    docs = [d for d in yaml.load_all(out, Loader=_StrictLoader) if d]
    assert len({d["kind"] for d in docs}) >= 12
    for doc in docs:
        labels = doc["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == "kuberank", doc["kind"]
        assert labels["app.kubernetes.io/instance"] == "kr", doc["kind"]
    by_kind = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    operator = by_kind[("Deployment", "kr-kuberank-operator")]
    assert operator["spec"]["template"]["metadata"]["labels"]["team"] == "b"
    assert operator["metadata"]["labels"]["team"] == "a"
    assert by_kind[("ServiceMonitor", "kr-kuberank-gateway")]["metadata"]["labels"]["team"] == "c"


def test_names_stay_within_63_characters_for_the_longest_release_name(helm: str) -> None:
    release = "r" * 53  # the longest name Helm takes
    out = subprocess.run([helm, "template", release, str(CHART), "-n", "kuberank-system"],
                         capture_output=True, text=True, check=True).stdout
    names = {(d["kind"], d["metadata"]["name"]) for d in yaml.safe_load_all(out) if d}
    assert ("Service", release + "-gateway") in names
    assert all(len(name) <= 63 for kind, name in names if kind in ("Service", "Deployment"))


def test_releases_of_one_name_in_two_namespaces_share_no_cluster_scoped_object(
    helm: str,
) -> None:
    def cluster_scoped(namespace: str) -> set[str]:
        out = subprocess.run([helm, "template", "kr", str(CHART), "-n", namespace],
                             capture_output=True, text=True, check=True).stdout
        return {f"{d['kind']}/{d['metadata']['name']}" for d in yaml.safe_load_all(out)
                if d and d["kind"].startswith("ClusterRole")}

    first, second = cluster_scoped("ops-a"), cluster_scoped("ops-b")
    assert len(first) == 6 and not first & second, (first, second)


def test_the_gateway_serves_the_namespaces_its_operator_watches_unless_told_fewer(
    helm: str,
) -> None:
    def gateway(*args: str) -> tuple[str, set[str]]:
        docs = render(helm, *args)
        pod = next(d for d in docs if d["kind"] == "Deployment"
                   and d["metadata"]["name"].endswith("-gateway"))["spec"]["template"]["spec"]
        env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
        roles = {f"{d['kind']}/{d['metadata'].get('namespace', '')}" for d in docs
                 if d["kind"] in ("Role", "ClusterRole") and d["metadata"]["labels"].get(
                     "app.kubernetes.io/component") == "gateway"
                 and not d["metadata"]["name"].endswith("-peers")}
        return env["KUBERANK_GATEWAY_NAMESPACES"], roles

    assert gateway("--set", "operator.watchNamespaces={team-a,team-b}") == (
        "team-a,team-b", {"Role/team-a", "Role/team-b"})
    assert gateway("--set", "operator.watchNamespaces={team-a,team-b}",
                   "--set", "gateway.watchNamespaces={team-b}") == ("team-b", {"Role/team-b"})
    assert gateway() == ("", {"ClusterRole/"})


def test_an_upgrade_that_reuses_values_without_security_contexts_keeps_the_hardening(
    helm: str,
) -> None:
    """`helm upgrade --reuse-values` from a chart without these values renders them missing:
    the pods get the same restricted contexts as values.yaml gives."""
    def contexts(*args: str) -> list[Any]:
        return [(d["spec"]["template"]["spec"]["securityContext"],
                 d["spec"]["template"]["spec"]["containers"][0]["securityContext"])
                for d in render(helm, *args) if d["kind"] == "Deployment"]

    missing = contexts("--set-json", "podSecurityContext=null",
                       "--set-json", "containerSecurityContext=null")
    assert missing == contexts() and len(missing) == 2
    assert missing[0][1]["capabilities"] == {"drop": ["ALL"]}


def test_security_contexts_and_image_digest_and_ephemeral_storage_are_values(
    helm: str,
) -> None:
    """OpenShift's restricted-v2 assigns user ids itself: the chart's can be left out."""
    digest = "sha256:" + "b" * 64
    docs = render(helm, "--set", "podSecurityContext.runAsUser=null",
                  "--set", "containerSecurityContext.runAsUser=null",
                  "--set", f"operator.image.digest={digest}",
                  "--set", "operator.resources.limits.ephemeral-storage=1Gi")
    for dep in (d for d in docs if d["kind"] == "Deployment"):
        pod = dep["spec"]["template"]["spec"]
        container = pod["containers"][0]
        assert "runAsUser" not in pod["securityContext"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert "runAsUser" not in container["securityContext"]
        assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
        assert container["image"] == f"ghcr.io/kuberank/kuberank@{digest}"
    operator = _operator_deployment(docs)["spec"]["template"]["spec"]["containers"][0]
    assert operator["resources"]["limits"]["ephemeral-storage"] == "1Gi"



def test_extra_env_may_set_what_the_chart_does_not(helm: str) -> None:
    docs = render(helm, "--set", "operator.extraEnv[0].name=KUBERANK_EXTRA",
                  "--set-string", "operator.extraEnv[0].value=1")
    operator = next(d for d in docs if d["kind"] == "Deployment"
                    and d["metadata"]["name"].endswith("-operator"))
    env = operator["spec"]["template"]["spec"]["containers"][0]["env"]
    assert env[-1] == {"name": "KUBERANK_EXTRA", "value": "1"}
    assert len({e["name"] for e in env}) == len(env)


def test_a_dashboard_in_grafanas_namespace_is_named_after_the_releases_too(helm: str) -> None:
    """Two releases of one name (in two namespaces) both put their dashboard into Grafana's
    namespace: the second install failed on the first one's ConfigMap."""
    def dashboard(*values: str) -> dict[str, Any]:
        docs = render(helm, "--set", "metrics.grafanaDashboard.enabled=true", *values)
        return next(d for d in docs if d["kind"] == "ConfigMap"
                    and d["metadata"]["name"].endswith("dashboard"))

    elsewhere = dashboard("--set", "metrics.grafanaDashboard.namespace=monitoring")
    assert elsewhere["metadata"]["name"] == "kr-kuberank-kuberank-system-dashboard"
    assert dashboard()["metadata"]["name"] == "kr-kuberank-dashboard"


def test_ids_left_out_of_the_charts_pods_are_left_out_of_the_models_too(helm: str) -> None:
    """The README's OpenShift values reached the operator and gateway only: every model's pods
    kept uid 65532, which restricted-v2 refuses."""
    def fixed_ids(*values: str) -> str:
        operator = next(d for d in render(helm, *values) if d["kind"] == "Deployment"
                        and d["metadata"]["name"].endswith("-operator"))
        env = operator["spec"]["template"]["spec"]["containers"][0]["env"]
        return str(next(e["value"] for e in env if e["name"] == "KUBERANK_RUNTIME_FIXED_IDS"))

    assert fixed_ids() == "true"
    assert fixed_ids("--set", "podSecurityContext.runAsUser=null",
                     "--set", "podSecurityContext.runAsGroup=null",
                     "--set", "podSecurityContext.fsGroup=null",
                     "--set", "containerSecurityContext.runAsUser=null") == "false"
