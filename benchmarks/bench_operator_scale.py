"""How the operator scales: time from creating N RerankModels to all Ready, and its peak memory.

Starts a private control plane (tools/localcluster.py) with extra kwok GPU nodes so every
model fits (each asks for one fake GPU), runs the real kuberank-operator process for one
namespace, creates N models as fast as the API accepts them, and polls the list until every
model reports Ready=True. Peak memory is the operator process's VmHWM from /proc.

    .venv/bin/python benchmarks/bench_operator_scale.py [--models 200] [--gpu-nodes 25]
        [--gpus-per-node 8] [--bin DIR] [--timeout 900]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))

import localcluster  # noqa: E402

SHA = "d" * 64


def _model(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "kuberank.io/v1alpha1",
        "kind": "RerankModel",
        "metadata": {"name": name},
        "spec": {
            "source": {"url": {"url": f"https://models.example/{name}.gguf", "sha256": SHA}},
            "resources": {"gpus": 1},
        },
    }


def _peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _ready_count(api: localcluster.Api, ns: str) -> int:
    status, body = api.call("GET", f"/apis/kuberank.io/v1alpha1/namespaces/{ns}/rerankmodels")
    if status != 200:
        return 0
    items = (body if isinstance(body, dict) else json.loads(body))["items"]
    return sum(
        any(
            c["type"] == "Ready" and c["status"] == "True"
            for c in (i.get("status") or {}).get("conditions", [])
        )
        for i in items
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", type=int, default=200)
    p.add_argument("--gpu-nodes", type=int, default=25)
    p.add_argument("--gpus-per-node", type=int, default=8)
    p.add_argument("--bin", type=Path, default=None, help="control-plane binaries")
    p.add_argument("--timeout", type=float, default=900)
    args = p.parse_args(argv)
    if args.gpu_nodes > 150:
        p.error("at most 150 fake nodes (their labels use 192.0.2.100-249)")
    if args.gpu_nodes * args.gpus_per_node < args.models:
        p.error("not enough fake GPUs for one per model")

    bin_dir = args.bin or localcluster.ensure_binaries()
    state = Path(tempfile.mkdtemp(prefix="kuberank-bench-"))
    cluster = localcluster.start(state, bin_dir)
    op: subprocess.Popen[bytes] | None = None
    try:
        api = localcluster.Api(cluster.server, cluster.ca_file)
        for i in range(args.gpu_nodes):
            node = localcluster.node_manifest(
                localcluster.FakeNode(
                    f"bench-gpu-{i}",
                    args.gpus_per_node,
                    f"192.0.2.{100 + i}",  # TEST-NET-1 label only; kwok answers for the node
                    cpu="64",
                    memory="256Gi",
                )
            )
            api.call("POST", "/api/v1/nodes", node)
            api.call(
                "PATCH",
                f"/api/v1/nodes/{node['metadata']['name']}/status",
                {"status": node["status"]},
                content_type="application/merge-patch+json",
            )
        env = cluster.env()
        subprocess.run(
            ["kubectl", "apply", "--server-side", "-f", str(REPO / "crds")],
            env=env,
            check=True,
            capture_output=True,
        )
        subprocess.run(
            ["kubectl", "wait", "--for=condition=Established", "crd", "--all"],
            env=env,
            check=True,
            capture_output=True,
        )
        ns = "bench"
        api.call("POST", "/api/v1/namespaces", {"metadata": {"name": ns}})
        liveness = f"http://127.0.0.1:{localcluster.free_port()}/healthz"
        log = (state / "operator.log").open("wb")
        exe = Path(sys.executable).parent / "kuberank-operator"
        op = subprocess.Popen(
            [str(exe), "--namespace", ns, "--liveness-endpoint", liveness],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(liveness, timeout=1).close()
                break
            except OSError as err:
                if time.monotonic() > deadline or op.poll() is not None:
                    raise SystemExit(f"operator did not come up; see {state}/operator.log") from err
                time.sleep(0.2)

        names = [f"m{i:04d}" for i in range(args.models)]
        start = time.monotonic()
        with ThreadPoolExecutor(8) as pool:
            codes = list(
                pool.map(
                    lambda n: api.call(
                        "POST",
                        f"/apis/kuberank.io/v1alpha1/namespaces/{ns}/rerankmodels",
                        _model(n),
                    )[0],
                    names,
                )
            )
        created = time.monotonic() - start
        if any(c != 201 for c in codes):
            raise SystemExit(f"create failed: {sorted(set(codes))}")
        ready = 0
        while ready < args.models:
            if time.monotonic() - start > args.timeout:
                raise SystemExit(f"timeout: {ready}/{args.models} Ready after {args.timeout:.0f}s")
            time.sleep(1.0)
            ready = _ready_count(api, ns)
        elapsed = time.monotonic() - start
        peak = _peak_rss_mib(op.pid)
        print(f"models: {args.models} on {args.gpu_nodes} kwok nodes x {args.gpus_per_node} GPUs")
        print(
            f"created all in {created:.1f}s; all Ready after {elapsed:.1f}s "
            f"({args.models / elapsed:.1f} models/s)"
        )
        print(f"operator peak memory (VmHWM): {peak:.0f} MiB")
        return 0
    finally:
        if op is not None:
            op.terminate()
            try:
                op.wait(timeout=20)
            except subprocess.TimeoutExpired:
                op.kill()
        cluster.stop()


if __name__ == "__main__":
    sys.exit(main())
