import json
from typing import Any

import pytest
from kuberank.crd.rerankmodel import RerankModelSpec
from kuberank.operator.builders.deployment import build_deployment
from kuberank.operator.builders.meta import Owner, labels
from kuberank.operator.builders.network import (
    build_network_policy,
    build_pdb,
    build_service,
    wants_pdb,
)
from kuberank.operator.builders.secret import (
    APIKEY_LABEL,
    build_secret,
    key_from_secret,
    labels_taken_off,
    minted_for,
)
from kuberank.operator.cli import WATCH_SELECTORS
from kuberank.operator.settings import OperatorSettings, cpu_image
from pydantic import ValidationError

pytestmark = pytest.mark.unit

OWNER = Owner(kind="RerankModel", name="bge", namespace="team-a", uid="u-1")
SETTINGS = OperatorSettings(runtime_image="ghcr.io/kuberank/runtime:1.2.3")
SHA = "b" * 64


def _spec(**extra: Any) -> RerankModelSpec:
    body: dict[str, Any] = {"source": {"url": {"url": "https://h/m.gguf", "sha256": SHA}}}
    body.update(extra)
    return RerankModelSpec.model_validate(body)


def _pod(spec: RerankModelSpec) -> dict[str, Any]:
    pod: dict[str, Any] = build_deployment(OWNER, spec, SETTINGS)["spec"]["template"]["spec"]
    return pod


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def test_children_share_name_labels_and_controller_owner_reference() -> None:
    spec = _spec(replicas=2)
    for child in (
        build_deployment(OWNER, spec, SETTINGS),
        build_service(OWNER),
        build_network_policy(OWNER, spec),
        build_pdb(OWNER),
    ):
        meta = child["metadata"]
        assert meta["name"] == "rrm-bge" and meta["namespace"] == "team-a"
        assert meta["labels"]["kuberank.io/model"] == "bge"
        assert meta["labels"]["app.kubernetes.io/managed-by"] == "kuberank"
        assert meta["labels"]["app.kubernetes.io/instance"] == "bge"
        (ref,) = meta["ownerReferences"]
        assert ref == {
            "apiVersion": "kuberank.io/v1alpha1",
            "kind": "RerankModel",
            "name": "bge",
            "uid": "u-1",
            "controller": True,
            "blockOwnerDeletion": True,
        }


