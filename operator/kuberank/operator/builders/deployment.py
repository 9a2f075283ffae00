"""The runtime Deployment: fetch init container + kuberank-runtime, hardened and probed."""

from __future__ import annotations

from typing import Any

from kuberank.crd.rerankmodel import RUNTIME_PORT_NAME, RerankModelSpec
from kuberank.operator.builders.fetch import (
    CACHE_DIR,
    MODELS_DIR,
    SOURCE_DIR,
    fetch_args,
    fetch_env,
    uses_cache,
)
from kuberank.operator.builders.fetch import cache_volume as build_cache_volume
from kuberank.operator.builders.fetch import source_volume as build_source_volume
from kuberank.operator.builders.meta import (
    HTTP_PORT,
    SCRAPE_ANNOTATIONS,
    Owner,
    child_name,
    metadata,
    selector,
)
from kuberank.operator.builders.meta import labels as model_labels
from kuberank.operator.builders.runtime_env import runtime_env
from kuberank.operator.settings import OperatorSettings

RUN_AS = 65532
PROBE_PERIOD_S = 10

CONTAINER_SECURITY: dict[str, Any] = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "runAsNonRoot": True,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}
PULL_ALLOWANCE_S = 600  # pulling a multi-GB CUDA image onto a fresh node

POD_SECURITY: dict[str, Any] = {
    "runAsNonRoot": True,
    "runAsUser": RUN_AS,
    "runAsGroup": RUN_AS,
    "fsGroup": RUN_AS,
    "seccompProfile": {"type": "RuntimeDefault"},
}


def pod_security(settings: OperatorSettings) -> dict[str, Any]:
    """POD_SECURITY, without its ids where the platform assigns them (``runtime_fixed_ids``)."""
    if settings.runtime_fixed_ids:
        return POD_SECURITY
    return {k: v for k, v in POD_SECURITY.items() if k not in ("runAsUser", "runAsGroup",
                                                               "fsGroup")}


def runtime_image(spec: RerankModelSpec, settings: OperatorSettings) -> str:
    """spec.engine.image wins; otherwise the operator's image, CPU variant when gpus is 0."""
    if spec.engine.image:
        return spec.engine.image
    return settings.runtime_image if spec.resources.gpus > 0 else settings.cpu_runtime_image


def container_resources(spec: RerankModelSpec) -> dict[str, Any]:
    res = spec.resources
    limits: dict[str, Any] = {}
    if res.gpus > 0:
        limits[res.gpu_resource_name] = res.gpus
    if res.cpu is not None:
        limits["cpu"] = res.cpu
    if res.memory is not None:
        limits["memory"] = res.memory
    requests = {k: v for k, v in limits.items() if k in ("cpu", "memory")}
    out: dict[str, Any] = {}
    if limits:
        out["limits"] = limits
    if requests:
        out["requests"] = requests
    return out


def _without_gpus(resources: dict[str, Any]) -> dict[str, Any]:
    kept = {part: {k: v for k, v in amounts.items() if k in ("cpu", "memory")}
            for part, amounts in resources.items()}
    return {part: amounts for part, amounts in kept.items() if amounts}


def _probe(failure_threshold: int, period_s: int = PROBE_PERIOD_S) -> dict[str, Any]:
    return {
        "httpGet": {"path": "/health", "port": RUNTIME_PORT_NAME},
        "periodSeconds": period_s,
        "timeoutSeconds": 5,
        "failureThreshold": failure_threshold,
    }


