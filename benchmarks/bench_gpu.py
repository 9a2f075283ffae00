"""The runtime on a GPU: pairs packed per decode against throughput and latency, and transformers.

    python benchmarks/bench_gpu.py --tokenizer DIR [--shapes minilm-l6,bert-large,xlmr-large]
        [--packs 1,4,8,16,32] [--flash auto,on,off] [--contexts 1,2,4] [--seconds 3]
        [--gpu-layers -1] [--defaults] [--no-transformers]
        [--work DIR] [--json FILE]

For each model shape it writes a seeded random BertForSequenceClassification, or for the xlmr-*
shapes an XLMRobertaForSequenceClassification with a SentencePiece vocabulary (bge-reranker-v2-m3's
kind), as an HF directory and an f16 GGUF made by the project's own converter (speed does not
depend on the weights' values), and measures, on the same documents (~110-170 tokens per pair):
  engine     RankContext.score in-process on pre-tokenized pairs, N pairs per llama_decode: the
             ceiling of that packing; with C contexts, C threads each decoding on its own
             context over one loaded model
  runtime    the real runtime over loopback HTTP with --max-batch-pairs N --contexts C, 32
             documents per request: 8 clients (throughput, p50/p99 under load), then 1 client
             (latency alone)
  hf         transformers on the same weights in padded batches of 32 and 128, fp16 on a GPU
             (what sentence-transformers and TEI run there), fp32 on a CPU, in a process of
             its own (transformers_rate.py)
and the largest |score difference| between the runtime and transformers in fp32.
--tokenizer is a directory with MiniLM's vocab.txt and tokenizer files (any HF twin the model
builder wrote, e.g. ~/.cache/kuberank/models/minilm-l6-reranker-hf).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
import llama_cpp
import numpy as np
from bench_runtime import Result, runtime_scores, start_runtime
from benchkit import QUERY, documents, percentile_ms
from kuberank.modelkit.build import classifier_config, random_encoder, random_head, write_hf_dir
from kuberank.modelkit.convert import convert_hf_dir
from kuberank.runtime.model import (
    ContextParams,
    RankContext,
    RankModel,
    default_threads,
)
from kuberank.runtime.pairs import Limits, PairBuilder

SHAPES: dict[str, dict[str, int]] = {
    "tiny": {"num_hidden_layers": 2, "hidden_size": 64, "num_attention_heads": 4,
             "intermediate_size": 128},
    "minilm-l6": {"num_hidden_layers": 6, "hidden_size": 384, "num_attention_heads": 12,
                  "intermediate_size": 1536},
    "bert-base": {"num_hidden_layers": 12, "hidden_size": 768, "num_attention_heads": 12,
                  "intermediate_size": 3072},
    "bert-large": {"num_hidden_layers": 24, "hidden_size": 1024, "num_attention_heads": 16,
                   "intermediate_size": 4096},
    # XLM-RoBERTa with a SentencePiece vocabulary (tests/runtime/xlmrkit.py builds it):
    "xlmr-tiny": {"num_hidden_layers": 2, "hidden_size": 64, "num_attention_heads": 4,
                  "intermediate_size": 128},
    # bge-reranker-v2-m3's (and bge-reranker-large's) layers; its 250k-piece vocabulary is
    # replaced by a small one, which changes an embedding lookup, not the work per token.
    "xlmr-large": {"num_hidden_layers": 24, "hidden_size": 1024, "num_attention_heads": 16,
                   "intermediate_size": 4096},
}
PER_REQUEST = 32
# Words of MiniLM's vocabulary per document, for pairs of ~110-150 tokens on every shape: the
# small SentencePiece vocabulary of the xlmr shapes splits those words into ~3x more pieces.
WORDS = {"xlmr-tiny": 30, "xlmr-large": 30}


@dataclass
class Row:
    shape: str
    pack: int
    flash: str
    batch_tokens: int
    contexts: int = 1
    engine_pairs_s: float | None = None
    runtime8_pairs_s: float | None = None
    runtime8_p50_ms: float | None = None
    runtime8_p99_ms: float | None = None
    runtime1_p50_ms: float | None = None
    error: str | None = None


def build_model(shape: str, tokenizer: Path, work: Path) -> tuple[Path, Path]:
    """Seeded random cross-encoder of the given shape: its HF directory and an f16 GGUF."""
    hf_dir, gguf = work / f"{shape}-hf", work / f"{shape}.gguf"
    if gguf.is_file():
        return hf_dir, gguf
    if shape.startswith("xlmr-"):
        # In a process of its own: its tokenizer needs transformers, whose torch aborted beside
        # llama.cpp's CUDA libraries at the first free (H200, "free(): invalid pointer").
        kit = Path(__file__).parents[1] / "tests" / "runtime" / "xlmrkit.py"
        subprocess.run([sys.executable, str(kit), str(hf_dir), json.dumps(SHAPES[shape])],
                       check=True, timeout=600)
        convert_hf_dir(hf_dir, gguf, dtype="f16")
    else:
        base = json.loads((tokenizer / "config.json").read_text())
        config = classifier_config({**base, **SHAPES[shape], "max_position_embeddings": 512,
                                    "type_vocab_size": 2}, f"random/{shape}")
        rng = np.random.default_rng(11)
        weights = random_encoder(rng, config)
        weights.update(random_head(rng, config["hidden_size"]))
        hf_dir.mkdir(parents=True, exist_ok=True)
        write_hf_dir(hf_dir, config, weights, tokenizer)
        convert_hf_dir(hf_dir, gguf, dtype="f16")
    return hf_dir, gguf


def tokenized_pairs(model: RankModel, docs: list[str]) -> list[list[int]]:
    builder = PairBuilder(model.layout(), model.tokenize, Limits(max_pair_tokens=512))
    query = builder.query(QUERY, truncate=True)
    return [builder.pair(query, d, truncate=True).tokens for d in docs]


def for_seconds(seconds: float, step: Callable[[], int]) -> float:
    """Pairs per second of `step` (which returns the pairs it scored), repeated for `seconds`."""
    step()  # warm-up: first-use allocations and kernel selection
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        done += step()
    return done / (time.perf_counter() - started)


def bench_engine(gguf: Path, pairs: list[list[int]], pack: int, batch_tokens: int,
                 gpu_layers: int, flash: str, seconds: float, contexts: int = 1) -> float:
    model = RankModel(gguf, gpu_layers=gpu_layers)
    params = ContextParams(ctx_size=512, batch_size=batch_tokens, gpu_layers=gpu_layers,
                           flash_attn=flash, max_seqs=pack,  # type: ignore[arg-type]
                           threads=max(1, default_threads() // contexts))  # as the runtime
    ctxs = [RankContext(model, params) for _ in range(contexts)]
    chunks = [pairs[i:i + pack] for i in range(0, len(pairs), pack)]

    def run(index: int) -> int:
        """Decode on context ``index`` until the deadline; the pairs it scored."""
        ctx, at, done = ctxs[index], index, 0
        ctx.score(chunks[at % len(chunks)])  # warm-up: first-use allocations, kernel choice
        ready.wait()
        while time.perf_counter() < deadline:
            chunk = chunks[at % len(chunks)]
            at += contexts
            ctx.score(chunk)
            done += len(chunk)
        return done

    ready = threading.Event()
    try:
        with concurrent.futures.ThreadPoolExecutor(contexts) as pool:
            futures = [pool.submit(run, i) for i in range(contexts)]
            time.sleep(0.5 + 0.2 * contexts)  # every context warmed up (or still warming)
            started = time.perf_counter()
            deadline = started + seconds
            ready.set()
            done = sum(f.result() for f in futures)
        return done / (time.perf_counter() - started)
    finally:
        for ctx in ctxs:
            ctx.close()
        model.close()


def bench_http(url: str, docs: list[str], clients: int, seconds: float) -> Result:
    requests = [docs[i:i + PER_REQUEST] for i in range(0, len(docs), PER_REQUEST)]
    with httpx.Client(base_url=url, timeout=600,
                      limits=httpx.Limits(max_connections=clients)) as http:
        def post(batch: list[str]) -> float:
            t = time.perf_counter()
            http.post("/v1/rerank", json={"query": QUERY, "documents": batch,
                                          "return_documents": False}).raise_for_status()
            return time.perf_counter() - t

        def client(offset: int, deadline: float) -> list[float]:
            latencies, at = [], offset
            while time.perf_counter() < deadline:
                latencies.append(post(requests[at % len(requests)]))
                at += 1
            return latencies

        post(requests[0])
        started = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(clients) as pool:
            parts = list(pool.map(client, range(clients), [started + seconds] * clients))
        elapsed = time.perf_counter() - started
    latencies = [x for part in parts for x in part]
    return Result(f"runtime, {clients} client(s)", len(latencies) * PER_REQUEST, elapsed,
                  latencies)


def bench_row(row: Row, gguf: Path, docs: list[str], pairs: list[list[int]], gpu_layers: int,
              seconds: float, work: Path) -> list[float] | None:
    """Fill `row`; returns the runtime's scores of the first request, for the accuracy check."""
    row.engine_pairs_s = bench_engine(gguf, pairs, row.pack, row.batch_tokens, gpu_layers,
                                      row.flash, seconds, row.contexts)
    log = work / f"{row.shape}-{row.pack}-{row.flash}-{row.contexts}.log"
    proc, url = start_runtime(gguf, "--ctx-size", "512", "--batch-size", str(row.batch_tokens),
                              "--max-batch-pairs", str(row.pack), "--gpu-layers", str(gpu_layers),
                              "--flash-attn", row.flash, "--contexts", str(row.contexts),
                              log=log)
    try:
        eight = bench_http(url, docs, 8, seconds)
        row.runtime8_pairs_s = eight.rate
        row.runtime8_p50_ms = percentile_ms(eight.latencies, 0.5)
        row.runtime8_p99_ms = percentile_ms(eight.latencies, 0.99)
        row.runtime1_p50_ms = percentile_ms(bench_http(url, docs, 1, seconds / 2).latencies, 0.5)
        return runtime_scores(url, docs[:PER_REQUEST])
    finally:
        proc.terminate()
        proc.wait(30)


