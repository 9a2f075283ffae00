"""Runtime throughput and latency against its ceiling and against transformers, in one run.

    .venv/bin/python benchmarks/bench_runtime.py [--pairs 64] [--docs 8] [--threads N]

On the MiniLM-L6 cross-encoder (minilm-l6-reranker.gguf and its HF twin), with the same
documents, thread count and sequence lengths everywhere, it measures pairs/s and p50/p99
request latency of:
  runtime   the real `kuberank-runtime` process over loopback HTTP, 1 and 8 concurrent clients
  raw       a bare llama-cpp-python loop (pre-tokenized pairs, one llama_decode per pair, same
            context settings): the engine's ceiling
  hf        transformers fp32 on the same weights, one padded batch per request
and prints the ratios. Target: runtime >= 0.9x raw.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import llama_cpp
from benchkit import QUERY, documents, free_port, percentile_ms
from kuberank.modelkit import paths
from kuberank.modelkit.build import ensure_minilm
from kuberank.runtime.model import RankModel, default_threads
from kuberank.runtime.pairs import Limits, PairBuilder


@dataclass
class Result:
    name: str
    pairs: int
    seconds: float
    latencies: list[float]

    @property
    def rate(self) -> float:
        return self.pairs / self.seconds

    def row(self) -> str:
        p50, p99 = percentile_ms(self.latencies, 0.5), percentile_ms(self.latencies, 0.99)
        return f"{self.name:<26} {self.rate:8.1f} pairs/s   p50 {p50:8.1f} ms   p99 {p99:8.1f} ms"


def requests_of(docs: list[str], per_request: int) -> list[list[str]]:
    return [docs[i:i + per_request] for i in range(0, len(docs), per_request)]


# -- raw llama-cpp-python loop -------------------------------------------------------------------

def bench_raw(model_path: Path, reqs: list[list[str]], threads: int, flash: bool) -> Result:
    model = RankModel(model_path)  # same load path and pair layout as the runtime
    builder = PairBuilder(model.layout(), model.tokenize, Limits(max_pair_tokens=512))
    q = builder.query(QUERY, truncate=True)
    tokenized = [[builder.pair(q, d, truncate=True).tokens for d in r] for r in reqs]
    cp = llama_cpp.llama_context_default_params()
    cp.n_ctx = cp.n_batch = cp.n_ubatch = 512
    cp.n_seq_max = 1
    cp.embeddings = True
    cp.pooling_type = llama_cpp.LLAMA_POOLING_TYPE_RANK
    cp.flash_attn_type = (llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED if flash
                          else llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED)
    cp.n_threads = cp.n_threads_batch = threads
    ctx = llama_cpp.llama_init_from_model(model.ptr, cp)
    batch = llama_cpp.llama_batch_init(512, 0, 1)

    def score(tokens: list[int]) -> float:
        for i, t in enumerate(tokens):
            batch.token[i], batch.pos[i], batch.n_seq_id[i] = t, i, 1
            batch.seq_id[i][0], batch.logits[i] = 0, True
        batch.n_tokens = len(tokens)
        assert llama_cpp.llama_decode(ctx, batch) == 0
        return float(llama_cpp.llama_get_embeddings_seq(ctx, 0)[0])

    score(tokenized[0][0])
    latencies = []
    started = time.perf_counter()
    for req in tokenized:
        t = time.perf_counter()
        for pair in req:
            score(pair)
        latencies.append(time.perf_counter() - t)
    seconds = time.perf_counter() - started
    llama_cpp.llama_batch_free(batch)
    llama_cpp.llama_free(ctx)
    model.close()
    return Result("raw llama-cpp-python loop", sum(map(len, reqs)), seconds, latencies)


# -- the runtime over HTTP -------------------------------------------------------------------------

def start_runtime(model_path: Path, *flags: str,
                  log: Path | None = None) -> tuple[subprocess.Popen[bytes], str]:
    """`python -m kuberank.runtime` on a free loopback port, once /health answers 200."""
    port = free_port()
    with open(log or os.devnull, "wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "kuberank.runtime", "--model", str(model_path),
             "--host", "127.0.0.1", "--port", str(port), *flags],
            stdout=subprocess.DEVNULL, stderr=err,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"runtime exited with status {proc.returncode} (log: {log})")
        try:
            if httpx.get(url + "/health").status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError("runtime did not become healthy in 120 s")


def bench_runtime(url: str, reqs: list[list[str]], clients: int) -> Result:
    with httpx.Client(base_url=url, timeout=600,
                      limits=httpx.Limits(max_connections=clients)) as http:
        def one(docs: list[str]) -> float:
            t = time.perf_counter()
            r = http.post("/v1/rerank", json={"query": QUERY, "documents": docs,
                                              "return_documents": False})
            r.raise_for_status()
            return time.perf_counter() - t

        one(reqs[0])
        started = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(clients) as pool:
            latencies = list(pool.map(one, reqs))
        seconds = time.perf_counter() - started
    return Result(f"runtime, {clients} client(s)", sum(map(len, reqs)), seconds, latencies)


def runtime_scores(url: str, docs: list[str]) -> list[float]:
    body = httpx.post(url + "/v1/rerank", timeout=600, json={
        "query": QUERY, "documents": docs, "return_documents": False}).json()
    by_index = {r["index"]: r["relevance_score"] for r in body["results"]}
    return [by_index[i] for i in range(len(docs))]


# -- transformers ----------------------------------------------------------------------------------

def bench_transformers(hf_dir: Path, reqs: list[list[str]],
                       threads: int) -> tuple[Result, Callable[[list[str]], list[float]]]:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.set_num_threads(threads)
    tok = AutoTokenizer.from_pretrained(hf_dir)
    model = AutoModelForSequenceClassification.from_pretrained(hf_dir).eval()

    def scores(docs: list[str]) -> list[float]:
        enc = tok([QUERY] * len(docs), docs, padding=True, truncation=True, max_length=512,
                  return_tensors="pt")
        # llama.cpp gives every token type 0; zero them here so both compute the same thing.
        enc["token_type_ids"] = torch.zeros_like(enc["token_type_ids"])
        with torch.inference_mode():
            return [float(x) for x in model(**enc).logits[:, 0]]

    scores(reqs[0])
    latencies = []
    started = time.perf_counter()
    for req in reqs:
        t = time.perf_counter()
        scores(req)
        latencies.append(time.perf_counter() - t)
    seconds = time.perf_counter() - started
    return (Result(f"transformers fp32, batch {len(reqs[0])}", sum(map(len, reqs)), seconds,
                   latencies), scores)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=64, help="pairs per measurement")
    parser.add_argument("--docs", type=int, default=8, help="documents per request")
    parser.add_argument("--threads", type=int, default=default_threads())
    parser.add_argument("--flash-attn", choices=["on", "off"], default="on")
    args = parser.parse_args()
    gguf, hf_dir = ensure_minilm(paths.models_dir(), lambda m: print(m, file=sys.stderr))
    flash = args.flash_attn == "on"
    docs = documents(args.pairs)
    reqs = requests_of(docs, args.docs)
    print(f"MiniLM-L6 cross-encoder, {args.pairs} pairs in requests of {args.docs} documents, "
          f"{args.threads} thread(s), flash attention {args.flash_attn}, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start")

    raw = bench_raw(gguf, reqs, args.threads, flash)
    print(raw.row(), flush=True)
    proc, url = start_runtime(gguf, "--threads", str(args.threads), "--ctx-size", "512",
                              "--flash-attn", args.flash_attn)
    try:
        one = bench_runtime(url, reqs, 1)
        print(one.row(), flush=True)
        eight = bench_runtime(url, reqs, 8)
        print(eight.row(), flush=True)
        served = runtime_scores(url, docs[:args.docs])
    finally:
        proc.terminate()
        proc.wait(30)
    hf, hf_scores = bench_transformers(hf_dir, reqs, args.threads)
    print(hf.row(), flush=True)
    diff = max(abs(a - b) for a, b in zip(served, hf_scores(docs[:args.docs]), strict=True))
    print(f"\nruntime 1 client / raw loop:   {one.rate / raw.rate:5.2f}x   (target >= 0.9)")
    print(f"runtime 8 clients / raw loop:  {eight.rate / raw.rate:5.2f}x")
    print(f"runtime 8 clients / transformers: {eight.rate / hf.rate:5.2f}x")
    print(f"raw loop / transformers:       {raw.rate / hf.rate:5.2f}x")
    print(f"max |score difference| runtime vs transformers: {diff:.2e}")


if __name__ == "__main__":
    main()