def test_runtime_container_gets_gpu_limit_flags_and_probes() -> None:
    spec = _spec(
        resources={"gpus": 2, "gpuResourceName": "amd.com/gpu", "memory": "16Gi"},
        engine={"contextSize": 4096, "flashAttention": True, "extraArgs": ["--x"]},
        limits={"maxDocuments": 64, "overflow": "reject", "timeoutSeconds": 300},
        scoring={"normalize": True},
        servedName="bge-reranker-v2-m3",
    )
    (runtime,) = _pod(spec)["containers"]
    assert runtime["command"] == ["kuberank-runtime"] and runtime["args"] == ["--x"]
    assert runtime["resources"]["limits"] == {"amd.com/gpu": 2, "memory": "16Gi"}
    assert runtime["resources"]["requests"] == {"memory": "16Gi"}
    env = _env(runtime)
    assert env["KUBERANK_MODEL"] == "/models/model.gguf"
    assert env["KUBERANK_SERVED_NAME"] == "bge-reranker-v2-m3"
    assert env["KUBERANK_CTX_SIZE"] == "4096" and env["KUBERANK_FLASH_ATTN"] == "true"
    assert env["KUBERANK_MAX_DOCUMENTS"] == "64" and env["KUBERANK_OVERFLOW"] == "reject"
    assert env["KUBERANK_NORMALIZE"] == "true" and env["KUBERANK_GPU_LAYERS"] == "-1"
    assert env["KUBERANK_MAX_QUEUE_SECONDS"] == "150"  # half the gateway's wait for it
    assert "KUBERANK_THREADS" not in env
    assert runtime["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    assert runtime["readinessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    startup = runtime["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 1800
    assert runtime["image"] == "ghcr.io/kuberank/runtime:1.2.3"
    # a ResourceQuota counts the init container too: it asks for what the runtime asks for
    (init,) = _pod(spec)["initContainers"]
    assert init["resources"] == {"limits": {"memory": "16Gi"}, "requests": {"memory": "16Gi"}}
    deployment = build_deployment(OWNER, spec, SETTINGS)["spec"]
    assert deployment["progressDeadlineSeconds"] > SETTINGS.startup_timeout_s


def test_runtime_pods_use_the_configured_cpu_image_and_pull_secrets() -> None:
    settings = OperatorSettings(runtime_image="r/rt@sha256:" + "c" * 64,
                                runtime_cpu_image="r/rt-cpu:2",
                                runtime_image_pull_secrets=["pull"])
    cpu = build_deployment(OWNER, _spec(resources={"gpus": 0}), settings)["spec"]["template"]
    assert cpu["spec"]["containers"][0]["image"] == "r/rt-cpu:2"
    assert cpu["spec"]["imagePullSecrets"] == [{"name": "pull"}]
    gpu = build_deployment(OWNER, _spec(), settings)["spec"]["template"]["spec"]
    images = {gpu["containers"][0]["image"], gpu["initContainers"][0]["image"]}
    assert images == {settings.runtime_image}
    assert "imagePullSecrets" not in _pod(_spec())


def test_zero_gpus_means_no_gpu_limit_and_the_cpu_image() -> None:
    (runtime,) = _pod(_spec(resources={"gpus": 0}))["containers"]
    assert "limits" not in runtime["resources"]
    assert runtime["image"] == "ghcr.io/kuberank/runtime:1.2.3-cpu"
    assert _env(runtime)["KUBERANK_GPU_LAYERS"] == "0"
    assert cpu_image("reg:5000/img") == "reg:5000/img:latest-cpu"


def test_model_pods_leave_their_ids_to_a_platform_that_assigns_them() -> None:
    """OpenShift's restricted-v2 refuses a uid outside the namespace's range: with the chart's
    ids left out (runtime_fixed_ids false), model pods carry none either."""
    spec = _spec()
    fixed = _pod(spec)
    assert fixed["securityContext"]["runAsUser"] == fixed["securityContext"]["fsGroup"] == 65532
    settings = SETTINGS.model_copy(update={"runtime_fixed_ids": False})
    assigned = build_deployment(OWNER, spec, settings)["spec"]["template"]["spec"]
    assert assigned["securityContext"] == {"runAsNonRoot": True,
                                           "seccompProfile": {"type": "RuntimeDefault"}}


def test_user_env_overrides_rendered_env_once() -> None:
    spec = _spec(engine={"env": [{"name": "KUBERANK_OVERFLOW", "value": "reject"}]})
    (runtime,) = _pod(spec)["containers"]
    names = [e["name"] for e in runtime["env"]]
    assert names.count("KUBERANK_OVERFLOW") == 1
    assert _env(runtime)["KUBERANK_OVERFLOW"] == "reject"


def test_pod_runs_restricted_with_writable_volumes_only() -> None:
    pod = _pod(_spec())
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    for container in pod["containers"] + pod["initContainers"]:
        sc = container["securityContext"]
        assert sc["readOnlyRootFilesystem"] is True
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"] == {"drop": ["ALL"]}
        assert "/tmp" in {m["mountPath"] for m in container["volumeMounts"]}
    (runtime,) = pod["containers"]
    models = next(m for m in runtime["volumeMounts"] if m["mountPath"] == "/models")
    assert models["readOnly"] is True


def test_fetch_init_container_for_each_source_kind() -> None:
    (init,) = _pod(_spec())["initContainers"]
    assert init["command"] == ["kuberank-fetch"]
    # Its message reaches readers of conditions: never a log tail that might quote a Secret.
    assert init["terminationMessagePolicy"] == "File"
    assert init["args"][:5] == ["url", "--url", "https://h/m.gguf", "--sha256", SHA]
    hf = RerankModelSpec.model_validate(
        {
            "source": {
                "huggingFace": {
                    "repo": "org/m-GGUF",
                    "file": "*q8_0.gguf",
                    "revision": "v1",
                    "tokenSecretRef": {"name": "hf"},
                }
            }
        }
    )
    (init,) = _pod(hf)["initContainers"]
    assert init["args"][:7] == [
        "hf",
        "--repo",
        "org/m-GGUF",
        "--file",
        "*q8_0.gguf",
        "--revision",
        "v1",
    ]
    assert _env(init)["HF_TOKEN"] == {"secretKeyRef": {"name": "hf", "key": "token"}}
    pvc = RerankModelSpec.model_validate(
        {"source": {"pvc": {"claimName": "weights", "path": "m/r.gguf"}}}
    )
    pod = _pod(pvc)
    (init,) = pod["initContainers"]
    assert init["args"][:3] == ["pvc", "--path", "/source/m/r.gguf"]
    volume = next(v for v in pod["volumes"] if v["name"] == "source")
    assert volume["persistentVolumeClaim"] == {"claimName": "weights", "readOnly": True}


def test_cache_claim_keeps_fetched_files_and_the_runtime_reads_them_read_only() -> None:
    pod = _pod(_spec(cache={"claimName": "model-cache"}))
    claim = {"name": "cache", "persistentVolumeClaim": {"claimName": "model-cache"}}
    assert claim in pod["volumes"]
    init, runtime = pod["initContainers"][0], pod["containers"][0]
    assert init["args"][-2:] == ["--cache", "/cache"]
    assert {"name": "cache", "mountPath": "/cache"} in init["volumeMounts"]
    assert {"name": "cache", "mountPath": "/cache", "readOnly": True} in runtime["volumeMounts"]
    hf = _pod(_spec(source={"huggingFace": {"repo": "o/r", "file": "*.gguf"}},
                    cache={"claimName": "model-cache"}))
    assert hf["initContainers"][0]["args"][-2:] == ["--cache", "/cache"]


def test_a_url_from_a_secret_reaches_the_fetcher_by_environment_never_its_arguments() -> None:
    spec = _spec(source={"url": {"urlSecretRef": {"name": "store", "key": "signed"},
                                 "sha256": SHA}})
    (init,) = _pod(spec)["initContainers"]
    assert init["args"][:5] == ["url", "--url-env", "KUBERANK_FETCH_URL", "--sha256", SHA]
    assert _env(init)["KUBERANK_FETCH_URL"] == {
        "secretKeyRef": {"name": "store", "key": "signed"}}


def test_cache_claim_is_not_mounted_for_a_source_read_in_place() -> None:
    pod = _pod(_spec(source={"pvc": {"claimName": "weights", "path": "r.gguf"}},
                     cache={"claimName": "model-cache"}))
    assert all(v["name"] != "cache" for v in pod["volumes"])
    assert "--cache" not in pod["initContainers"][0]["args"]
    plain = _pod(_spec())
    assert all(v["name"] != "cache" for v in plain["volumes"])
    assert "--cache" not in plain["initContainers"][0]["args"]


@pytest.mark.parametrize("claim", ["", "Model_Cache", "-x"])
def test_cache_claim_must_be_a_claim_name(claim: str) -> None:
    with pytest.raises(ValidationError):
        _spec(cache={"claimName": claim})


def test_scheduling_fields_pass_through_unchanged() -> None:
    tolerations = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    affinity = {"nodeAffinity": {"x": 1}}
    spec = _spec(
        scheduling={
            "nodeSelector": {"gpu": "a100"},
            "tolerations": tolerations,
            "affinity": affinity,
            "priorityClassName": "high",
            "runtimeClassName": "nvidia",
        }
    )
    pod = _pod(spec)
    assert pod["nodeSelector"] == {"gpu": "a100"} and pod["tolerations"] == tolerations
    assert pod["affinity"] == affinity and pod["priorityClassName"] == "high"
    assert pod["runtimeClassName"] == "nvidia"
    assert "nodeSelector" not in _pod(_spec())


def test_gpu_pods_tolerate_the_gpu_taint_unless_the_spec_says_otherwise() -> None:
    gpu_taint = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    assert _pod(_spec())["tolerations"] == [gpu_taint]
    spot = {"key": "spot", "operator": "Exists"}
    amd = _pod(_spec(resources={"gpuResourceName": "amd.com/gpu"}, scheduling={
        "tolerations": [spot]}))
    assert amd["tolerations"] == [spot, {**gpu_taint, "key": "amd.com/gpu"}]
    own = {"key": "nvidia.com/gpu", "operator": "Equal", "value": "a100", "effect": "NoSchedule"}
    assert _pod(_spec(scheduling={"tolerations": [own]}))["tolerations"] == [own]
    assert "tolerations" not in _pod(_spec(resources={"gpus": 0}))


def test_spec_change_changes_the_pod_template_but_replicas_do_not() -> None:
    base = build_deployment(OWNER, _spec(), SETTINGS)["spec"]
    scaled = build_deployment(OWNER, _spec(replicas=3), SETTINGS)["spec"]
    tuned = build_deployment(OWNER, _spec(engine={"threads": 4}), SETTINGS)["spec"]
    assert base["template"] == scaled["template"] and scaled["replicas"] == 3
    assert base["template"] != tuned["template"]
    assert base["selector"]["matchLabels"].items() <= base["template"]["metadata"]["labels"].items()


def test_service_is_cluster_ip_with_named_http_port() -> None:
    svc = build_service(OWNER)["spec"]
    assert svc["type"] == "ClusterIP"
    assert svc["ports"] == [{"name": "http", "port": 8080, "targetPort": "http", "protocol": "TCP"}]
    assert svc["selector"].items() <= labels("bge").items()


def test_network_policy_admits_gateway_and_optionally_the_namespace() -> None:
    closed = build_network_policy(OWNER, _spec())["spec"]["ingress"][0]["from"]
    assert closed == [
        {
            "namespaceSelector": {},
            "podSelector": {
                "matchLabels": {
                    "app.kubernetes.io/part-of": "kuberank",
                    "app.kubernetes.io/component": "gateway",
                }
            },
        }
    ]
    opened = build_network_policy(OWNER, _spec(allowSameNamespace=True))["spec"]["ingress"][0]
    assert {"podSelector": {}} in opened["from"]
    assert opened["ports"] == [{"protocol": "TCP", "port": 8080}]


def test_network_policy_admits_gateway_pods_of_the_gateways_namespace_only() -> None:
    # A tenant may label a pod of its own like the gateway's: the label alone is no credential.
    (peer,) = build_network_policy(OWNER, _spec(), gateway_namespace="kuberank-system")[
        "spec"]["ingress"][0]["from"]
    assert peer["namespaceSelector"] == {
        "matchLabels": {"kubernetes.io/metadata.name": "kuberank-system"}}
    assert peer["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "gateway"


def test_network_policy_admits_the_configured_metrics_scrapers_on_the_http_port() -> None:
    monitoring = {"kubernetes.io/metadata.name": "monitoring"}
    prometheus = {"namespaceSelector": {"matchLabels": monitoring}}
    rule = build_network_policy(OWNER, _spec(), [prometheus])["spec"]["ingress"][0]
    assert prometheus in rule["from"] and len(rule["from"]) == 2
    assert rule["ports"] == [{"protocol": "TCP", "port": 8080}]


def test_runtime_pods_carry_the_prometheus_scrape_annotations() -> None:
    template = build_deployment(OWNER, _spec(), SETTINGS)["spec"]["template"]
    assert template["metadata"]["annotations"] == {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": "8080",
        "prometheus.io/path": "/metrics",
    }
    port = template["spec"]["containers"][0]["ports"][0]
    assert port["containerPort"] == 8080


def test_metrics_from_is_read_as_json_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    peer = {"namespaceSelector": {"matchLabels": {"team": "observability"}}}
    monkeypatch.setenv("KUBERANK_METRICS_FROM", json.dumps([peer]))
    assert OperatorSettings().metrics_from == [peer]


@pytest.mark.parametrize(
    "peers", [[{}], [{"namespace": "monitoring"}], [{"podSelector": {}, "x": 1}]]
)
def test_metrics_from_refuses_what_is_not_a_network_policy_peer(peers: list[Any]) -> None:
    with pytest.raises(ValidationError, match="item 0 must be a NetworkPolicyPeer"):
        OperatorSettings(metrics_from=peers)


def test_pdb_only_with_more_than_one_replica() -> None:
    assert not wants_pdb(_spec(replicas=1)) and wants_pdb(_spec(replicas=2))
    assert build_pdb(OWNER)["spec"]["maxUnavailable"] == 1


def test_secret_round_trips_the_key_and_survives_garbage() -> None:
    owner = Owner(kind="ApiKey", name="ci", namespace="team-a", uid="u-2")
    secret = build_secret(owner, "kr_0123456789abcdef_" + "0" * 32)
    assert secret["metadata"]["name"] == "ci-key"
    assert key_from_secret(secret) == "kr_0123456789abcdef_" + "0" * 32
    assert key_from_secret(None) is None
    assert key_from_secret({"data": {"api-key": "!!!"}}) is None
    assert minted_for(secret) is None and "annotations" not in secret["metadata"]
    rotated = build_secret(owner, "kr_0123456789abcdef_" + "1" * 32, rotation="2026-11")
    assert minted_for(rotated) == "2026-11"
    assert minted_for(None) is None


def test_labels_taken_off_a_key_secret_are_the_watched_ones_missing_or_changed() -> None:
    owner = Owner(kind="ApiKey", name="ci", namespace="team-a", uid="u-2")
    secret = build_secret(owner, "kr_0123456789abcdef_" + "0" * 32)
    assert labels_taken_off(secret, owner) == {}
    secret["metadata"]["labels"]["team"] = "search"  # others' labels are theirs
    del secret["metadata"]["labels"][APIKEY_LABEL]
    assert labels_taken_off(secret, owner) == {APIKEY_LABEL: "ci"}
    secret["metadata"]["labels"][APIKEY_LABEL] = "other"
    assert labels_taken_off(secret, owner) == {APIKEY_LABEL: "ci"}
    del secret["metadata"]["labels"]
    assert labels_taken_off(secret, owner) == build_secret(owner, "k")["metadata"]["labels"]


def test_rendered_env_is_what_kuberank_runtime_parses(monkeypatch: pytest.MonkeyPatch) -> None:
    from kuberank.runtime.settings import load_settings

    spec = _spec(
        servedName="bge",
        engine={"threads": 3, "contextSize": 1024, "batchSize": 512, "flashAttention": False,
                "maxBatchPairs": 8, "contexts": 2},
        limits={"maxDocuments": 9, "maxQueryTokens": 64, "maxDocumentTokens": 256},
        scoring={"normalize": True},
    )
    (runtime,) = _pod(spec)["containers"]
    for item in runtime["env"]:
        monkeypatch.setenv(item["name"], item["value"])
    settings = load_settings([])
    assert str(settings.model) == "/models/model.gguf" and settings.served_name == "bge"
    assert (settings.threads, settings.ctx_size, settings.batch_size) == (3, 1024, 512)
    assert settings.max_batch_pairs == 8 and settings.contexts == 2
    assert settings.flash_attn == "off" and settings.gpu_layers == -1
    assert (settings.max_documents, settings.max_query_tokens) == (9, 64)
    assert settings.max_document_tokens == 256 and settings.normalize is True
    assert "KUBERANK_FLASH_ATTN" not in _env(_pod(_spec())["containers"][0])


def _selects(selector: str, labels: dict[str, str]) -> bool:
    """Equality (k=v) and existence (k) terms, the only kinds WATCH_SELECTORS uses."""
    for term in selector.split(","):
        name, _, value = term.partition("=")
        if name not in labels or (value and labels[name] != value):
            return False
    return True


def test_the_api_servers_watch_selectors_select_every_child_the_operator_makes() -> None:
    spec = _spec(replicas=2)
    made = {
        ("apps", "deployments"): build_deployment(OWNER, spec, SETTINGS),
        ("v1", "services"): build_service(OWNER),
        ("networking.k8s.io", "networkpolicies"): build_network_policy(OWNER, spec),
        ("policy", "poddisruptionbudgets"): build_pdb(OWNER),
        ("v1", "pods"): build_deployment(OWNER, spec, SETTINGS)["spec"]["template"],
        ("v1", "secrets"): build_secret(OWNER, "kr_0123456789abcdef_" + "0" * 32),
    }
    assert set(made) == set(WATCH_SELECTORS)
    for kind, child in made.items():
        assert _selects(WATCH_SELECTORS[kind], child["metadata"]["labels"]), kind
    assert not _selects(WATCH_SELECTORS["v1", "secrets"], {"app": "someone-elses"})
    assert not _selects(WATCH_SELECTORS["v1", "pods"], {"kuberank.io/model": "x"})


@pytest.mark.parametrize(("resources", "replicas", "strategy"), [
    ({"gpus": 1}, 1, {"maxSurge": 1, "maxUnavailable": 0}),  # no outage for a lone replica
    ({"gpus": 1}, 3, {"maxSurge": 0, "maxUnavailable": 1}),  # no spare GPU needed
    ({"gpus": 0}, 3, {"maxSurge": 1, "maxUnavailable": 0}),
])
def test_a_rollout_of_several_gpu_replicas_needs_no_spare_gpu(
    resources: dict[str, Any], replicas: int, strategy: dict[str, int]
) -> None:
    deployment = build_deployment(OWNER, _spec(resources=resources, replicas=replicas), SETTINGS)
    assert deployment["spec"]["strategy"] == {"type": "RollingUpdate", "rollingUpdate": strategy}


@pytest.mark.parametrize(("value", "expected"), [
    ('["team-a", "team-b"]', ["team-a", "team-b"]),  # as the chart writes it
    ("team-a, team-b", ["team-a", "team-b"]),  # as a person (and the gateway's own) writes it
    ("team-a", ["team-a"]),
    ("", []),
])
def test_the_operators_namespaces_variable_takes_a_list_or_a_json_list(
    value: str, expected: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``KUBERANK_NAMESPACES=team-a`` was a settings error at start (JSON was required)."""
    monkeypatch.setenv("KUBERANK_NAMESPACES", value)
    assert OperatorSettings().namespaces == expected
