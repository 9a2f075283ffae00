"""Pure pieces of a kubelet: environment, argument expansion, probe targets, pod status."""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

Obj = dict[str, Any]
# Resolves (kind, namespace, name) -> the object's data as plain strings, or None when missing.
Lookup = Callable[[str, str, str], "Mapping[str, str] | None"]

_VAR = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


class ConfigError(Exception):
    """The pod references something that does not exist (kubelet: CreateContainerConfigError)."""


def expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes `$(VAR)` expansion: unknown references stay as written, `$$` escapes."""

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group(1)
        return env.get(name, m.group(0))

    return _VAR.sub(sub, text)


def field_value(pod: Obj, path: str) -> str:
    meta, spec, status = pod["metadata"], pod["spec"], pod.get("status", {})
    simple = {
        "metadata.name": meta.get("name", ""),
        "metadata.namespace": meta.get("namespace", ""),
        "metadata.uid": meta.get("uid", ""),
        "spec.nodeName": spec.get("nodeName", ""),
        "spec.serviceAccountName": spec.get("serviceAccountName", ""),
        "status.podIP": status.get("podIP", ""),
        "status.hostIP": status.get("hostIP", ""),
    }
    if path in simple:
        return str(simple[path])
    m = re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", path)
    if m:
        return str(meta.get(m.group(1), {}).get(m.group(2), ""))
    raise ConfigError(f"unsupported fieldRef {path}")


def _ref_data(lookup: Lookup, kind: str, ns: str, ref: Obj) -> Mapping[str, str] | None:
    data = lookup(kind, ns, ref["name"])
    if data is None and not ref.get("optional"):
        raise ConfigError(f"{kind} {ns}/{ref['name']} not found")
    return data


def container_env(
    pod: Obj, container: Obj, base: Mapping[str, str], lookup: Lookup
) -> dict[str, str]:
    """The process environment: base, then envFrom, then env in order (later wins, $(x) expands)."""
    ns = pod["metadata"]["namespace"]
    env = dict(base)
    for src in container.get("envFrom", []):
        prefix = src.get("prefix", "")
        for kind in ("configMap", "secret"):
            ref = src.get(f"{kind}Ref")
            if ref:
                env.update(
                    {prefix + k: v for k, v in (_ref_data(lookup, kind, ns, ref) or {}).items()}
                )
    for var in container.get("env", []):
        if "valueFrom" not in var:
            env[var["name"]] = expand(var.get("value", ""), env)
            continue
        vf = var["valueFrom"]
        if "fieldRef" in vf:
            env[var["name"]] = field_value(pod, vf["fieldRef"]["fieldPath"])
        elif "secretKeyRef" in vf or "configMapKeyRef" in vf:
            kind = "secret" if "secretKeyRef" in vf else "configMap"
            ref = vf[f"{kind}KeyRef"]
            data = _ref_data(lookup, kind, ns, ref)
            if data is not None and ref["key"] in data:
                env[var["name"]] = data[ref["key"]]
            elif not ref.get("optional"):
                raise ConfigError(f"key {ref['key']} not in {kind} {ns}/{ref['name']}")
        elif "resourceFieldRef" in vf:
            res = vf["resourceFieldRef"]["resource"]
            section, _, name = res.partition(".")
            env[var["name"]] = str(container.get("resources", {}).get(section, {}).get(name, "0"))
    return env


def command_line(container: Obj, env: Mapping[str, str]) -> list[str]:
    argv = list(container.get("command", [])) + list(container.get("args", []))
    if not argv:
        raise ConfigError(f"container {container['name']} sets no command (images are not run)")
    return [expand(a, env) for a in argv]


def probe_port(container: Obj, port: int | str) -> int:
    if isinstance(port, int) or str(port).isdigit():
        return int(port)
    for p in container.get("ports", []):
        if p.get("name") == port:
            return int(p["containerPort"])
    raise ConfigError(f"container {container['name']} has no port named {port}")


def secret_data(secret: Obj) -> dict[str, str]:
    data = {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}
    data.update(secret.get("stringData") or {})
    return data


@dataclass
class ContainerState:
    """What the agent knows about one container, enough to write its containerStatus."""

    name: str
    image: str
    state: str = "waiting"  # waiting | running | terminated
    reason: str = "ContainerCreating"
    message: str = ""
    started_at: str = ""
    finished_at: str = ""
    exit_code: int | None = None
    ready: bool = False
    started: bool = False
    restart_count: int = 0
    last_terminated: Obj | None = None
    pid: int = 0

    def status(self) -> Obj:
        if self.state == "running":
            state: Obj = {"running": {"startedAt": self.started_at}}
        elif self.state == "terminated":
            state = {
                "terminated": {
                    "exitCode": self.exit_code if self.exit_code is not None else -1,
                    "reason": self.reason,
                    "startedAt": self.started_at or None,
                    "finishedAt": self.finished_at,
                    **({"message": self.message} if self.message else {}),
                }
            }
        else:
            state = {
                "waiting": {
                    "reason": self.reason,
                    **({"message": self.message} if self.message else {}),
                }
            }
        out: Obj = {
            "name": self.name,
            "image": self.image,
            "imageID": "",
            "containerID": f"nodeagent://{self.pid}" if self.pid else "",
            "ready": self.ready,
            "started": self.started,
            "restartCount": self.restart_count,
            "state": state,
            "lastState": {"terminated": self.last_terminated} if self.last_terminated else {},
        }
        return out


@dataclass
class PodView:
    """Inputs of the pod status: everything else is derived."""

    ip: str
    host_ip: str
    start_time: str
    init: list[ContainerState] = field(default_factory=list)
    main: list[ContainerState] = field(default_factory=list)
    failed: bool = False
    message: str = ""


def phase(view: PodView, restart_policy: str) -> str:
    if view.failed:
        return "Failed"
    if not view.main or any(c.state == "waiting" and c.restart_count == 0 for c in view.main):
        return "Pending"
    if restart_policy != "Always" and all(c.state == "terminated" for c in view.main):
        return "Succeeded" if all(c.exit_code == 0 for c in view.main) else "Failed"
    return "Running"


def pod_status(pod: Obj, view: PodView, previous: Obj, now: str) -> Obj:
    """The whole status to merge-patch: lists are complete (a merge patch replaces lists)."""
    policy = pod["spec"].get("restartPolicy", "Always")
    init_done = all(c.state == "terminated" and c.exit_code == 0 for c in view.init)
    containers_ready = bool(view.main) and all(c.ready for c in view.main)
    wanted = {
        "PodScheduled": True,
        "Initialized": init_done,
        "ContainersReady": containers_ready,
        "Ready": containers_ready,
    }
    old = {c["type"]: c for c in previous.get("conditions", [])}
    conditions = []
    for ctype, ok in wanted.items():
        value = "True" if ok else "False"
        prev = old.get(ctype)
        since = prev["lastTransitionTime"] if prev and prev.get("status") == value else now
        conditions.append({"type": ctype, "status": value, "lastTransitionTime": since})
    status: Obj = {
        "phase": phase(view, policy),
        "conditions": conditions,
        "hostIP": view.host_ip,
        "hostIPs": [{"ip": view.host_ip}],
        "startTime": view.start_time,
        "initContainerStatuses": [c.status() for c in view.init],
        "containerStatuses": [c.status() for c in view.main],
    }
    if view.ip:
        status["podIP"] = view.ip
        status["podIPs"] = [{"ip": view.ip}]
    if view.message:
        status["message"] = view.message
    return status
