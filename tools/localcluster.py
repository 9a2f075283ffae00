#!/usr/bin/env python3
"""A real, local Kubernetes control plane for tests: etcd, kube-apiserver, controller-manager,
kube-scheduler and kwok (fake nodes), all on loopback, built by tools/controlplane/build.sh.

Why real binaries: scheduling (GPU fit), garbage collection, CRD validation and RBAC are the
behaviours our operator relies on; fakes would only test our assumptions about them.

    python tools/localcluster.py up [--state DIR]     # prints the kubeconfig path
    python tools/localcluster.py down [--state DIR]   # stops the processes, removes DIR

Library: ``start(state_dir) -> Cluster`` and ``stop(state_dir)``.  Stdlib + PyYAML only.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ADMIN_TOKEN = "kuberank-admin-token"  # loopback-only test cluster; never a real credential
SERVICE_CIDR = "10.96.0.0/16"  # virtual: allocated in etcd, never routed (no kube-proxy)
KWOK_NODE_IP = "192.0.2.1"  # TEST-NET-1: fake, unroutable by design
KWOK_POD_CIDR = "198.51.100.1/24"  # TEST-NET-2: fake pod IPs that kwok hands out
STAGES = ("node-initialize", "node-heartbeat-with-lease", "pod-ready", "pod-complete", "pod-delete")
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")
PIDS_FILE = "pids.json"
MARKER = ".kuberank-localcluster"  # only directories holding it are ever wiped


@dataclass(frozen=True)
class FakeNode:
    name: str
    gpus: int
    address: str  # TEST-NET-1, only ever a label: kwok answers for these nodes
    cpu: str = "16"
    memory: str = "64Gi"


FAKE_NODES = (
    FakeNode("gpu-node-1", 2, "192.0.2.11"),
    FakeNode("gpu-node-2", 1, "192.0.2.12"),
    FakeNode("cpu-node-1", 0, "192.0.2.21"),
)


class ClusterError(RuntimeError):
    """A component failed to start or become ready; the message names it and quotes its log."""


def default_cache() -> Path:
    return Path(os.environ.get("KUBERANK_CACHE", Path.home() / ".cache" / "kuberank"))


def default_state_dir() -> Path:
    return default_cache() / "cluster"


def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent


@dataclass
class Cluster:
    """A running cluster; ``env()`` gives a subprocess environment that talks to it."""

    state_dir: Path
    bin_dir: Path
    server: str
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def kubeconfig(self) -> Path:
        return self.state_dir / "kubeconfig"

    @property
    def ca_file(self) -> Path:
        return self.state_dir / "pki" / "apiserver.crt"

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["KUBECONFIG"] = str(self.kubeconfig)
        env["PATH"] = f"{self.bin_dir}{os.pathsep}{env.get('PATH', '')}"
        return env

    def stop(self) -> None:
        stop(self.state_dir, self.procs)


# --------------------------------------------------------------------------- building


def ensure_binaries() -> Path:
    """Run the idempotent build script (seconds when cached); raise with its log tail if not."""
    script = repo_root() / "tools" / "controlplane" / "build.sh"
    proc = subprocess.run(["bash", str(script)], capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.splitlines()[-40:])
        raise ClusterError(f"{script} failed with exit code {proc.returncode}:\n{tail}")
    return Path(proc.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------- processes


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def log_tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _failure(name: str, state_dir: Path, why: str) -> ClusterError:
    log = state_dir / "logs" / f"{name}.log"
    return ClusterError(f"{name} {why}; last lines of {log}:\n{log_tail(log)}")


def _die_with_parent() -> None:
    """Runs in the child before exec: SIGTERM it when the launching process dies, so a killed
    test run leaks no control plane (PR_SET_PDEATHSIG)."""
    ctypes.CDLL(None).prctl(1, signal.SIGTERM)


def _launch(name: str, argv: list[str], state_dir: Path,
            detach: bool) -> subprocess.Popen[bytes]:
    log_dir = state_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    with open(log_dir / f"{name}.log", "ab") as log:
        # A new session: the caller's Ctrl-C reaches the caller, which then stops us in order.
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True, preexec_fn=None if detach else _die_with_parent,
        )
    _record_pid(state_dir, name, proc.pid)
    return proc


def _record_pid(state_dir: Path, name: str, pid: int) -> None:
    path = state_dir / PIDS_FILE
    pids = json.loads(path.read_text()) if path.exists() else {}
    pids[name] = pid
    path.write_text(json.dumps(pids, indent=1))


def _pid_is_ours(pid: int, state_dir: Path) -> bool:
    """Alive, not a zombie, and started with this state dir on its command line."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z" and str(state_dir) in cmdline


