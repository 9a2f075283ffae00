"""Small requests beside large ones: the runtime's scheduling policies side by side, in one run.

    .venv/bin/python benchmarks/bench_schedule.py [--load beside|mixed] [--seconds 20]
        [--large 64] [--clients 12] [--words 90] [--threads N] [--model GGUF --vocab VOCAB_TXT]
        [--gpu-layers N]

`beside` (the default): two clients keep sending --large-document requests while a third sends
one-document requests (one at a time, as an interactive search box would); it prints the small
requests' p50/p99 latency. `mixed`: --clients closed-loop clients each send requests of 4-34
documents (a seeded draw), the steady load where a size-first rule would hold the larger requests
back; it prints every request's p50/p95/max latency and that of the requests of 30 or more. For
each --schedule (fifo, shortest) it runs the real runtime over loopback HTTP and prints the pairs
the engine decoded per second (its own metric), then the ratios.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import threading
import time
from collections.abc import Callable
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


MIXED_SIZES = range(4, 35)
LARGE_IN_MIX = 30


def measure_mixed(url: str, pool: list[str], seconds: float,
                  clients: int) -> list[tuple[int, float]]:
    """(documents, latency) of every request ``clients`` closed-loop clients sent in ``seconds``."""
    deadline = time.perf_counter() + seconds
    answered: list[tuple[int, float]] = []

    def client(seed: int) -> None:
        sizes = random.Random(seed)
        with httpx.Client(base_url=url, timeout=600) as http:
            while time.perf_counter() < deadline:
                n = sizes.choice(MIXED_SIZES)
                t = time.perf_counter()
                http.post("/v1/rerank", json={"query": QUERY, "documents": pool[:n],
                                              "return_documents": False}).raise_for_status()
                answered.append((n, time.perf_counter() - t))

    threads = [threading.Thread(target=client, args=(seed,)) for seed in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return answered


Load = Callable[[str], tuple[str, tuple[float, ...]]]  # url -> (summary line, figures)


def compare(gguf: Path, args: argparse.Namespace, load: Load) -> dict[str, tuple[float, ...]]:
    """Serve ``gguf`` under each policy and run ``load`` against it: per policy, the figures
    ``load`` measured and, last, the pairs the engine decoded per second."""
    figures: dict[str, tuple[float, ...]] = {}
    for policy in POLICIES:
        proc, url = start_runtime(gguf, "--threads", str(args.threads), "--schedule", policy,
                                  "--gpu-layers", str(args.gpu_layers))
        try:
            before, started = pairs_decoded(url), time.perf_counter()
            summary, measured = load(url)
            rate = (pairs_decoded(url) - before) / (time.perf_counter() - started)
        finally:
            proc.terminate()
            proc.wait(30)
        print(f"{policy:<9} {summary} | pairs decoded: {rate:6.1f}/s", flush=True)
        figures[policy] = (*measured, rate)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--load", choices=("beside", "mixed"), default="beside")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--large", type=int, default=64, help="documents per large request")
    parser.add_argument("--clients", type=int, default=12, help="clients of the mixed load")
    parser.add_argument("--words", type=int, default=90, help="words per document")
    parser.add_argument("--threads", type=int, default=default_threads())
    parser.add_argument("--model", type=Path, default=None,
                        help="GGUF to serve (default: MiniLM-L6, built if missing)")
    parser.add_argument("--vocab", type=Path, default=None,
                        help="vocab.txt the documents' words come from (default: MiniLM's)")
    parser.add_argument("--gpu-layers", type=int, default=0,
                        help="layers to offload (the runtime then picks its GPU defaults)")
    args = parser.parse_args()
    gguf = args.model or ensure_minilm(paths.models_dir(), lambda m: print(m, file=sys.stderr))[0]
    if args.load == "beside":
        what = (f"2 clients x {args.large}-document requests + 1 client x 1-document requests")
    else:
        what = (f"{args.clients} clients x requests of {MIXED_SIZES.start}-{MIXED_SIZES.stop - 1}"
                " documents")
    print(f"{gguf.name}, gpu layers {args.gpu_layers}, {what}, {args.seconds:.0f} s per policy, "
          f"{args.words} words per document, {args.threads} thread(s), "
          f"load average {os.getloadavg()[0]:.1f} at start")
    if args.load == "beside":
        large = documents(args.large, args.words, vocab_file=args.vocab)

        def beside(url: str) -> tuple[str, tuple[float, ...]]:
            small, large_pairs = measure(url, large, args.seconds)
            p50, p99 = percentile_ms(small, 0.5), percentile_ms(small, 0.99)
            return (f"small requests: n={len(small):3d} p50 {p50:8.1f} ms  p99 {p99:8.1f} ms"
                    f"  (mean {statistics.mean(small) * 1000:.1f} ms),"
                    f" {large_pairs} pairs answered in large requests"), (p50, p99)

        figures = compare(gguf, args, beside)
        fifo, shortest = figures["fifo"], figures["shortest"]
        print(f"\nsmall p50 shortest/fifo: {shortest[0] / fifo[0]:.3f}x   "
              f"p99: {shortest[1] / fifo[1]:.3f}x   pairs decoded: {shortest[2] / fifo[2]:.2f}x")
        return
    pool = documents(MIXED_SIZES.stop, args.words, vocab_file=args.vocab)

    def mixed(url: str) -> tuple[str, tuple[float, ...]]:
        answered = measure_mixed(url, pool, args.seconds, args.clients)
        every = [latency for _, latency in answered]
        larger = [latency for n, latency in answered if n >= LARGE_IN_MIX]
        p50, p95, worst = percentile_ms(every, 0.5), percentile_ms(every, 0.95), max(every) * 1000
        return (f"n={len(every):4d} p50 {p50:7.1f} ms  p95 {p95:7.1f} ms  max {worst:7.1f} ms"
                f" | {LARGE_IN_MIX}+ documents: p50 {percentile_ms(larger, 0.5):7.1f} ms"
                f"  max {max(larger) * 1000:7.1f} ms"), (p50, p95, worst)

    figures = compare(gguf, args, mixed)
    fifo, shortest = figures["fifo"], figures["shortest"]
    print(f"\nshortest/fifo: p50 {shortest[0] / fifo[0]:.3f}x   p95 {shortest[1] / fifo[1]:.3f}x"
          f"   max {shortest[2] / fifo[2]:.3f}x   pairs decoded: {shortest[3] / fifo[3]:.2f}x")

if __name__ == "__main__":
    main()
