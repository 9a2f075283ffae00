"""The node: registers itself, keeps its lease, and runs the pods the scheduler binds to it."""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from typing import Any

from . import network
from .kube import ApiError, Kube
from .runner import NodeContext, PodWorker, now_iso

Obj = dict[str, Any]
log = logging.getLogger("nodeagent")

NODE_LABELS = {
    "kubernetes.io/os": "linux",
    "kubernetes.io/arch": "amd64",
    "kuberank.io/node-agent": "true",
}


def node_manifest(name: str, labels: dict[str, str]) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {**NODE_LABELS, "kubernetes.io/hostname": name, **labels},
        },
        "spec": {},
    }


def node_status(capacity: dict[str, str], now: str) -> Obj:
    def cond(ctype: str, ok: bool, reason: str) -> Obj:
        return {
            "type": ctype,
            "status": "True" if ok else "False",
            "reason": reason,
            "message": reason,
            "lastHeartbeatTime": now,
            "lastTransitionTime": now,
        }

    return {
        "capacity": capacity,
        "allocatable": capacity,
        "addresses": [{"type": "InternalIP", "address": network.GATEWAY}],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 0}},
        "nodeInfo": {
            "architecture": "amd64",
            "operatingSystem": "linux",
            "kubeletVersion": "v1.34.0-kuberank-nodeagent",
            "kubeProxyVersion": "",
            "containerRuntimeVersion": "nodeagent://processes",
            "osImage": "kuberank node agent",
            "kernelVersion": "",
            "machineID": "",
            "systemUUID": "",
            "bootID": "",
        },
        "conditions": [
            cond("Ready", True, "KubeletReady"),
            cond("MemoryPressure", False, "KubeletHasSufficientMemory"),
            cond("DiskPressure", False, "KubeletHasNoDiskPressure"),
            cond("PIDPressure", False, "KubeletHasSufficientPID"),
            cond("NetworkUnavailable", False, "RouteCreated"),
        ],
    }


def micro_now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Agent:
    def __init__(self, ctx: NodeContext, capacity: dict[str, str], labels: dict[str, str]) -> None:
        self.ctx = ctx
        self.kube: Kube = ctx.kube
        self.name = ctx.node_name
        self.capacity = capacity
        self.labels = labels
        self.workers: dict[str, PodWorker] = {}
        self.stopping = threading.Event()

    # -- node -------------------------------------------------------------------------------
    def register(self) -> None:
        path = f"/api/v1/nodes/{self.name}"
        if self.kube.get_or_none(path) is None:
            self.kube.create("/api/v1/nodes", node_manifest(self.name, self.labels))
        else:
            self.kube.merge_patch(
                path, {"metadata": node_manifest(self.name, self.labels)["metadata"]}
            )
        self.heartbeat()

    def heartbeat(self) -> None:
        self.kube.merge_patch(
            f"/api/v1/nodes/{self.name}/status", {"status": node_status(self.capacity, now_iso())}
        )
        lease_path = f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{self.name}"
        spec = {"holderIdentity": self.name, "leaseDurationSeconds": 40, "renewTime": micro_now()}
        if self.kube.get_or_none(lease_path) is None:
            node = self.kube.get(f"/api/v1/nodes/{self.name}")
            owner = {
                "apiVersion": "v1",
                "kind": "Node",
                "name": self.name,
                "uid": node["metadata"]["uid"],
            }
            body = {"metadata": {"name": self.name, "ownerReferences": [owner]}, "spec": spec}
            self.kube.create("/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases", body)
        else:
            self.kube.merge_patch(lease_path, {"spec": spec})

    # -- pods -------------------------------------------------------------------------------
    def sync(self) -> None:
        pods = self.kube.get("/api/v1/pods", fieldSelector=f"spec.nodeName={self.name}")["items"]
        seen = set()
        for pod in pods:
            uid = pod["metadata"]["uid"]
            seen.add(uid)
            worker = self.workers.get(uid)
            if pod["metadata"].get("deletionTimestamp"):
                grace = float(pod["metadata"].get("deletionGracePeriodSeconds") or 0)
                if worker is None:
                    self._finalize(pod)
                else:
                    worker.request_stop(grace)
                    if worker.finished.is_set():
                        self._finalize(pod)
                        del self.workers[uid]
                continue
            if worker is None:
                if pod.get("status", {}).get("phase") in ("Succeeded", "Failed"):
                    continue
                worker = PodWorker(self.ctx, pod)
                self.workers[uid] = worker
                worker.start()
            else:
                worker.update(pod)
        for uid in list(self.workers):
            if uid not in seen:  # removed without us (force delete): stop what still runs
                self.workers.pop(uid).request_stop(0)

    def _finalize(self, pod: Obj) -> None:
        meta = pod["metadata"]
        body = {"gracePeriodSeconds": 0, "preconditions": {"uid": meta["uid"]}}
        try:
            self.kube.delete(f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}", body)
            log.info("pod %s/%s: deleted", meta["namespace"], meta["name"])
        except ApiError as err:
            if err.status not in (404, 409):
                raise

    def run(self, interval: float = 1.0, heartbeat_every: float = 10.0) -> None:
        self.register()
        last_beat = time.monotonic()
        while not self.stopping.is_set():
            try:
                self.sync()
                if time.monotonic() - last_beat > heartbeat_every:
                    self.heartbeat()
                    last_beat = time.monotonic()
            except (ApiError, OSError) as err:
                log.warning("sync failed: %s", err)
            self.stopping.wait(interval)

    def shutdown(self, delete_node: bool) -> None:
        """Stop every pod's processes; optionally remove the Node so pods reschedule elsewhere."""
        self.stopping.set()
        for worker in self.workers.values():
            worker.request_stop(2)
        for worker in self.workers.values():
            worker.finished.wait(15)
        if delete_node:
            try:
                self.kube.delete(f"/api/v1/nodes/{self.name}")
            except (ApiError, OSError) as err:
                log.warning("node delete failed: %s", err)


def cleanup_stale() -> None:
    """Remove namespaces a previous agent left behind (its processes died with it or will)."""
    for ns in network.stale_netns():
        pids = network.sh("ip", "netns", "pids", ns, check=False).stdout.split()
        for pid in pids:
            network.sh("kill", "-9", pid, check=False)
        network.sh("ip", "netns", "del", ns, check=False)
