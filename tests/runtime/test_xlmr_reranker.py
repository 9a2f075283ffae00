"""An XLM-RoBERTa cross-encoder (bge-reranker-v2-m3's kind): converted, tokenized, paired and
served exactly as transformers runs it, on a tiny model built offline (xlmrkit.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from kuberank.modelkit.check import SAMPLE_PAIRS, compare, transformers_scores
from kuberank.modelkit.convert import convert_hf_dir
from kuberank.runtime.model import RankModel
from kuberank.runtime.pairs import Limits, PairBuilder
from serverkit import Server
from xlmrkit import build_tiny_xlmr

pytestmark = pytest.mark.runtime

# SentencePiece normalization (NFKC: ligatures, full-width letters), runs of spaces, accents, CJK.
FULL_WIDTH_ABC = "\uff21\uff22\uff23"
PAIRS = [*SAMPLE_PAIRS,
         ("\ufb01ne  print", f"{FULL_WIDTH_ABC} café  naïve"),
         ("What is a panda?", "The giant panda (Ailuropoda melanoleuca) is a bear of China.")]
BOS, EOS = 0, 2  # <s>, </s>


@pytest.fixture(scope="module")
def xlmr(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(HF directory, GGUF converted by kuberank-models' converter)."""
    root = tmp_path_factory.mktemp("xlmr")
    hf_dir = build_tiny_xlmr(root / "hf")
    return hf_dir, convert_hf_dir(hf_dir, root / "tiny-xlmr-reranker.gguf")


def test_converted_xlmr_tokenizes_and_scores_like_transformers(xlmr: tuple[Path, Path]) -> None:
    hf_dir, gguf = xlmr
    results = compare(gguf, hf_dir, PAIRS)
    assert all(r.tokens_match for r in results), [r.query for r in results if not r.tokens_match]
    assert max(r.diff for r in results) < 1e-3
    assert len({round(r.llama, 3) for r in results}) > len(results) // 2  # not a constant


def test_runtime_pairs_are_what_transformers_encodes(xlmr: tuple[Path, Path]) -> None:
    """``<s> query </s> </s> document </s>``: the separator doubles, as XLM-R was trained."""
    hf_dir, gguf = xlmr
    model = RankModel(gguf)
    try:
        builder = PairBuilder(model.layout(), model.tokenize, Limits(max_pair_tokens=512))
        for (query, document), (hf_ids, _) in zip(PAIRS, transformers_scores(hf_dir, PAIRS),
                                                  strict=True):
            tokens = builder.pair(builder.query(query, truncate=True), document,
                                  truncate=True).tokens
            assert tokens == hf_ids
            q = len(model.tokenize(query, False))
            assert tokens[0] == BOS and tokens[q + 1:q + 3] == [EOS, EOS] and tokens[-1] == EOS
    finally:
        model.close()


def test_runtime_serves_an_xlmr_reranker_with_transformers_scores(
        xlmr: tuple[Path, Path]) -> None:
    hf_dir, gguf = xlmr
    query = "What is a panda?"
    documents = [d for q, d in PAIRS if q == query]
    expected = [score for _, score in transformers_scores(hf_dir, [(query, d) for d in documents])]
    srv = Server(gguf)
    try:
        srv.wait_healthy()
        body = srv.client.post("/v1/rerank", json={"query": query, "documents": documents}).json()
    finally:
        srv.stop()
    served = {r["index"]: r["relevance_score"] for r in body["results"]}
    assert [served[i] for i in range(len(documents))] == pytest.approx(expected, abs=1e-3)
    assert [r["index"] for r in body["results"]] == sorted(
        range(len(documents)), key=lambda i: -expected[i])
