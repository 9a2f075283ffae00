"""How the operator scales: time from creating N RerankModels to all Ready, its peak memory,
and (``--restart``) how long a restarted operator, or a new leader, takes to act again.

Starts a private control plane (tools/localcluster.py) with extra kwok GPU nodes so every
model fits (each asks for one fake GPU), runs the real kuberank-operator process for one
namespace, creates N models as fast as the API accepts them, and polls the list until every
model reports Ready=True. Peak memory is the operator process's VmHWM from /proc. ``--keys K``
then creates K ApiKeys and waits for every key's Secret. ``--restart`` then stops the operator,
starts it again, creates one more model at once and times until its Deployment exists: a new
process handles nothing before kopf has listed everything it indexes.

    .venv/bin/python benchmarks/bench_operator_scale.py [--models 200] [--gpu-nodes 25]
        [--gpus-per-node 8] [--keys 0] [--restart] [--log FILE] [--bin DIR] [--timeout 900]
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


def _apikey(name: str) -> dict[str, Any]:
    return {"apiVersion": "kuberank.io/v1alpha1", "kind": "ApiKey", "metadata": {"name": name},
            "spec": {"models": ["*"]}}


def _items(api: localcluster.Api, path: str) -> list[dict[str, Any]]:
    """The objects a list call returns (none while the API server refuses it)."""
    status, body = api.call("GET", path)
    if status != 200:
        return []
    items: list[dict[str, Any]] = (body if isinstance(body, dict) else json.loads(body))["items"]
    return items


def _create_all(api: localcluster.Api, path: str, objects: list[dict[str, Any]]) -> None:
    with ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(lambda o: api.call("POST", path, o)[0], objects))
    if any(c != 201 for c in codes):
        raise SystemExit(f"create failed: {sorted(set(codes))}")


def _wait(what: str, done: Any, timeout: float) -> float:
    """Seconds until ``done()`` holds, polled every 0.2 s."""
    start = time.monotonic()
    while not done():
        if time.monotonic() - start > timeout:
            raise SystemExit(f"timeout waiting for {what}")
        time.sleep(0.2)
    return time.monotonic() - start


def _peak_rss_mib(pid: int, field: str = "VmHWM") -> float:
    """The process's peak (VmHWM) or current (VmRSS) resident memory."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _ready_count(api: localcluster.Api, ns: str) -> int:
    items = _items(api, f"/apis/kuberank.io/v1alpha1/namespaces/{ns}/rerankmodels")
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
    p.add_argument("--keys", type=int, default=0, help="ApiKeys to create once models are Ready")
    p.add_argument("--restart", action="store_true",
                   help="then restart the operator and time until it acts on a new model")
    p.add_argument("--log", type=Path, default=None,
                   help="keep the operator's log in this file (else removed with the cluster)")
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
        log = (args.log or state / "operator.log").open("ab")
        exe = Path(sys.executable).parent / "kuberank-operator"

        def start_operator() -> subprocess.Popen[bytes]:
            started = subprocess.Popen(
                [str(exe), "--namespace", ns, "--liveness-endpoint", liveness],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            deadline = time.monotonic() + 120
            while True:
                try:
                    urllib.request.urlopen(liveness, timeout=1).close()
                    return started
                except OSError as err:
                    if time.monotonic() > deadline or started.poll() is not None:
                        raise SystemExit(
                            f"operator did not come up; see {state}/operator.log") from err
                    time.sleep(0.2)

        op = start_operator()

        models = f"/apis/kuberank.io/v1alpha1/namespaces/{ns}/rerankmodels"
        start = time.monotonic()
        _create_all(api, models, [_model(f"m{i:04d}") for i in range(args.models)])
        created = time.monotonic() - start
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
        if args.keys:
            keys = f"/apis/kuberank.io/v1alpha1/namespaces/{ns}/apikeys"
            secrets = f"/api/v1/namespaces/{ns}/secrets?labelSelector=kuberank.io%2Fapikey"
            began = time.monotonic()
            _create_all(api, keys, [_apikey(f"k{i:04d}") for i in range(args.keys)])
            took = _wait("every key's Secret",
                         lambda: len(_items(api, secrets)) >= args.keys, args.timeout)
            print(f"keys: {args.keys} Secrets written after {time.monotonic() - began:.1f}s "
                  f"(the last wait {took:.1f}s)")
        time.sleep(10)  # settled: what the operator holds for what it watches
        print(f"operator memory with everything settled: VmRSS {_peak_rss_mib(op.pid, 'VmRSS'):.0f}"
              f" MiB, peak (VmHWM) {_peak_rss_mib(op.pid):.0f} MiB")
        if args.restart:
            began = time.monotonic()
            op.terminate()
            op.wait(timeout=300)
            print(f"restart: stopped {time.monotonic() - began:.1f}s after SIGTERM")
            began = time.monotonic()
            op = start_operator()
            up = time.monotonic() - began
            _create_all(api, models, [_model("probe")])
            acted = _wait("the new model's Deployment", lambda: api.call(
                "GET", f"/apis/apps/v1/namespaces/{ns}/deployments/rrm-probe")[0] == 200,
                args.timeout)
            print(f"restart: healthy after {up:.1f}s; a model created then got its Deployment "
                  f"{acted:.1f}s later")
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
