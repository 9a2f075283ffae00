"""Check a rank GGUF against transformers on its HF twin: the converter's proof of correctness.

The llama.cpp side builds each pair exactly as llama-server's rerank formatting does, from the
vocab's own flags: ``[BOS] query [EOS] [SEP]? document [EOS]``. The transformers side encodes
the pair with the BERT tokenizer and zeroes ``token_type_ids``, because llama.cpp adds token-type
row 0 to every token. torch and transformers are imported lazily (dev extra only).
"""

from __future__ import annotations

import ctypes
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import llama_cpp

DEFAULT_CTX = 512


class LlamaRanker:
    """One llama.cpp context with rank pooling; scores one pair per decode. Not thread-safe."""

    def __init__(self, model_path: Path | str, n_ctx: int = DEFAULT_CTX) -> None:
        self.n_ctx = n_ctx
        self.llm = llama_cpp.Llama(
            str(model_path), embedding=True, pooling_type=llama_cpp.LLAMA_POOLING_TYPE_RANK,
            n_ctx=n_ctx, n_batch=n_ctx, n_ubatch=n_ctx, verbose=False,
        )
        self._vocab = llama_cpp.llama_model_get_vocab(self.llm.model)

    def __enter__(self) -> LlamaRanker:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self.llm.close()

    def tokenize(self, text: str) -> list[int]:
        """Plain text tokens, no specials (special-looking text stays text)."""
        return list(self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    def pair_tokens(self, query: str, document: str) -> list[int]:
        """``[BOS] q [EOS] [SEP]? d [EOS]`` following the vocab's add-bos/eos/sep flags."""
        vocab = self._vocab
        bos = [llama_cpp.llama_vocab_bos(vocab)] if llama_cpp.llama_vocab_get_add_bos(vocab) else []
        eos = [llama_cpp.llama_vocab_eos(vocab)] if llama_cpp.llama_vocab_get_add_eos(vocab) else []
        sep = [llama_cpp.llama_vocab_sep(vocab)] if llama_cpp.llama_vocab_get_add_sep(vocab) else []
        return [*bos, *self.tokenize(query), *eos, *sep, *self.tokenize(document), *eos]

    def score_tokens(self, tokens: Sequence[int]) -> float:
        """Rank score of one already-formatted pair."""
        if not 0 < len(tokens) <= self.n_ctx:
            raise ValueError(f"pair has {len(tokens)} tokens; must be 1..{self.n_ctx}")
        batch = llama_cpp.llama_batch_init(len(tokens), 0, 1)
        try:
            for i, token in enumerate(tokens):
                batch.token[i] = token
                batch.pos[i] = i
                batch.n_seq_id[i] = 1
                batch.seq_id[i][0] = 0
                batch.logits[i] = True
            batch.n_tokens = len(tokens)
            rc = llama_cpp.llama_decode(self.llm.ctx, batch)
            if rc != 0:
                raise RuntimeError(f"llama_decode failed with {rc}")
            out = llama_cpp.llama_get_embeddings_seq(self.llm.ctx, 0)
            if not out:
                raise RuntimeError("no rank output: is the model's pooling type RANK?")
            return float(ctypes.cast(out, ctypes.POINTER(ctypes.c_float))[0])
        finally:
            llama_cpp.llama_batch_free(batch)

    def score(self, query: str, document: str) -> float:
        return self.score_tokens(self.pair_tokens(query, document))


@dataclass(frozen=True)
class PairComparison:
    query: str
    document: str
    tokens_match: bool
    llama: float
    transformers: float

    @property
    def diff(self) -> float:
        return abs(self.llama - self.transformers)


def transformers_scores(
    hf_dir: Path | str, pairs: Sequence[tuple[str, str]], *, zero_token_types: bool = True
) -> list[tuple[list[int], float]]:
    """(input ids, score) per pair from the sequence classifier (BERT or XLM-R) in ``hf_dir``."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer: Any = AutoTokenizer.from_pretrained(str(hf_dir))
    model: Any = AutoModelForSequenceClassification.from_pretrained(str(hf_dir))
    model.eval()
    results: list[tuple[list[int], float]] = []
    with torch.no_grad():
        for query, document in pairs:
            enc = tokenizer(query, document, return_tensors="pt")
            types = enc.get("token_type_ids")  # XLM-R tokenizers give none: one type only
            if types is None or zero_token_types:
                types = torch.zeros_like(enc["input_ids"])
            logits = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"],
                           token_type_ids=types).logits
            results.append((enc["input_ids"][0].tolist(), float(logits[0, 0])))
    return results


def compare(
    gguf_path: Path | str,
    hf_dir: Path | str,
    pairs: Sequence[tuple[str, str]],
    reference: Sequence[tuple[list[int], float]] | None = None,
) -> list[PairComparison]:
    """Score every pair with llama.cpp and with transformers (token types zeroed).

    ``reference`` reuses :func:`transformers_scores` output computed earlier for ``pairs``.
    """
    if reference is None:
        reference = transformers_scores(hf_dir, pairs)
    with LlamaRanker(gguf_path) as ranker:
        out = []
        for (query, document), (hf_ids, hf_score) in zip(pairs, reference, strict=True):
            tokens = ranker.pair_tokens(query, document)
            out.append(PairComparison(query, document, tokens == hf_ids,
                                      ranker.score_tokens(tokens), hf_score))
    return out


SAMPLE_PAIRS: tuple[tuple[str, str], ...] = (
    ("What is a panda?", "The giant panda (Ailuropoda melanoleuca) is a bear native to China."),
    ("What is a panda?", "hi"),
    ("how do I bake sourdough bread", "Mix flour, water and starter; fold, proof overnight, "
     "then bake at 230 °C in a covered pot."),
    ("capital of France", "Paris is the capital and most populous city of France."),
    ("capital of France", "Berlin is the capital of Germany."),
    ("Café naïve résumé", "Accents are stripped by uncased BERT: cafe naive resume."),
    ("GPU memory for a 7B model", "A 7-billion-parameter model in fp16 needs about 14 GB "
     "for weights alone, plus the KV cache."),
    ("kubectl scale deployment", "Use `kubectl scale deploy/web --replicas=3` to change the "
     "number of replicas; HPA may override it."),
    ("rainfall in the Sahara", "The Sahara receives less than 25 mm of rain per year in its "
     "driest parts, though some highlands get more."),
    ("中文 query", "日本語のテキストと中文混合 text with CJK characters."),
    ("x", "A long document. " * 40),
    ("symbols & numbers: 3.14159, $5, 100%", "emoji 🙂 and punctuation!!! ??? ... --- ###"),
)
