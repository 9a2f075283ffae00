"""What a fresh llama context's first decodes cost, and whether the runtime's warm-up pays that
before /health says ready rather than on a client's first request.

    python benchmarks/bench_startup.py --tokenizer DIR [--shape minilm-l6] [--gpu-layers -1]
        [--work DIR]

Run it once per shape, each time in a fresh process: the engine half measures in this process,
so nothing before it may have touched the GPU. Both halves load CUDA's kernels as the runtime
does (`CUDA_MODULE_LOADING=EAGER` on a GPU); `CUDA_MODULE_LOADING=LAZY python ...` measures
CUDA's own default, each kernel loaded at its first use.
  engine   a new model and context with the runtime's GPU choices (8 pairs per decode, flash
           auto; on the CPU 1 pair, flash on): the first decode, the median of the next five
           of the same shape, the first and second decode of a shape not seen yet (3 short
           pairs), and a second context's first decode
  runtime  the runtime with its defaults (only --gpu-layers), in a process of its own: seconds
           from start to /health 200, the warm-up its log reports, its first three 32-document
           requests against the median of the next ten
--tokenizer as for bench_gpu.py (MiniLM's vocab.txt and tokenizer files).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from bench_gpu import PER_REQUEST, WORDS, build_model, tokenized_pairs
from bench_runtime import start_runtime
from benchkit import QUERY, documents
from kuberank.runtime.model import (
    ContextParams,
    RankContext,
    RankModel,
    default_threads,
    use_cuda_defaults,
)


def timed_ms(step: Callable[[], object]) -> float:
    started = time.perf_counter()
    step()
    return (time.perf_counter() - started) * 1000


def bench_engine(gguf: Path, pairs: list[list[int]], gpu_layers: int) -> str:
    """First decodes of fresh contexts against the same decodes once warm."""
    on_gpu = gpu_layers != 0
    pack = 8 if on_gpu else 1
    loaded = time.perf_counter()
    model = RankModel(gguf, gpu_layers=gpu_layers)
    load_ms = (time.perf_counter() - loaded) * 1000
    params = ContextParams(ctx_size=512, batch_size=max(512, pack * max(map(len, pairs))),
                           gpu_layers=gpu_layers, flash_attn="auto" if on_gpu else "on",
                           max_seqs=pack, threads=default_threads())
    short = [pair[:24] for pair in pairs[-3:]] if on_gpu else [pairs[-1][:24]]
    contexts = [RankContext(model, params)]
    try:
        first = timed_ms(lambda: contexts[0].score(pairs[:pack]))
        steady = statistics.median(
            timed_ms(lambda i=i: contexts[0].score(pairs[pack * i:pack * (i + 1)]))
            for i in range(1, 6))
        new_shape = [timed_ms(lambda: contexts[0].score(short)) for _ in range(2)]
        contexts.append(RankContext(model, params))
        second_context = timed_ms(lambda: contexts[1].score(pairs[:pack]))
    finally:
        for ctx in contexts:
            ctx.close()
        model.close()
    return (f"  engine ({pack} pair(s) per decode): model load {load_ms:.0f} ms; first decode "
            f"{first:.1f} ms vs {steady:.1f} ms warm ({first / steady:.1f}x); a new shape's "
            f"first decode {new_shape[0]:.1f} ms, then {new_shape[1]:.1f} ms; a second "
            f"context's first decode {second_context:.1f} ms")


def bench_runtime(gguf: Path, docs: list[str], gpu_layers: int, work: Path) -> str:
    """Start to ready, then the first requests a client sends against later ones."""
    log = work / f"{gguf.stem}-startup.log"
    started = time.perf_counter()
    proc, url = start_runtime(gguf, "--gpu-layers", str(gpu_layers), log=log)
    ready_s = time.perf_counter() - started
    requests = [docs[i:i + PER_REQUEST] for i in range(0, len(docs), PER_REQUEST)]
    try:
        with httpx.Client(base_url=url, timeout=600) as http:
            def post(batch: list[str]) -> float:
                return timed_ms(lambda: http.post("/v1/rerank", json={
                    "query": QUERY, "documents": batch,
                    "return_documents": False}).raise_for_status())

            latencies = [post(requests[i % len(requests)]) for i in range(13)]
    finally:
        proc.terminate()
        proc.wait(30)
    warmed = re.search(r"warmed up (\d+) context\(s\) in (\d+) ms", log.read_text())
    warm_up = (f"{warmed.group(2)} ms over {warmed.group(1)} context(s)" if warmed
               else "not in the log")
    steady = statistics.median(latencies[3:])
    first = ", ".join(f"{ms:.1f}" for ms in latencies[:3])
    return (f"  runtime (its defaults): ready in {ready_s:.1f} s (warm-up {warm_up}); first "
            f"three requests {first} ms vs {steady:.1f} ms median of the next ten (first "
            f"{latencies[0] / steady:.2f}x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokenizer", type=Path, required=True)
    parser.add_argument("--shape", default="minilm-l6")
    parser.add_argument("--gpu-layers", type=int, default=-1)
    parser.add_argument("--work", type=Path, default=None)
    args = parser.parse_args()
    use_cuda_defaults(args.gpu_layers)  # as the runtime's main, before any CUDA call
    work = args.work or Path(tempfile.mkdtemp(prefix="kuberank-bench-startup-"))
    work.mkdir(parents=True, exist_ok=True)
    _, gguf = build_model(args.shape, args.tokenizer, work)
    docs = documents(13 * PER_REQUEST, words=WORDS.get(args.shape, 90),
                     vocab_file=args.tokenizer / "vocab.txt")
    probe = RankModel(gguf)  # tokenizes on the CPU: no GPU touched yet
    pairs = tokenized_pairs(probe, docs)
    probe.close()
    print(f"{args.shape}, gpu layers {args.gpu_layers}, CUDA_MODULE_LOADING="
          f"{os.environ.get('CUDA_MODULE_LOADING', '-')}, pairs of "
          f"{min(map(len, pairs))}-{max(map(len, pairs))} tokens", flush=True)
    print(bench_engine(gguf, pairs, args.gpu_layers), flush=True)
    print(bench_runtime(gguf, docs, args.gpu_layers, work), flush=True)


if __name__ == "__main__":
    main()
