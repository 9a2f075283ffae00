"""MiniLM-L6 cross-encoder GGUF scored by real llama.cpp equals transformers on its HF twin."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from kuberank.modelkit.check import SAMPLE_PAIRS, LlamaRanker, compare, transformers_scores

pytestmark = pytest.mark.runtime

TOLERANCE = 1e-3
Reference = list[tuple[list[int], float]]


@pytest.fixture(scope="module")
def zeroed_reference(minilm_hf_dir: Path) -> Reference:
    """transformers' (ids, score) per sample pair with token types zeroed, computed once."""
    return transformers_scores(minilm_hf_dir, SAMPLE_PAIRS)


def test_minilm_gguf_scores_match_transformers_with_token_types_zeroed(
    minilm_model: Path, minilm_hf_dir: Path, zeroed_reference: Reference
) -> None:
    assert len(SAMPLE_PAIRS) >= 10
    results = compare(minilm_model, minilm_hf_dir, SAMPLE_PAIRS, zeroed_reference)
    worst = max(r.diff for r in results)
    print(f"max |llama.cpp - transformers| = {worst:.3e} over {len(results)} pairs",
          file=sys.stderr)
    assert [r.query for r in results if not r.tokens_match] == []
    assert worst < TOLERANCE, [(r.query, r.llama, r.transformers) for r in results]


def test_llama_cpp_formats_a_pair_as_cls_query_sep_document_sep(minilm_model: Path) -> None:
    with LlamaRanker(minilm_model) as ranker:
        query, document = ranker.tokenize("What is a panda?"), ranker.tokenize("a bear")
        assert query == [2054, 2003, 1037, 25462, 1029]
        assert ranker.pair_tokens("What is a panda?", "a bear") == \
            [101, *query, 102, *document, 102]


def test_transformers_segment_types_would_not_match_llama_cpp(
    minilm_hf_dir: Path, zeroed_reference: Reference
) -> None:
    """Why the comparison zeroes token types: llama.cpp adds type row 0 to every token."""
    zeroed = zeroed_reference
    segmented = transformers_scores(minilm_hf_dir, SAMPLE_PAIRS, zero_token_types=False)
    assert max(abs(a[1] - b[1]) for a, b in zip(zeroed, segmented, strict=True)) > 10 * TOLERANCE


def test_minilm_scores_depend_on_the_document(minilm_model: Path) -> None:
    with LlamaRanker(minilm_model) as ranker:
        scores = {ranker.score("capital of France", d) for d in
                  ("Paris is the capital of France.", "Bananas are yellow.", "hi")}
    assert len(scores) == 3
