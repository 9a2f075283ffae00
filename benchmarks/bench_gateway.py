"""What the gateway costs: latency and throughput of gateway → runtime vs the runtime directly.

Starts one kuberank-runtime (tiny test model by default) and one kuberank-gateway serving a
fixed objects file (an ApiKey, a RerankModel, an EndpointSlice pointing at the runtime), so no
cluster is needed; the gateway's request path (auth, parse, limits, routing, forwarding) is
the same as in a cluster. Both are measured in the same run, interleaved:

- latency: sequential requests alternating direct / via gateway; p50 and p99 of each, the
  added milliseconds and the ratios;
- throughput: closed loop with N concurrent clients for a fixed time, alternating direct and
  gateway for a few rounds; the median of each, and the ratio;
- the gateway process's own CPU time per request, which contention on a shared machine
  does not distort the way it distorts wall-clock numbers.

    .venv/bin/python benchmarks/bench_gateway.py [--model PATH] [--requests 300]
        [--concurrency 8] [--seconds 8] [--documents 4] [--rounds 3] [--runtime-threads 1]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from benchkit import free_port
from kuberank.crd.keys import generate_key
from kuberank.modelkit import paths
from kuberank.modelkit.build import ensure_tiny

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
import gatewayobjects

BIN = Path(sys.executable).parent


def spawn(argv: list[str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )


def wait_ok(url: str, proc: subprocess.Popen[bytes], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{proc.args!r} exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    raise SystemExit(f"{url} not ready after {timeout}s")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def measure_latency(
    direct: str, gateway: str, key: str, body: bytes, n: int
) -> tuple[list[float], list[float]]:
    times: dict[str, list[float]] = {"direct": [], "gateway": []}
    auth = {"authorization": f"Bearer {key}", "content-type": "application/json"}
    with httpx.Client(timeout=30) as http:
        for i in range(n):
            order = [("direct", direct), ("gateway", gateway)]
            for name, base in order if i % 2 == 0 else order[::-1]:
                started = time.perf_counter()
                response = http.post(f"{base}/v1/rerank", content=body, headers=auth)
                elapsed = time.perf_counter() - started
                if response.status_code != 200:
                    raise SystemExit(f"{name}: {response.status_code} {response.text}")
                times[name].append(elapsed * 1000)
    return times["direct"], times["gateway"]


async def throughput(base: str, key: str, body: bytes, concurrency: int, seconds: float) -> float:
    auth = {"authorization": f"Bearer {key}", "content-type": "application/json"}
    done = 0
    deadline = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(timeout=60, limits=limits) as http:

        async def worker() -> None:
            nonlocal done
            while time.monotonic() < deadline:
                response = await http.post(f"{base}/v1/rerank", content=body, headers=auth)
                if response.status_code != 200:
                    raise SystemExit(f"{base}: {response.status_code} {response.text}")
                done += 1

        started = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return done / (time.monotonic() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--documents", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--runtime-threads",
        type=int,
        default=1,
        help="llama.cpp threads; 1 keeps spinning threads from fighting the "
        "client and gateway for a small machine's cores",
    )
    args = parser.parse_args()
    model = args.model or ensure_tiny(paths.models_dir(), lambda m: print(m, file=sys.stderr))

    key = generate_key()
    runtime_port, gateway_port = free_port(), free_port()
    body = json.dumps(
        {
            "model": "tiny",
            "query": "what is the capital of france?",
            "documents": [
                f"document {i}: paris is the capital and largest city of france"
                for i in range(args.documents)
            ],
        }
    ).encode()
    procs: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory(prefix="bench-gateway-") as tmp:
        objects_file = Path(tmp) / "objects.yaml"
        gatewayobjects.write(objects_file, gatewayobjects.one_model(key, "tiny", runtime_port))
        try:
            procs.append(
                spawn(
                    [
                        str(BIN / "kuberank-runtime"),
                        "--model",
                        str(model),
                        "--served-name",
                        "tiny",
                        "--host",
                        "127.0.0.1",
                        "--port",
                        str(runtime_port),
                        "--threads",
                        str(args.runtime_threads),
                    ]
                )
            )
            procs.append(
                spawn(
                    [
                        str(BIN / "kuberank-gateway"),
                        "--objects-file",
                        str(objects_file),
                        "--host",
                        "127.0.0.1",
                        "--port",
                        str(gateway_port),
                        "--log-level",
                        "warning",
                    ]
                )
            )
            direct, gateway = (
                f"http://127.0.0.1:{runtime_port}",
                f"http://127.0.0.1:{gateway_port}",
            )
            wait_ok(f"{direct}/health", procs[0])
            wait_ok(f"{gateway}/readyz", procs[1])
            measure_latency(direct, gateway, key, body, 50)  # warm-up: connections, caches
            run(args, direct, gateway, key, body, model, procs[1].pid)
        finally:
            for proc in procs:
                if proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGTERM)
                    proc.wait(timeout=10)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(
    args: argparse.Namespace,
    direct: str,
    gateway: str,
    key: str,
    body: bytes,
    model: Path,
    gateway_pid: int,
) -> None:
    lat_direct, lat_gateway = measure_latency(direct, gateway, key, body, args.requests)
    rates: dict[str, list[float]] = {"direct": [], "gateway": []}
    gateway_cpu = 0.0
    gateway_requests = 0.0
    for _ in range(args.rounds):
        for name, base in (("direct", direct), ("gateway", gateway)):
            cpu_before = cpu_seconds(gateway_pid)
            rate = asyncio.run(throughput(base, key, body, args.concurrency, args.seconds))
            rates[name].append(rate)
            if name == "gateway":
                gateway_cpu += cpu_seconds(gateway_pid) - cpu_before
                gateway_requests += rate * args.seconds
    d50, d99 = percentile(lat_direct, 0.5), percentile(lat_direct, 0.99)
    g50, g99 = percentile(lat_gateway, 0.5), percentile(lat_gateway, 0.99)
    rps_d, rps_g = statistics.median(rates["direct"]), statistics.median(rates["gateway"])
    print(
        f"model {model.name}, {args.documents} documents per request, "
        f"{os.cpu_count()} CPUs shared by client, gateway and runtime"
    )
    print(f"latency, {args.requests} sequential requests each, interleaved (ms):")
    print(f"  direct   p50 {d50:7.2f}  p99 {d99:7.2f}  mean {statistics.fmean(lat_direct):7.2f}")
    print(f"  gateway  p50 {g50:7.2f}  p99 {g99:7.2f}  mean {statistics.fmean(lat_gateway):7.2f}")
    print(f"  added    p50 {g50 - d50:7.2f}  p99 {g99 - d99:7.2f}")
    print(f"  ratio gateway/direct  p50 {g50 / d50:.2f}  p99 {g99 / d99:.2f}")
    print(
        f"throughput, {args.concurrency} concurrent clients, median of {args.rounds} "
        f"alternating {args.seconds:g}s runs:"
    )
    for name, median in (("direct", rps_d), ("gateway", rps_g)):
        runs = ", ".join(f"{r:.1f}" for r in rates[name])
        print(f"  {name:8s}{median:8.1f} req/s   (runs: {runs})")
    print(f"  ratio gateway/direct  {rps_g / rps_d:.2f}")
    if gateway_requests:
        print(
            f"gateway CPU per request: {1000 * gateway_cpu / gateway_requests:.2f} ms "
            f"(=> at most {gateway_requests / gateway_cpu:.0f} req/s per gateway core)"
        )


if __name__ == "__main__":
    main()
