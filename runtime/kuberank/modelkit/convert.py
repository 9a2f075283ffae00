"""Convert an HF Bert- or XLMRobertaForSequenceClassification directory (num_labels=1) to a rank
GGUF.

Needs only numpy and safetensors: ``config.json``, ``model.safetensors`` and ``vocab.txt`` (or a
WordPiece ``tokenizer.json``; a Unigram one for XLM-R, as bge-reranker-v2-m3 ships) are read
directly, so conversion works without torch or sentencepiece.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from kuberank.modelkit.hparams import BertHparams, UnsupportedModelError, bert_hparams
from kuberank.modelkit.tensors import check_tensors, gguf_tensor_name
from kuberank.modelkit.vocab import (
    XLMR_SPECIALS,
    GgufVocab,
    special_token_names,
    unigram_vocab,
    wordpiece_vocab,
)
from kuberank.modelkit.writer import Dtype, write_bert_gguf
from safetensors.numpy import load_file


def _read_json(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise UnsupportedModelError(f"{path} does not hold a JSON object")
    return data


def read_wordpiece_tokens(hf_dir: Path) -> list[str]:
    """Tokens by id from ``vocab.txt``, else from a WordPiece ``tokenizer.json``."""
    vocab_txt = hf_dir / "vocab.txt"
    if vocab_txt.is_file():
        return vocab_txt.read_text(encoding="utf-8").rstrip("\n").split("\n")
    tokenizer_json = hf_dir / "tokenizer.json"
    if tokenizer_json.is_file():
        model = _read_json(tokenizer_json).get("model", {})
        if model.get("type") == "WordPiece" and isinstance(model.get("vocab"), dict):
            by_id = sorted(model["vocab"].items(), key=lambda item: item[1])
            return [token for token, _ in by_id]
    raise UnsupportedModelError(f"{hf_dir} has no vocab.txt or WordPiece tokenizer.json")


def load_gguf_tensors(hf_dir: Path, hp: BertHparams) -> list[tuple[str, np.ndarray[Any, Any]]]:
    """The checkpoint's tensors under their GGUF names, dropping those llama.cpp ignores."""
    weights = hf_dir / "model.safetensors"
    if not weights.is_file():
        raise UnsupportedModelError(f"{hf_dir} has no model.safetensors")
    named: dict[str, np.ndarray[Any, Any]] = {}
    for hf_name, array in load_file(str(weights)).items():
        gguf_name = gguf_tensor_name(hf_name, hp.family)
        if gguf_name is None:
            continue
        if gguf_name in named:
            raise UnsupportedModelError(f"two checkpoint tensors map to {gguf_name}")
        if gguf_name == "position_embd.weight":
            array = array[hp.position_offset:]  # rows for positions XLM-R never uses
        named[gguf_name] = array
    return sorted(named.items())


def read_vocab(hf_dir: Path, hp: BertHparams) -> GgufVocab:
    """The tokenizer of the model's family, in llama.cpp's form."""
    tok_config_path = hf_dir / "tokenizer_config.json"
    tok_config = _read_json(tok_config_path) if tok_config_path.is_file() else {}
    if hp.family == "bert":
        return wordpiece_vocab(read_wordpiece_tokens(hf_dir), special_token_names(tok_config),
                               hp.vocab_size)
    tokenizer_json = hf_dir / "tokenizer.json"
    if not tokenizer_json.is_file():
        raise UnsupportedModelError(f"{hf_dir} has no tokenizer.json (an XLM-R model needs one)")
    return unigram_vocab(_read_json(tokenizer_json),
                         special_token_names(tok_config, XLMR_SPECIALS), hp.vocab_size)


def convert_hf_dir(hf_dir: Path | str, out_path: Path | str, dtype: Dtype = "f32") -> Path:
    """Write ``out_path`` (atomically) from the HF model in ``hf_dir``; returns ``out_path``."""
    hf_dir, out_path = Path(hf_dir), Path(out_path)
    config_path = hf_dir / "config.json"
    if not config_path.is_file():
        raise UnsupportedModelError(f"{hf_dir} has no config.json")
    config = _read_json(config_path)
    hp = bert_hparams(config)
    vocab = read_vocab(hf_dir, hp)
    tensors = load_gguf_tensors(hf_dir, hp)
    check_tensors(hp, ((name, tuple(array.shape)) for name, array in tensors))
    name = str(config.get("_name_or_path") or hf_dir.name)
    return write_bert_gguf(out_path, name=name, hp=hp, vocab=vocab, tensors=tensors, dtype=dtype)
