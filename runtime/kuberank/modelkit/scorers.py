"""Ways to score (query, documents) for evaluation: llama.cpp GGUF, transformers, bi-encoder.

The GGUF scorer goes through the runtime's own model and pair-building code, so an evaluation
measures exactly what ``kuberank-runtime`` would serve.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

Scorer = Callable[[str, Sequence[str]], list[float]]


@contextmanager
def gguf_scorer(path: Path, max_pair_tokens: int = 512, threads: int | None = None,
                gpu_layers: int = 0) -> Iterator[Scorer]:
    """Rank-pooling llama.cpp scores, one pair per decode (the runtime's CPU policy)."""
    from kuberank.runtime.model import ContextParams, RankContext, RankModel
    from kuberank.runtime.pairs import Limits, PairBuilder

    model = RankModel(path, gpu_layers=gpu_layers)
    ctx = RankContext(model, ContextParams(ctx_size=max_pair_tokens, batch_size=max_pair_tokens,
                                           threads=threads, gpu_layers=gpu_layers))
    builder = PairBuilder(model.layout(), model.tokenize, Limits(max_pair_tokens))

    def score(query: str, documents: Sequence[str]) -> list[float]:
        prepared = builder.query(query, truncate=True)
        return [ctx.score([builder.pair(prepared, d, truncate=True).tokens])[0]
                for d in documents]

    try:
        yield score
    finally:
        ctx.close()
        model.close()


def transformers_scorer(hf_dir: Path) -> Scorer:
    """A BertForSequenceClassification directory scored by torch, token types zeroed."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoTokenizer, BertForSequenceClassification

    model: Any = BertForSequenceClassification.from_pretrained(str(hf_dir))
    return torch_scorer(model, AutoTokenizer.from_pretrained(str(hf_dir)))


def torch_scorer(model: Any, tokenizer: Any) -> Scorer:
    """Score with an in-memory model, on whatever device it sits on (for recipe screening)."""
    import torch

    model.eval()

    def score(query: str, documents: Sequence[str]) -> list[float]:
        enc = tokenizer([query] * len(documents), list(documents), truncation="only_second",
                        max_length=512, padding=True, return_tensors="pt").to(model.device)
        with torch.no_grad():
            logits = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"],
                           token_type_ids=torch.zeros_like(enc["input_ids"])).logits
        return [float(x) for x in logits[:, 0]]

    return score


def biencoder_scorer() -> Scorer:
    """Cosine similarity of MiniLM-L6 sentence embeddings (the teacher, and the baseline)."""
    from kuberank.modelkit.teacher import encode

    def score(query: str, documents: Sequence[str]) -> list[float]:
        emb = encode([query, *documents])
        return [float(x) for x in emb[1:] @ emb[0]]

    return score
