"""Laying pairs out in a llama_batch: the runtime's numpy views against a per-token ctypes loop.

    .venv/bin/python benchmarks/bench_batch_fill.py [--pairs 8] [--tokens 150]

This Python work runs on the engine thread before every decode and holds the GIL; on a CPU it is
noise beside the decode, on a GPU it is not (a MiniLM pair decoded in ~0.63 ms on an H200).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import llama_cpp
from kuberank.runtime.model import PairBatch


def per_token_loop(b: Any, pairs: list[list[int]]) -> None:
    """What RankContext.score did before PairBatch: five ctypes writes per token."""
    i = 0
    for seq, tokens in enumerate(pairs):
        for pos, tok in enumerate(tokens):
            b.token[i] = tok
            b.pos[i] = pos
            b.n_seq_id[i] = 1
            b.seq_id[i][0] = seq
            b.logits[i] = True
            i += 1
    b.n_tokens = i


def microseconds_per_pair(fill: Callable[[], None], pairs: int, rounds: int = 300) -> float:
    fill()
    started = time.perf_counter()
    for _ in range(rounds):
        fill()
    return (time.perf_counter() - started) / rounds / pairs * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=8, help="pairs per decode")
    parser.add_argument("--tokens", type=int, default=150, help="tokens per pair")
    args = parser.parse_args()
    pairs = [[101, *range(2000 + s, 2000 + s + args.tokens - 2), 102] for s in range(args.pairs)]
    n_batch = args.pairs * args.tokens
    raw = llama_cpp.llama_batch_init(n_batch, 0, args.pairs)
    batch = PairBatch(n_batch, args.pairs)
    try:
        old = microseconds_per_pair(lambda: per_token_loop(raw, pairs), args.pairs)
        new = microseconds_per_pair(lambda: batch.fill(pairs, n_batch), args.pairs)
    finally:
        llama_cpp.llama_batch_free(raw)
        batch.free()
    print(f"{args.pairs} pairs of {args.tokens} tokens per decode")
    print(f"per-token ctypes loop: {old:7.1f} us per pair")
    print(f"PairBatch (numpy):     {new:7.1f} us per pair   ({new / old:.3f}x)")


if __name__ == "__main__":
    main()