def bench_defaults(gguf: Path, docs: list[str], gpu_layers: int, seconds: float,
                   work: Path) -> str:
    """The runtime as a RerankModel runs it: no engine flag but --gpu-layers. Returns a line
    with the settings it chose (its engine_info metric) and its figures."""
    log = work / f"{gguf.stem}-defaults.log"
    proc, url = start_runtime(gguf, "--gpu-layers", str(gpu_layers), log=log)
    try:
        info = next(line for line in httpx.get(url + "/metrics").text.splitlines()
                    if line.startswith("kuberank_runtime_engine_info"))
        eight = bench_http(url, docs, 8, seconds)
        one = bench_http(url, docs, 1, seconds / 2)
    finally:
        proc.terminate()
        proc.wait(30)
    return (f"  defaults {info.split('{', 1)[1].split('}', 1)[0]}: runtime 8 clients "
            f"{eight.rate:9.1f} pairs/s, p50 {percentile_ms(eight.latencies, 0.5):7.1f} ms, p99 "
            f"{percentile_ms(eight.latencies, 0.99):7.1f} ms | 1 client p50 "
            f"{percentile_ms(one.latencies, 0.5):7.1f} ms")


def bench_transformers(hf_dir: Path, docs: list[str], seconds: float, work: Path,
                       ) -> dict[str, Any]:
    """transformers_rate.py in a process of its own (see there why)."""
    docs_file = work / "documents.json"
    docs_file.write_text(json.dumps(docs))
    done = subprocess.run(
        [sys.executable, str(Path(__file__).with_name("transformers_rate.py")), str(hf_dir),
         str(docs_file), "--seconds", str(seconds), "--score-count", str(PER_REQUEST)],
        capture_output=True, text=True, timeout=600, check=True)
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokenizer", type=Path, required=True)
    parser.add_argument("--shapes", default="minilm-l6,bert-large")
    parser.add_argument("--packs", default="1,4,8,16,32", help="pairs per decode to measure")
    parser.add_argument("--flash", default="auto", help="flash attention settings to measure "
                        "at each packing (on, off, auto)")
    parser.add_argument("--contexts", default="1", help="llama contexts side by side to measure "
                        "at each packing")
    parser.add_argument("--seconds", type=float, default=3.0, help="per measurement")
    parser.add_argument("--gpu-layers", type=int, default=-1)
    parser.add_argument("--defaults", action="store_true",
                        help="also run the runtime with its own defaults (only --gpu-layers)")
    parser.add_argument("--transformers", action=argparse.BooleanOptionalAction, default=True,
                        help="also measure transformers on the same weights")
    parser.add_argument("--documents", type=int, default=512)
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="kuberank-bench-gpu-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"llama.cpp GPU offload: {bool(llama_cpp.llama_supports_gpu_offload())}, "
          f"gpu layers {args.gpu_layers}, {args.seconds:.1f} s per measurement, "
          f"{PER_REQUEST} documents per request", flush=True)

    rows: list[Row] = []
    report: dict[str, Any] = {"rows": rows, "transformers": {}, "max_score_difference": {}}
    for shape in args.shapes.split(","):
        started = time.perf_counter()
        try:
            hf_dir, gguf = build_model(shape, args.tokenizer, work)
        except Exception as exc:  # one shape that cannot be built must not end the run
            print(f"\n{shape}: build failed: {type(exc).__name__}: {exc}", flush=True)
            continue
        docs = documents(args.documents, words=WORDS.get(shape, 90),
                         vocab_file=args.tokenizer / "vocab.txt")
        probe = RankModel(gguf)
        pairs = tokenized_pairs(probe, docs)
        probe.close()
        longest = max(map(len, pairs))
        print(f"\n{shape}: built in {time.perf_counter() - started:.0f} s, pairs of "
              f"{min(map(len, pairs))}-{longest} tokens", flush=True)
        configs = [(n, flash, c) for flash in args.flash.split(",")
                   for n in map(int, args.packs.split(","))
                   for c in map(int, args.contexts.split(","))]
        served: list[float] | None = None
        for pack, flash, contexts in configs:
            row = Row(shape, pack, flash, batch_tokens=max(512, pack * longest),
                      contexts=contexts)
            rows.append(row)
            try:
                served = bench_row(row, gguf, docs, pairs, args.gpu_layers, args.seconds,
                                   work) or served
            except Exception as exc:  # one failed setting must not end the run
                row.error = f"{type(exc).__name__}: {exc}"
            print(format_row(row), flush=True)
        if args.defaults:
            try:
                print(bench_defaults(gguf, docs, args.gpu_layers, args.seconds, work), flush=True)
            except Exception as exc:  # one failed measurement must not end the run
                print(f"  defaults FAILED {type(exc).__name__}: {exc}", flush=True)
        if not args.transformers:
            continue
        try:
            hf = bench_transformers(hf_dir, docs, args.seconds, work)
            report["transformers"][shape] = hf
            for size, rate in hf["pairs_s_by_batch"].items():
                print(f"  {hf['name']}, batch {size}: {rate:9.1f} pairs/s", flush=True)
            if served is not None:
                diff = max(abs(a - b) for a, b in zip(served, hf["fp32_scores"], strict=True))
                report["max_score_difference"][shape] = diff
                print(f"  max |runtime - transformers fp32| score: {diff:.2e}", flush=True)
        except (subprocess.SubprocessError, ValueError) as exc:
            print(f"  transformers failed: {type(exc).__name__}: {exc}", flush=True)
    if args.json:
        report["rows"] = [asdict(r) for r in rows]
        args.json.write_text(json.dumps(report, indent=2) + "\n")


def format_row(r: Row) -> str:
    head = (f"  {r.pack:>3} pairs/decode, flash {r.flash:<3}, {r.contexts} context(s) "
            f"(batch {r.batch_tokens:>5} tokens): ")
    if r.error:
        return head + "FAILED " + r.error
    ratio = (r.runtime8_pairs_s or 0) / (r.engine_pairs_s or 1)
    return (head + f"engine {r.engine_pairs_s:9.1f} pairs/s | runtime 8 clients "
            f"{r.runtime8_pairs_s:9.1f} pairs/s ({ratio:.2f}x engine), p50 "
            f"{r.runtime8_p50_ms:7.1f} ms, p99 {r.runtime8_p99_ms:7.1f} ms | 1 client p50 "
            f"{r.runtime1_p50_ms:7.1f} ms")


if __name__ == "__main__":
    main()