def _terminate(pid: int, state_dir: Path, proc: subprocess.Popen[bytes] | None) -> None:
    if not _pid_is_ours(pid, state_dir):
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return
        if proc is None and not _pid_is_ours(pid, state_dir):
            return
        time.sleep(0.1)
    if _pid_is_ours(pid, state_dir):
        os.kill(pid, signal.SIGKILL)
    if proc is not None:
        proc.wait(timeout=10)


def stop(state_dir: Path, procs: dict[str, subprocess.Popen[bytes]] | None = None) -> None:
    """Stop the components in reverse start order (works from another process), remove state."""
    state_dir = state_dir.resolve()
    pids_path = state_dir / PIDS_FILE
    pids: dict[str, int] = json.loads(pids_path.read_text()) if pids_path.exists() else {}
    for name in reversed(COMPONENTS):
        if name in pids:
            _terminate(pids[name], state_dir, (procs or {}).get(name))
    if (state_dir / MARKER).exists():
        shutil.rmtree(state_dir, ignore_errors=True)


def running(state_dir: Path) -> bool:
    pids_path = state_dir / PIDS_FILE
    if not pids_path.exists():
        return False
    pids: dict[str, int] = json.loads(pids_path.read_text())
    return set(pids) == set(COMPONENTS) and all(
        _pid_is_ours(pid, state_dir.resolve()) for pid in pids.values()
    )


# --------------------------------------------------------------------------- API access


class Api:
    """Minimal authenticated JSON client (stdlib only) for bootstrapping the cluster."""

    def __init__(self, server: str, ca_file: Path, token: str = ADMIN_TOKEN) -> None:
        self.server = server
        self.token = token
        self.ctx = ssl.create_default_context(cafile=str(ca_file))

    def call(self, method: str, path: str, body: Any = None,
             content_type: str = "application/json") -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.server + path, data=data, method=method)
        req.add_header("Authorization", f"Bearer {self.token}")
        req.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(req, context=self.ctx, timeout=10) as resp:
                raw = resp.read()
                status = resp.status
        except urllib.error.HTTPError as err:
            raw, status = err.read(), err.code
        try:
            return status, json.loads(raw) if raw else None
        except ValueError:
            return status, raw.decode(errors="replace")


def _wait(what: str, check: Callable[[], bool], deadline: float, state_dir: Path,
          procs: dict[str, subprocess.Popen[bytes]], blame: str) -> None:
    """Poll ``check`` until true; fail fast naming any component that exited meanwhile."""
    while True:
        for name, proc in procs.items():
            if proc.poll() is not None:
                raise _failure(name, state_dir, f"exited with code {proc.returncode}")
        try:
            if check():
                return
        except (OSError, ssl.SSLError):
            pass  # not listening yet
        if time.monotonic() > deadline:
            raise _failure(blame, state_dir, f"did not become ready: timed out waiting for {what}")
        time.sleep(0.25)


def _http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=2) as resp:
        return bool(resp.status == 200)


# --------------------------------------------------------------------------- manifests


def node_manifest(node: FakeNode) -> dict[str, Any]:
    """A Node that kwok manages (label type=kwok, kwok's annotation conventions)."""
    resources = {"cpu": node.cpu, "memory": node.memory, "pods": "110"}
    if node.gpus:
        resources["nvidia.com/gpu"] = str(node.gpus)
    labels = {
        "type": "kwok",
        "kubernetes.io/hostname": node.name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "node-role.kubernetes.io/agent": "",
    }
    if node.gpus:
        labels["nvidia.com/gpu.present"] = "true"
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": node.name,
            "labels": labels,
            "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
        },
        "status": {
            "capacity": resources,
            "allocatable": resources,
            "addresses": [{"type": "InternalIP", "address": node.address},
                          {"type": "Hostname", "address": node.name}],
        },
    }


def kubeconfig_doc(server: str, ca_file: Path, token: str = ADMIN_TOKEN) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "kuberank", "cluster": {
            "server": server, "certificate-authority": str(ca_file)}}],
        "users": [{"name": "admin", "user": {"token": token}}],
        "contexts": [{"name": "kuberank", "context": {
            "cluster": "kuberank", "user": "admin", "namespace": "default"}}],
        "current-context": "kuberank",
    }


