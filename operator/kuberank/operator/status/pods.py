"""What is wrong with a runtime pod, in words a model owner can act on."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from kuberank.crd import reasons

IMAGE_PULL = {"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull"}
CONFIG_ERRORS = {"CreateContainerConfigError", "CreateContainerError"}


@dataclass(frozen=True)
class PodProblem:
    """A reason (CamelCase, for conditions) and a sentence (for people)."""

    reason: str
    message: str


def pod_problems(pods: Iterable[dict[str, Any]], gpu_resource_name: str) -> list[PodProblem]:
    """The model's problems, pod by pod. A pod on its way out (deletionTimestamp) has none that
    matter any more; and while one is, a new pod Pending for a GPU is waiting for the GPU that
    pod still holds (a rollout or a quick scale down and up), not short of GPUs."""
    staying: list[dict[str, Any]] = []
    leaving = False
    for pod in pods:
        if (pod.get("metadata") or {}).get("deletionTimestamp"):
            leaving = True
        else:
            staying.append(pod)
    found = (pod_problem(p, gpu_resource_name) for p in staying)
    return [p for p in found
            if p is not None and not (leaving and p.reason == reasons.INSUFFICIENT_GPU)]


def pod_problem(pod: dict[str, Any], gpu_resource_name: str) -> PodProblem | None:
    """The most important problem of one pod, or None when it is fine or just starting."""
    status = pod.get("status") or {}
    name = (pod.get("metadata") or {}).get("name", "pod")
    unscheduled = _unschedulable(status)
    if unscheduled is not None:
        if f"Insufficient {gpu_resource_name}" in unscheduled:
            wanted = _asked(pod, gpu_resource_name)
            # The scheduler says the same when no node has that many at all: that never
            # clears by freeing GPUs (the operator does not watch nodes to tell the two apart).
            return PodProblem(
                reasons.INSUFFICIENT_GPU,
                f"Pod {name} is Pending: no node has {wanted} free {gpu_resource_name} "
                f"({unscheduled.strip()}). Free or add GPUs, or lower spec.resources.gpus "
                f"or spec.replicas; if no node has {wanted} {gpu_resource_name} in all "
                "(kubectl describe nodes, Allocatable), only a larger node or fewer "
                "spec.resources.gpus helps.",
            )
        if "persistentvolumeclaim" in unscheduled.lower():
            return PodProblem(
                reasons.CLAIM_NOT_READY,
                f"Pod {name} is Pending: {_sentence(unscheduled)} The claims named in spec.cache "
                "and spec.source.pvc must exist in this namespace and be bound (kubectl get pvc).",
            )
        return PodProblem(
            reasons.UNSCHEDULABLE,
            f"Pod {name} is Pending: {_sentence(unscheduled)} "
            "Check spec.scheduling and spec.resources.",
        )
    for init in status.get("initContainerStatuses") or []:
        problem = _container_problem(name, init, fetcher=True)
        if problem is not None:
            return problem
    for container in status.get("containerStatuses") or []:
        problem = _container_problem(name, container, fetcher=False)
        if problem is not None:
            return problem
    return _cut_off(name, pod)


def _cut_off(name: str, pod: dict[str, Any]) -> PodProblem | None:
    """A pod whose containers were ready but which is not: the node controller marks the pods
    of a node that stopped reporting not ready (and leaves the rest of their status as last
    reported), so the model was said to be "fetching or loading" while its pods had run fine."""
    if (pod.get("spec") or {}).get("readinessGates"):
        return None  # a gate someone injected (a load balancer's, a mesh's) holds Ready too
    conditions = {c.get("type"): c.get("status")
                  for c in (pod.get("status") or {}).get("conditions") or []}
    if conditions.get("Ready") != "False" or conditions.get("ContainersReady") != "True":
        return None
    node = (pod.get("spec") or {}).get("nodeName") or "its node"
    return PodProblem(
        reasons.NODE_NOT_READY,
        f"Pod {name} ran ready on {node}, which stopped reporting: it takes no requests until "
        "the node is back, or until Kubernetes evicts it and starts another (5 minutes by "
        "default). Check kubectl get nodes.",
    )


def _asked(pod: dict[str, Any], resource: str) -> str:
    """How many of ``resource`` the pod's containers ask for together, as the scheduler counts
    (init containers aside); "1" when it cannot be read."""
    total = 0
    for container in (pod.get("spec") or {}).get("containers") or []:
        limits = (container.get("resources") or {}).get("limits") or {}
        try:
            total += int(str(limits.get(resource, 0)))
        except ValueError:
            return "1"
    return str(total or 1)


def _sentence(text: str) -> str:
    """The scheduler's message as a sentence of its own, whatever it ends with."""
    text = text.strip()
    return text if text.endswith((".", "!", "?")) else f"{text}."


