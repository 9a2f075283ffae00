"""Write a BERT or XLM-R cross-encoder as a llama.cpp ``bert`` GGUF with rank pooling (I/O edge)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

import numpy as np
from gguf import GGUFWriter, LlamaFileType
from kuberank.modelkit.atomic import atomic_path
from kuberank.modelkit.hparams import ARCH, BertHparams, gguf_hparams
from kuberank.modelkit.vocab import GgufVocab, gguf_tokenizer_scalars

Dtype = Literal["f32", "f16"]
DTYPES: tuple[Dtype, ...] = ("f32", "f16")


# llama.cpp's bert graph adds a row view of token_types straight onto f32 activations, and the
# CPU backend has no f32 + f16 add: it must stay f32 (an f16 one aborts the process at decode).
F32_ONLY = frozenset({"token_types.weight"})


def cast_tensor(name: str, array: np.ndarray[Any, Any], dtype: Dtype) -> np.ndarray[Any, Any]:
    """Matrices take the requested type; vectors (norms, biases) and F32_ONLY stay f32."""
    if dtype == "f16" and array.ndim >= 2 and name not in F32_ONLY:
        return array.astype(np.float16)
    return array.astype(np.float32)


def write_bert_gguf(
    out_path: Path,
    *,
    name: str,
    hp: BertHparams,
    vocab: GgufVocab,
    tensors: Iterable[tuple[str, np.ndarray[Any, Any]]],
    dtype: Dtype = "f32",
) -> Path:
    """Write the GGUF atomically; ``tensors`` are already GGUF-named and shape-checked."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    with atomic_path(out_path) as tmp:
        writer = GGUFWriter(tmp, arch=ARCH)
        writer.add_name(name)
        ftype = LlamaFileType.MOSTLY_F16 if dtype == "f16" else LlamaFileType.ALL_F32
        writer.add_file_type(int(ftype))
        for entry in [*gguf_hparams(hp), *gguf_tokenizer_scalars(vocab, hp.type_vocab_size)]:
            writer.add_key_value(entry.key, entry.value, entry.vtype)
        writer.add_token_list(vocab.tokens)
        writer.add_token_types(vocab.token_types)
        if vocab.scores is not None:
            writer.add_token_scores(vocab.scores)
        if vocab.precompiled_charsmap:
            writer.add_precompiled_charsmap(vocab.precompiled_charsmap)
        for tensor_name, array in tensors:
            writer.add_tensor(tensor_name, cast_tensor(tensor_name, array, dtype))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
    return out_path