def _node_ready(node: dict[str, Any]) -> bool:
    conditions = node.get("status", {}).get("conditions", [])
    ready = any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)
    blocking = [t for t in node.get("spec", {}).get("taints", [])
                if t["key"].startswith("node.kubernetes.io/")]
    return ready and not blocking


# --------------------------------------------------------------------------- start


def _prepare(state_dir: Path, bin_dir: Path) -> None:
    (state_dir / "pki").mkdir(parents=True, exist_ok=True)
    (state_dir / MARKER).touch()
    (state_dir / "logs").mkdir()
    (state_dir / "tokens.csv").write_text(f'{ADMIN_TOKEN},admin,admin,"system:masters"\n')
    subprocess.run(
        ["openssl", "genrsa", "-out", str(state_dir / "pki" / "sa.key"), "2048"],
        check=True, capture_output=True,
    )
    docs = [yaml.safe_load((bin_dir / "kwok-stages" / f"{s}.yaml").read_text()) for s in STAGES]
    (state_dir / "kwok.yaml").write_text(yaml.safe_dump_all(docs))


def start(state_dir: Path | None = None, bin_dir: Path | None = None,
          timeout: float = 180.0, detach: bool = False) -> Cluster:
    """Start a fresh cluster in ``state_dir`` (wiped first) and wait until it is usable.

    ``detach=False`` (tests) ties the processes' lives to this one; the CLI detaches them.
    A port taken between picking and binding (another cluster starting) is retried."""
    state_dir = (state_dir or default_state_dir()).resolve()
    bin_dir = (bin_dir or default_cache() / "bin").resolve()
    for exe in ("etcd", *COMPONENTS[1:]):
        if not os.access(bin_dir / exe, os.X_OK):
            raise ClusterError(f"{bin_dir / exe} missing: run tools/controlplane/build.sh")
    if running(state_dir):
        raise ClusterError(f"a cluster is already running in {state_dir}; run `down` first")
    if state_dir.exists() and any(state_dir.iterdir()) and not (state_dir / MARKER).exists():
        raise ClusterError(f"{state_dir} is not empty and not a localcluster state dir")
    deadline = time.monotonic() + timeout
    for attempt in range(3):
        stop(state_dir)
        _prepare(state_dir, bin_dir)
        procs: dict[str, subprocess.Popen[bytes]] = {}
        try:
            return _boot(state_dir, bin_dir, procs, deadline, detach)
        except ClusterError:
            stop_keep_logs(state_dir, procs)
            if attempt == 2 or not _port_clash(state_dir):
                raise
        except BaseException:
            stop_keep_logs(state_dir, procs)
            raise
    raise AssertionError("unreachable")


def _port_clash(state_dir: Path) -> bool:
    return any("address already in use" in log.read_text(errors="replace")
               for log in (state_dir / "logs").glob("*.log"))


def stop_keep_logs(state_dir: Path, procs: dict[str, subprocess.Popen[bytes]]) -> None:
    """Stop processes after a failed start but keep the logs for the person debugging it."""
    for name in reversed(COMPONENTS):
        if name in procs:
            _terminate(procs[name].pid, state_dir, procs[name])


