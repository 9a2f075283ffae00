"""Transformers' pairs/s and fp32 scores on an HF cross-encoder, as one JSON line on stdout.

    python benchmarks/transformers_rate.py HF_DIR DOCS_JSON [--seconds 3] [--batches 32,128]

Run as a process of its own by bench_gpu.py: torch's CUDA libraries and llama.cpp's in one
process aborted at exit on an H200 ("free(): invalid pointer"). fp16 on a GPU (what
sentence-transformers and TEI run there), fp32 on a CPU; token types zeroed as llama.cpp does.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch
from benchkit import QUERY
from transformers import AutoModelForSequenceClassification, AutoTokenizer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("hf_dir", type=Path)
    parser.add_argument("docs", type=Path, help="JSON list of documents")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--batches", default="32,128")
    parser.add_argument("--score-count", type=int, default=32)
    args = parser.parse_args()
    docs: list[str] = json.loads(args.docs.read_text())
    device = "cuda" if torch.cuda.is_available() else "cpu"
    tok = AutoTokenizer.from_pretrained(args.hf_dir)
    fp32 = AutoModelForSequenceClassification.from_pretrained(args.hf_dir).eval().to(device)
    fast = (AutoModelForSequenceClassification.from_pretrained(args.hf_dir, dtype=torch.float16)
            .eval().to(device) if device == "cuda" else fp32)

    def scores(model: Any, batch: list[str]) -> list[float]:
        enc = tok([QUERY] * len(batch), batch, padding=True, truncation=True, max_length=512,
                  return_tensors="pt").to(device)
        if "token_type_ids" in enc:  # XLM-R has none
            enc["token_type_ids"] = torch.zeros_like(enc["token_type_ids"])
        with torch.inference_mode():
            return [float(x) for x in model(**enc).logits[:, 0].float().cpu()]

    rates = {}
    for size in map(int, args.batches.split(",")):
        batches = [docs[i:i + size] for i in range(0, len(docs), size)]
        scores(fast, batches[0])  # warm-up
        done, at, started = 0, 0, time.perf_counter()
        while time.perf_counter() - started < args.seconds:
            batch = batches[at % len(batches)]
            scores(fast, batch)
            done, at = done + len(batch), at + 1
        rates[size] = done / (time.perf_counter() - started)
    print(json.dumps({
        "name": "transformers fp16" if device == "cuda" else "transformers fp32 (CPU)",
        "pairs_s_by_batch": rates,
        "fp32_scores": scores(fp32, docs[:args.score_count]),
    }))


if __name__ == "__main__":
    main()
