"""Cluster-tier fixtures: the CRDs installed once, and the real kuberank-operator process.

The operator runs as a subprocess (the console script, as in production) watching only the
test's namespace, and is stopped with SIGTERM at the end of each test.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from localcluster import free_port
from polling import wait_for

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Kubectl:
    kubeconfig: Path
    namespace: str | None = None

    def run(
        self, *args: str, stdin: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        cmd = ["kubectl", f"--kubeconfig={self.kubeconfig}"]
        if self.namespace:
            cmd.append(f"--namespace={self.namespace}")
        proc = subprocess.run(
            [*cmd, *args], input=stdin, capture_output=True, text=True, timeout=60
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {proc.stderr.strip()}")
        return proc

    def apply(self, doc: dict[str, Any], check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run("apply", "-f", "-", stdin=json.dumps(doc), check=check)

    def get(self, kind: str, name: str) -> dict[str, Any] | None:
        proc = self.run("get", kind, name, "-o", "json", check=False)
        if proc.returncode != 0:
            if "NotFound" in proc.stderr or "not found" in proc.stderr:
                return None
            raise AssertionError(proc.stderr)
        obj: dict[str, Any] = json.loads(proc.stdout)
        return obj


@pytest.fixture(scope="session")
def crds(kubeconfig: Path) -> Path:
    """Install the generated CRDs and wait until the API serves them."""
    k = Kubectl(kubeconfig)
    k.run("apply", "--server-side", "-f", str(REPO / "crds"))

    def established(name: str) -> bool:
        # Polled: `kubectl wait` errors out on a CRD whose status is not written yet.
        crd = k.get("crd", name) or {}
        return any(c.get("type") == "Established" and c.get("status") == "True"
                   for c in (crd.get("status") or {}).get("conditions") or [])

    for name in ("rerankmodels.kuberank.io", "apikeys.kuberank.io"):
        wait_for(f"CRD {name} established", lambda: established(name))  # noqa: B023
    wait_for(
        "RerankModel API discovery", lambda: k.run("get", "rrm", "-A", check=False).returncode == 0
    )
    return REPO / "crds"


@pytest.fixture(name="wait_for")
def wait_for_fixture() -> Callable[..., Any]:
    """The polling helper, as a fixture (test modules here are not importable packages)."""
    return wait_for


@pytest.fixture
def kubectl(kubeconfig: Path, namespace: str) -> Kubectl:
    return Kubectl(kubeconfig, namespace)


def operator_command() -> list[str]:
    exe = shutil.which("kuberank-operator", path=str(Path(sys.executable).parent))
    return [exe] if exe else [sys.executable, "-m", "kuberank.operator.cli"]


@dataclass
class OperatorProcess:
    proc: subprocess.Popen[bytes]
    log: Path
    liveness: str
    metrics: str  # its Prometheus /metrics URL

    def logs(self) -> str:
        return self.log.read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def start_operator(kubeconfig: Path, namespace: str, log: Path, *extra: str) -> OperatorProcess:
    port, metrics_port = free_port(), free_port()
    liveness = f"http://127.0.0.1:{port}/healthz"
    env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
    cmd = [*operator_command(), "--namespace", namespace, "--liveness-endpoint", liveness,
           "--metrics-port", str(metrics_port), *extra]
    out = log.open("wb")
    proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
    op = OperatorProcess(proc, log, liveness, f"http://127.0.0.1:{metrics_port}/metrics")

    def healthy() -> bool:
        if not op.alive():
            pytest.fail(f"kuberank-operator exited early:\n{op.logs()[-3000:]}")
        try:
            with urllib.request.urlopen(liveness, timeout=2) as resp:
                return bool(resp.status == 200)
        except OSError:
            return False

    wait_for("operator liveness endpoint", healthy, timeout=60)
    return op


@pytest.fixture
def operator_with(
    kubeconfig: Path, namespace: str, crds: Path, tmp_path: Path
) -> Callable[..., OperatorProcess]:
    """Start the real operator on the test namespace with extra flags; the test stops it."""
    return lambda *flags: start_operator(kubeconfig, namespace, tmp_path / "op.log", *flags)


@pytest.fixture
def operator(
    kubeconfig: Path, namespace: str, crds: Path, tmp_path: Path
) -> Iterator[OperatorProcess]:
    """The real operator process watching the test namespace; must still be alive at the end."""
    op = start_operator(kubeconfig, namespace, tmp_path / "operator.log")
    try:
        yield op
        assert op.alive(), f"operator died during the test:\n{op.logs()[-3000:]}"
    finally:
        rc = op.stop()
        print(f"operator exit code {rc}; log tail:\n{op.logs()[-2000:]}")
