"""Pod volumes as host directories, later bind-mounted onto each container's mountPath."""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

from .kube import Kube
from .podspec import ConfigError, field_value

Obj = dict[str, Any]


def _write_items(root: Path, data: dict[str, bytes], items: list[Obj] | None, mode: int) -> None:
    root.mkdir(parents=True, exist_ok=True)
    mapping = [(i["key"], i["path"]) for i in items] if items else [(k, k) for k in data]
    for key, rel in mapping:
        if key not in data:
            raise ConfigError(f"key {key} missing")
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data[key])
        target.chmod(mode)


def _object_data(
    kube: Kube, kind: str, ns: str, name: str, optional: bool
) -> dict[str, bytes] | None:
    plural = "secrets" if kind == "secret" else "configmaps"
    obj = kube.get_or_none(f"/api/v1/namespaces/{ns}/{plural}/{name}")
    if obj is None:
        if optional:
            return None
        raise ConfigError(f"{kind} {ns}/{name} not found")
    if kind == "secret":
        return {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}
    data = {k: v.encode() for k, v in (obj.get("data") or {}).items()}
    data.update({k: base64.b64decode(v) for k, v in (obj.get("binaryData") or {}).items()})
    return data


def _service_account_token(kube: Kube, pod: Obj, src: Obj) -> bytes:
    meta = pod["metadata"]
    sa = pod["spec"].get("serviceAccountName", "default")
    spec: Obj = {
        "expirationSeconds": src.get("expirationSeconds", 3607),
        "boundObjectRef": {
            "apiVersion": "v1",
            "kind": "Pod",
            "name": meta["name"],
            "uid": meta["uid"],
        },
    }
    if src.get("audience"):
        spec["audiences"] = [src["audience"]]
    path = f"/api/v1/namespaces/{meta['namespace']}/serviceaccounts/{sa}/token"
    answer = kube.create(
        path, {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec}
    )
    return str(answer["status"]["token"]).encode()


def _downward(pod: Obj, items: list[Obj]) -> dict[str, bytes]:
    return {
        i["path"]: field_value(pod, i["fieldRef"]["fieldPath"]).encode()
        for i in items
        if "fieldRef" in i
    }


def materialize(kube: Kube, pod: Obj, root: Path, shared: Path) -> dict[str, Path]:
    """Create every volume of the pod under root; returns volume name -> host path."""
    ns = pod["metadata"]["namespace"]
    paths: dict[str, Path] = {}
    for vol in pod["spec"].get("volumes", []):
        name = vol["name"]
        target = root / name
        if "hostPath" in vol:
            paths[name] = Path(vol["hostPath"]["path"])
            continue
        if "persistentVolumeClaim" in vol:
            # A claim outlives the pod: keep its data per (namespace, claim) beside the pods.
            target = shared / "pvc" / ns / vol["persistentVolumeClaim"]["claimName"]
            target.mkdir(parents=True, exist_ok=True)
        elif "configMap" in vol or "secret" in vol:
            kind = "configMap" if "configMap" in vol else "secret"
            src = vol[kind]
            obj_name = src.get("name") or src.get("secretName")
            data = _object_data(kube, kind, ns, obj_name, bool(src.get("optional")))
            _write_items(target, data or {}, src.get("items"), src.get("defaultMode", 0o644))
        elif "projected" in vol:
            _projected(kube, pod, vol["projected"], target)
        elif "downwardAPI" in vol:
            _write_items(target, _downward(pod, vol["downwardAPI"].get("items", [])), None, 0o644)
        else:  # emptyDir and anything else the agent treats as scratch space
            target.mkdir(parents=True, exist_ok=True)
            os.chmod(target, 0o777)
        paths[name] = target
    return paths


def _projected(kube: Kube, pod: Obj, proj: Obj, target: Path) -> None:
    ns = pod["metadata"]["namespace"]
    target.mkdir(parents=True, exist_ok=True)
    mode = proj.get("defaultMode", 0o644)
    for src in proj.get("sources", []):
        if "serviceAccountToken" in src:
            sat = src["serviceAccountToken"]
            _write_items(
                target,
                {"t": _service_account_token(kube, pod, sat)},
                [{"key": "t", "path": sat["path"]}],
                mode,
            )
        elif "configMap" in src or "secret" in src:
            kind = "configMap" if "configMap" in src else "secret"
            ref = src[kind]
            data = _object_data(kube, kind, ns, ref["name"], bool(ref.get("optional")))
            if kind == "configMap" and ref["name"] == "kube-root-ca.crt" and kube.ca_pem:
                # The agent knows the CA that signs the API server it forwards to.
                data = {"ca.crt": kube.ca_pem}
            _write_items(target, data or {}, ref.get("items"), mode)
        elif "downwardAPI" in src:
            _write_items(target, _downward(pod, src["downwardAPI"].get("items", [])), None, mode)
