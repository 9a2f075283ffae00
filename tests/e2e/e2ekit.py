"""E2E fixtures: the node agent joined to the session's cluster, a file server on the pod
bridge, and kubectl/helm wrappers. Pods here really run (as processes, see tools/nodeagent)."""

from __future__ import annotations

import hashlib
import json
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import polling
import pytest
from kuberank.modelkit import paths
from kuberank.modelkit.train import build_default_model

REPO = Path(__file__).resolve().parents[2]
NODE = "agent-node"
NODE_SELECTOR = {"kuberank.io/node-agent": "true"}
BRIDGE_IP = "10.250.0.1"
T = TypeVar("T")
NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def wait_for(what: str, check: Callable[[], T | None], timeout: float = 120.0) -> T:
    """Pods really start here, so the e2e tier waits longer and polls less often."""
    return polling.wait_for(what, check, timeout, interval=0.5)


@dataclass
class Kubectl:
    kubeconfig: Path

    def run(self, *args: str, stdin: str | None = None, check: bool = True) -> str:
        proc = subprocess.run(
            ["kubectl", f"--kubeconfig={self.kubeconfig}", *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)}: {proc.stderr.strip()}")
        return proc.stdout

    def json(self, *args: str) -> Any:
        return json.loads(self.run(*args, "-o", "json"))

    def apply(self, doc: dict[str, Any], namespace: str) -> str:
        return self.run("apply", "-n", namespace, "-f", "-", stdin=json.dumps(doc))


@dataclass
class AgentNode:
    name: str
    state_dir: Path
    log: Path

    def pod_logs(self) -> str:
        """Every container log the agent kept (there is no kubelet API for `kubectl logs`)."""
        out = []
        for f in sorted(self.state_dir.glob("pods/*/logs/*.log")):
            tail = f.read_text(errors="replace").splitlines()[-15:]
            out.append(f"== {f.relative_to(self.state_dir)}\n" + "\n".join(tail))
        return "\n".join(out)

    def logs_of(self, namespace: str, pod_prefix: str) -> str:
        """The whole of every container log kept for pods of ``namespace`` whose names start
        with ``pod_prefix``."""
        return "\n".join(f.read_text(errors="replace") for f in sorted(
            self.state_dir.glob(f"pods/{namespace}_{pod_prefix}*/logs/*.log")))


@pytest.fixture(scope="session")
def kubectl(kubeconfig: Path) -> Kubectl:
    return Kubectl(kubeconfig)


@pytest.fixture(scope="session")
def agent_node(
    kubeconfig: Path, kubectl: Kubectl, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AgentNode]:
    """tools/nodeagent as a subprocess (root: it creates namespaces and mounts)."""
    state = tmp_path_factory.mktemp("agent")
    log = state / "agent.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tools.nodeagent",
                "--kubeconfig",
                str(kubeconfig),
                "--node-name",
                NODE,
                "--state-dir",
                str(state / "node"),
            ],
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    node = AgentNode(NODE, state / "node", log)

    def ready() -> bool:
        if proc.poll() is not None:
            pytest.fail(f"node agent exited {proc.returncode}:\n{log.read_text()[-3000:]}")
        out = kubectl.run(
            "get",
            "node",
            NODE,
            "-o",
            "jsonpath={.status.conditions[?(@.type=='Ready')].status}",
            check=False,
        )
        return out == "True"

    wait_for("the agent's node to be Ready", ready, timeout=60)
    try:
        yield node
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass
class FileServer:
    url: str
    directory: Path
    access_log: Path

    def downloads(self, name: str) -> int:
        """Full GETs of ``name`` so far (http.server logs each request line to stderr)."""
        return self.access_log.read_text(errors="replace").count(f'"GET /{name} HTTP')

    def sha256(self, name: str) -> str:
        h = hashlib.sha256()
        with open(self.directory / name, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        return h.hexdigest()


@pytest.fixture(scope="session")
def model_server(
    agent_node: AgentNode, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FileServer]:
    """Serves the model cache, with the default model built, on the bridge address that pod
    namespaces can reach."""
    models = paths.models_dir()
    access_log = tmp_path_factory.mktemp("model-server") / "access.log"
    build_default_model(models)  # cached: returns at once when the model is already there
    with socket.socket() as s:
        s.bind((BRIDGE_IP, 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "http.server",
            str(port),
            "--bind",
            BRIDGE_IP,
            "--directory",
            str(models),
        ],
        stdout=subprocess.DEVNULL,
        stderr=access_log.open("wb"),
    )
    url = f"http://{BRIDGE_IP}:{port}"

    def up() -> bool:
        try:
            with NO_PROXY.open(url + "/", timeout=2):
                return True
        except OSError:
            return False

    wait_for("the model file server", up, timeout=20)
    try:
        yield FileServer(url, models, access_log)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def helm_bin(cluster: Any) -> str:
    return str(Path(cluster.bin_dir) / "helm")


def post_json(
    url: str, body: dict[str, Any], key: str | None = None, timeout: float = 60
) -> tuple[int, Any]:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST")
    req.add_header("Content-Type", "application/json")
    if key:
        req.add_header("Authorization", f"Bearer {key}")
    try:
        with NO_PROXY.open(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        raw = err.read()
        try:
            return err.code, json.loads(raw)
        except ValueError:
            return err.code, raw.decode(errors="replace")


def get_text(url: str, timeout: float = 10) -> str:
    with NO_PROXY.open(url, timeout=timeout) as resp:
        return str(resp.read().decode())