def _unschedulable(status: dict[str, Any]) -> str | None:
    for cond in status.get("conditions") or []:
        if (
            cond.get("type") == "PodScheduled"
            and cond.get("status") == "False"
            and cond.get("reason") == "Unschedulable"
        ):
            return str(cond.get("message") or "no node fits the pod.")
    return None


def last_words(message: str, limit: int = 400) -> str:
    """The last line of a container's termination message. Both programs end with their
    reason; the kubelet's log fallback would otherwise put a usage text or a traceback (up to
    80 lines) in front of it, in conditions, Events and the gateway's 503s."""
    lines = [line.strip() for line in message.strip().splitlines() if line.strip()]
    if not lines:
        return ""
    line = lines[-1]
    return line if len(line) <= limit else line[:limit - 1] + "…"


def _container_problem(pod: str, cs: dict[str, Any], fetcher: bool) -> PodProblem | None:
    state = cs.get("state") or {}
    waiting = state.get("waiting") or {}
    reason = waiting.get("reason")
    last = (cs.get("lastState") or {}).get("terminated") or {}
    terminated = state.get("terminated") or {}
    detail = last_words(terminated.get("message") or last.get("message") or "")
    if reason in IMAGE_PULL:
        return PodProblem(
            "ImagePullFailed",
            f"Pod {pod} cannot pull image {cs.get('image', '')}: {waiting.get('message', reason)}."
            " Check spec.engine.image and registry credentials.",
        )
    if reason in CONFIG_ERRORS:
        return PodProblem(
            "ContainerConfigError",
            f"Pod {pod}: {waiting.get('message', reason)}. Check referenced Secrets and volumes.",
        )
    failed_now = terminated and terminated.get("exitCode", 0) != 0
    # Between the kubelet's retries the container is briefly created or running again, its
    # failure only in lastState: it is still the same failure until it succeeds (or, for the
    # runtime, serves), so the status does not flap to healthy at every retry.
    retrying = (not terminated and not cs.get("ready") and last.get("exitCode", 0) != 0
                and cs.get("restartCount", 0) >= 1)
    if fetcher and (reason == "CrashLoopBackOff" or failed_now or retrying):
        # Restarts of the container, not the fetcher's own retries of one download (which its
        # message may count too): a number of its own, in words of its own.
        runs = cs.get("restartCount", 0)
        times = "once" if runs == 1 else f"{runs} times"
        again = f" (the fetch container restarted {times} and retries)" if retrying else ""
        return PodProblem(
            "FetchFailed",
            f"Pod {pod} could not fetch the model: {detail or 'the fetcher exited with an error'}"
            f"{again}. Check spec.source (URL, checksum, repository, token).",
        )
    # The kubelet backs off after the first exit already; one crash (an OOM kill, a node
    # hiccup) is not yet a loop, and calling it one would fail a waking request at once.
    if (not fetcher and (reason == "CrashLoopBackOff" or retrying)
            and cs.get("restartCount", 0) >= 2):
        return PodProblem(
            reasons.CRASH_LOOP,
            f"Pod {pod} keeps crashing (restarts: {cs.get('restartCount', 0)}): "
            f"{detail or 'see kubectl logs'}. Check spec.source (a GGUF reranker file?), "
            "spec.engine and spec.limits.",
        )
    return None