def _boot(state_dir: Path, bin_dir: Path, procs: dict[str, subprocess.Popen[bytes]],
          deadline: float, detach: bool) -> Cluster:
    pki = state_dir / "pki"
    etcd_client, etcd_peer, api_port = free_port(), free_port(), free_port()
    client_url, peer_url = f"http://127.0.0.1:{etcd_client}", f"http://127.0.0.1:{etcd_peer}"
    procs["etcd"] = _launch("etcd", [
        str(bin_dir / "etcd"), "--name=kuberank", f"--data-dir={state_dir / 'etcd'}",
        f"--listen-client-urls={client_url}", f"--advertise-client-urls={client_url}",
        f"--listen-peer-urls={peer_url}", f"--initial-advertise-peer-urls={peer_url}",
        f"--initial-cluster=kuberank={peer_url}", "--unsafe-no-fsync", "--log-level=warn",
    ], state_dir, detach)
    _wait("etcd /health", lambda: _http_ok(f"{client_url}/health"), deadline, state_dir, procs,
          "etcd")

    procs["kube-apiserver"] = _launch("kube-apiserver", [
        str(bin_dir / "kube-apiserver"), f"--etcd-servers={client_url}",
        "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", f"--secure-port={api_port}",
        "--endpoint-reconciler-type=none", f"--cert-dir={pki}",
        f"--token-auth-file={state_dir / 'tokens.csv'}", "--authorization-mode=RBAC",
        # As OpenShift runs it: an owner reference that blocks deletion needs update on the
        # owner's finalizers, and changing one needs delete on the child: only a chart that
        # grants both gets past.
        "--enable-admission-plugins=OwnerReferencesPermissionEnforcement",
        f"--service-account-key-file={pki / 'sa.key'}",
        f"--service-account-signing-key-file={pki / 'sa.key'}",
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
        f"--service-cluster-ip-range={SERVICE_CIDR}", "--allow-privileged=true",
        "--profiling=false", "--v=1",
    ], state_dir, detach)
    server = f"https://127.0.0.1:{api_port}"
    ca_file = pki / "apiserver.crt"

    def apiserver_ready() -> bool:
        return ca_file.exists() and Api(server, ca_file).call("GET", "/readyz")[0] == 200

    _wait("/readyz", apiserver_ready, deadline, state_dir, procs, "kube-apiserver")
    kubeconfig = state_dir / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(kubeconfig_doc(server, ca_file)))
    api = Api(server, ca_file)

    procs["kube-controller-manager"] = _launch("kube-controller-manager", [
        str(bin_dir / "kube-controller-manager"), f"--kubeconfig={kubeconfig}",
        "--leader-elect=false", "--secure-port=0", f"--root-ca-file={ca_file}",
        f"--service-account-private-key-file={pki / 'sa.key'}", "--v=1",
    ], state_dir, detach)
    procs["kube-scheduler"] = _launch("kube-scheduler", [
        str(bin_dir / "kube-scheduler"), f"--kubeconfig={kubeconfig}", "--leader-elect=false",
        "--secure-port=0", "--v=1",
    ], state_dir, detach)
    procs["kwok"] = _launch("kwok", [
        str(bin_dir / "kwok"), f"--kubeconfig={kubeconfig}", f"--config={state_dir / 'kwok.yaml'}",
        "--manage-all-nodes=false", "--manage-nodes-with-label-selector=type=kwok",
        f"--node-ip={KWOK_NODE_IP}", f"--cidr={KWOK_POD_CIDR}",
        "--node-lease-duration-seconds=40",
    ], state_dir, detach)

    _create_nodes(api, state_dir)
    names = {n.name for n in FAKE_NODES}

    def nodes_ready() -> bool:
        status, body = api.call("GET", "/api/v1/nodes?labelSelector=type%3Dkwok")
        if status != 200:
            return False
        return names <= {n["metadata"]["name"] for n in body["items"] if _node_ready(n)}

    _wait("fake nodes Ready and untainted", nodes_ready, deadline, state_dir, procs, "kwok")
    _wait("ServiceAccount default/default",
          lambda: api.call("GET", "/api/v1/namespaces/default/serviceaccounts/default")[0] == 200,
          deadline, state_dir, procs, "kube-controller-manager")
    return Cluster(state_dir=state_dir, bin_dir=bin_dir, server=server, procs=procs)


def _create_nodes(api: Api, state_dir: Path) -> None:
    for node in FAKE_NODES:
        manifest = node_manifest(node)
        status, body = api.call("POST", "/api/v1/nodes", manifest)
        if status not in (201, 409):
            raise ClusterError(f"creating node {node.name} failed ({status}): {body}")
        # The create may drop status; the status subresource makes capacity stick.
        status, body = api.call(
            "PATCH", f"/api/v1/nodes/{node.name}/status", {"status": manifest["status"]},
            content_type="application/merge-patch+json",
        )
        if status != 200:
            raise ClusterError(f"patching node {node.name} status failed ({status}): {body}")


# --------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("command", choices=("up", "down"))
    parser.add_argument("--state", type=Path, default=None,
                        help="state directory (default $KUBERANK_CACHE/cluster)")
    parser.add_argument("--bin", type=Path, default=None,
                        help="binaries (default $KUBERANK_CACHE/bin)")
    parser.add_argument("--timeout", type=float, default=180.0)
    args = parser.parse_args(argv)
    state_dir = (args.state or default_state_dir()).resolve()
    if args.command == "down":
        stop(state_dir)
        return 0
    if running(state_dir):
        print(state_dir / "kubeconfig")  # idempotent: `up` on a running cluster reuses it
        return 0
    began = time.monotonic()
    try:
        cluster = start(state_dir, args.bin, timeout=args.timeout, detach=True)
    except ClusterError as err:
        print(f"localcluster: {err}", file=sys.stderr)
        return 1
    print(f"localcluster: up in {time.monotonic() - began:.1f}s", file=sys.stderr)
    print(cluster.kubeconfig)
    return 0


if __name__ == "__main__":
    sys.exit(main())