def _containers(name: str, spec: RerankModelSpec, settings: OperatorSettings) -> dict[str, Any]:
    image = runtime_image(spec, settings)
    source = (
        [{"name": "source", "mountPath": SOURCE_DIR, "readOnly": True}]
        if spec.source.pvc is not None
        else []
    )
    cache = ([{"name": "cache", "mountPath": CACHE_DIR}] if uses_cache(spec.source, spec.cache)
             else [])
    init = {
        "name": "fetch-model",
        "image": image,
        "command": ["kuberank-fetch"],
        "args": fetch_args(spec.source, spec.cache),
        "env": fetch_env(spec.source),
        "volumeMounts": [{"name": "models", "mountPath": MODELS_DIR}, _tmp_mount(), *source,
                         *cache],
        # The runtime's cpu and memory, so a namespace whose ResourceQuota requires them
        # admits the pod (an init container without them is refused like any other).
        "resources": _without_gpus(container_resources(spec)),
        "securityContext": CONTAINER_SECURITY,
        # Only what kuberank-fetch writes, never its log's tail: the message reaches the
        # model's conditions, Events and clients' 503s, read by those who may not read the
        # Secrets a fetch uses (a crash it did not foresee says "exited with an error").
        "terminationMessagePolicy": "File",
    }
    runtime = {
        "name": "runtime",
        "image": image,
        "command": ["kuberank-runtime"],
        "args": list(spec.engine.extra_args or []),
        "env": runtime_env(name, spec),
        "ports": [{"name": RUNTIME_PORT_NAME, "containerPort": HTTP_PORT, "protocol": "TCP"}],
        "resources": container_resources(spec),
        "startupProbe": _probe(max(1, settings.startup_timeout_s // PROBE_PERIOD_S)),
        "readinessProbe": _probe(3, period_s=5),
        "livenessProbe": _probe(6),
        # The fetcher symlinks a PVC or cached file rather than copying it, so the runtime
        # mounts that volume too.
        "volumeMounts": [
            {"name": "models", "mountPath": MODELS_DIR, "readOnly": True},
            _tmp_mount(),
            *source,
            *({**mount, "readOnly": True} for mount in cache),
        ],
        "securityContext": CONTAINER_SECURITY,
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    return {"initContainers": [init], "containers": [runtime]}


def _tmp_mount() -> dict[str, Any]:
    return {"name": "tmp", "mountPath": "/tmp"}


def _tolerations(spec: RerankModelSpec) -> list[dict[str, Any]] | None:
    """The spec's, plus one for the taint GPU pools carry by convention (the GPU resource's
    name, NoSchedule) unless the spec already says something about that key: tolerating a
    taint only lets the pod onto those nodes, it does not send it there."""
    given = list(spec.scheduling.tolerations or [])
    gpu = spec.resources.gpu_resource_name
    if spec.resources.gpus > 0 and not any(t.get("key") == gpu for t in given):
        given.append({"key": gpu, "operator": "Exists", "effect": "NoSchedule"})
    return given or None


def _scheduling(spec: RerankModelSpec) -> dict[str, Any]:
    s = spec.scheduling
    fields: dict[str, Any] = {
        "nodeSelector": s.node_selector,
        "tolerations": _tolerations(spec),
        "affinity": s.affinity,
        "priorityClassName": s.priority_class_name,
        "runtimeClassName": s.runtime_class_name,
    }
    return {k: v for k, v in fields.items() if v is not None}


def rolling_update(spec: RerankModelSpec) -> dict[str, int]:
    """How a rollout replaces pods. One replica: a new pod is ready before the old one goes (no
    outage, but it needs room for one more pod). Several GPU replicas: one old pod goes first,
    so a rollout needs no spare GPU, which tight GPU pools rarely have (the PDB allows as much)."""
    if spec.resources.gpus > 0 and spec.replicas > 1:
        return {"maxSurge": 0, "maxUnavailable": 1}
    return {"maxSurge": 1, "maxUnavailable": 0}


def build_deployment(
    owner: Owner, spec: RerankModelSpec, settings: OperatorSettings
) -> dict[str, Any]:
    volumes: list[dict[str, Any]] = [
        {"name": "models", "emptyDir": {}},
        {"name": "tmp", "emptyDir": {}},
    ]
    volumes += [v for v in (build_source_volume(spec.source),
                            build_cache_volume(spec.source, spec.cache)) if v is not None]
    pod_spec: dict[str, Any] = {
        **_containers(owner.name, spec, settings),
        "volumes": volumes,
        "securityContext": pod_security(settings),
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": 30,
        **_scheduling(spec),
        **({"imagePullSecrets": [{"name": n} for n in settings.runtime_image_pull_secrets]}
           if settings.runtime_image_pull_secrets else {}),
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(owner, child_name(owner.name)),
        "spec": {
            "replicas": spec.replicas,
            "selector": {"matchLabels": selector(owner.name)},
            # A first fetch and load may take the whole startup budget: only past it (and an
            # image pull) has the rollout stopped progressing.
            "progressDeadlineSeconds": settings.startup_timeout_s + PULL_ALLOWANCE_S,
            "strategy": {"type": "RollingUpdate", "rollingUpdate": rolling_update(spec)},
            "template": {
                "metadata": {
                    "labels": model_labels(owner.name),
                    "annotations": dict(SCRAPE_ANNOTATIONS),
                },
                "spec": pod_spec,
            },
        },
    }
