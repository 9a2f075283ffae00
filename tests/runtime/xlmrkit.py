"""A tiny XLM-RoBERTa cross-encoder built offline: bge-reranker-v2-m3's architecture and tokenizer
kind (SentencePiece Unigram with NFKC normalization), at test size.

The tokenizer is trained here with sentencepiece on the held-out texts, then laid out as
transformers' XLMRobertaTokenizer does (``<s> <pad> </s> <unk>``, the pieces, ``<mask>``); the
weights are seeded random ones under XLMRobertaForSequenceClassification's names.
"""

from __future__ import annotations

import io
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from kuberank.modelkit.build import random_encoder, random_head, write_hf_dir
from kuberank.modelkit.heldout import load_heldout

SEED = 20261126
CONFIG: dict[str, Any] = {
    "architectures": ["XLMRobertaForSequenceClassification"],
    "model_type": "xlm-roberta",
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "max_position_embeddings": 514,  # 512 positions after XLM-R's offset of pad_token_id + 1
    "type_vocab_size": 1,
    "layer_norm_eps": 1e-5,
    "hidden_act": "gelu",
    "position_embedding_type": "absolute",
    "pad_token_id": 1,
    "bos_token_id": 0,
    "eos_token_id": 2,
    "num_labels": 1,
    "id2label": {"0": "LABEL_0"},
    "label2id": {"LABEL_0": 0},
    "problem_type": "regression",
}


def _unigram(texts: list[str], size: int) -> tuple[list[tuple[str, float]], bytes]:
    """SentencePiece pieces (ids 0-2 are <unk> <s> </s>) and the NFKC character map."""
    import sentencepiece as spm
    from sentencepiece import sentencepiece_model_pb2

    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(texts), model_writer=model, vocab_size=size,
        model_type="unigram", character_coverage=1.0, num_threads=1, minloglevel=2)
    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString(model.getvalue())
    return ([(p.piece, p.score) for p in proto.pieces],
            bytes(proto.normalizer_spec.precompiled_charsmap))


def build_tiny_xlmr(out_dir: Path, shape: dict[str, int] | None = None) -> Path:
    """Write the HF directory (config, safetensors, tokenizer) into ``out_dir``; ``shape``
    replaces the layer sizes (benchmarks/bench_gpu.py builds bge-reranker-v2-m3's this way)."""
    from transformers import XLMRobertaTokenizer

    texts = [text for item in load_heldout() for text in (item.query, *item.documents)]
    pieces, charsmap = _unigram(texts, 1200)
    vocab = [("<s>", 0.0), ("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), *pieces[3:],
             ("<mask>", 0.0)]
    tokenizer = XLMRobertaTokenizer(vocab=vocab, _spm_precompiled_charsmap=charsmap)
    config = {**CONFIG, **(shape or {}), "vocab_size": len(vocab)}
    rng = np.random.default_rng(SEED)
    weights = {name.replace("bert.", "roberta.", 1): array
               for name, array in random_encoder(rng, config).items()}
    # BERT's pooler + classifier is XLM-R's classifier.dense + out_proj: the same random head.
    xlmr_head = {"bert.pooler.dense": "classifier.dense", "classifier": "classifier.out_proj"}
    for name, array in random_head(rng, config["hidden_size"]).items():
        module, param = name.rsplit(".", 1)
        weights[f"{xlmr_head[module]}.{param}"] = array
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tokenizer_dir:
        tokenizer.save_pretrained(tokenizer_dir)
        write_hf_dir(out_dir, config, weights, Path(tokenizer_dir))
    return out_dir


if __name__ == "__main__":
    # python tests/runtime/xlmrkit.py OUT_DIR [SHAPE_JSON]: a process of its own for callers that
    # hold llama.cpp's CUDA libraries, which abort beside torch's (benchmarks/bench_gpu.py).
    import json
    import sys

    build_tiny_xlmr(Path(sys.argv[1]), json.loads(sys.argv[2]) if len(sys.argv) > 2 else None)
