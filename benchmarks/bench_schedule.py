"""Small requests beside large ones: the runtime's scheduling policies side by side, in one run.

    .venv/bin/python benchmarks/bench_schedule.py [--seconds 20] [--large 64] [--threads N]
        [--model GGUF --vocab VOCAB_TXT] [--gpu-layers N]

Two clients keep sending --large-document requests while a third sends one-document requests
(one at a time, as an interactive search box would). For each --schedule (fifo, shortest) it
runs the real runtime on MiniLM-L6 over loopback HTTP and prints the small requests' p50/p99
latency and the pairs the engine decoded per second (its own metric), then the ratios.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from pathlib import Path

import httpx
from bench_runtime import start_runtime
from benchkit import QUERY, documents, percentile_ms
from kuberank.modelkit import paths
from kuberank.modelkit.build import ensure_minilm
from kuberank.runtime.model import default_threads
from prometheus_client.parser import text_string_to_metric_families

POLICIES = ("fifo", "shortest")


def pairs_decoded(url: str) -> float:
    """The runtime's own count of pairs it has decoded (its batch-size histogram's sum)."""
    text = httpx.get(url + "/metrics").text
    return sum(s.value for family in text_string_to_metric_families(text)
               for s in family.samples if s.name == "kuberank_runtime_batch_pairs_sum")


def measure(url: str, large: list[str], seconds: float) -> tuple[list[float], int]:
    """(latencies of the small requests, pairs of large requests answered) over ``seconds``."""
    deadline = time.perf_counter() + seconds
    small_latencies: list[float] = []
    large_pairs = [0, 0]

    def large_client(slot: int) -> None:
        with httpx.Client(base_url=url, timeout=600) as http:
            while time.perf_counter() < deadline:
                http.post("/v1/rerank", json={"query": QUERY, "documents": large,
                                              "return_documents": False}).raise_for_status()
                large_pairs[slot] += len(large)

    def small_client() -> None:
        with httpx.Client(base_url=url, timeout=600) as http:
            time.sleep(0.5)  # let the large requests fill the queue first
            while time.perf_counter() < deadline:
                t = time.perf_counter()
                http.post("/v1/rerank", json={"query": QUERY, "documents": large[:1],
                                              "return_documents": False}).raise_for_status()
                small_latencies.append(time.perf_counter() - t)
                time.sleep(0.1)

    threads = [threading.Thread(target=large_client, args=(i,)) for i in range(2)]
    threads.append(threading.Thread(target=small_client))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return small_latencies, sum(large_pairs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--large", type=int, default=64, help="documents per large request")
    parser.add_argument("--threads", type=int, default=default_threads())
    parser.add_argument("--model", type=Path, default=None,
                        help="GGUF to serve (default: MiniLM-L6, built if missing)")
    parser.add_argument("--vocab", type=Path, default=None,
                        help="vocab.txt the documents' words come from (default: MiniLM's)")
    parser.add_argument("--gpu-layers", type=int, default=0,
                        help="layers to offload (the runtime then picks its GPU defaults)")
    args = parser.parse_args()
    gguf = args.model or ensure_minilm(paths.models_dir(), lambda m: print(m, file=sys.stderr))[0]
    large = documents(args.large, vocab_file=args.vocab)
    print(f"{gguf.name}, gpu layers {args.gpu_layers}, 2 clients x {args.large}-document "
          f"requests + 1 client x 1-document requests, {args.seconds:.0f} s per policy, "
          f"{args.threads} thread(s), "
          f"load average {os.getloadavg()[0]:.1f} at start")
    results: dict[str, tuple[float, float, float]] = {}
    for policy in POLICIES:
        proc, url = start_runtime(gguf, "--threads", str(args.threads), "--schedule", policy,
                                  "--gpu-layers", str(args.gpu_layers))
        try:
            before, started = pairs_decoded(url), time.perf_counter()
            small, large_pairs = measure(url, large, args.seconds)
            rate = (pairs_decoded(url) - before) / (time.perf_counter() - started)
        finally:
            proc.terminate()
            proc.wait(30)
        p50, p99 = percentile_ms(small, 0.5), percentile_ms(small, 0.99)
        results[policy] = (p50, p99, rate)
        print(f"{policy:<9} small requests: n={len(small):3d} p50 {p50:8.1f} ms  p99 {p99:8.1f} ms"
              f"  (mean {statistics.mean(small) * 1000:.1f} ms) | pairs decoded: {rate:6.1f}/s"
              f" ({large_pairs} answered in large requests)", flush=True)
    fifo, shortest = results["fifo"], results["shortest"]
    print(f"\nsmall p50 shortest/fifo: {shortest[0] / fifo[0]:.3f}x   "
          f"p99: {shortest[1] / fifo[1]:.3f}x   pairs decoded: {shortest[2] / fifo[2]:.2f}x")


if __name__ == "__main__":
    main()
