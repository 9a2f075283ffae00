"""Map a Hugging Face BERT or XLM-RoBERTa config onto llama.cpp's ``bert`` GGUF hyper-parameters.

Pure: takes the parsed ``config.json`` and returns typed metadata entries, so the mapping is
table-testable and the writer stays a thin I/O edge. Anything llama.cpp's ``bert`` graph cannot
reproduce (other activations, relative positions, multi-label heads) is refused here, by name,
instead of producing a GGUF that silently scores differently.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gguf import GGUFValueType, PoolingType

ARCH = "bert"
FAMILIES = ("bert", "xlm-roberta")  # llama.cpp runs both with its bert graph


class UnsupportedModelError(ValueError):
    """The HF model is not a BERT cross-encoder that llama.cpp's ``bert`` graph reproduces."""


@dataclass(frozen=True)
class BertHparams:
    """The BERT dimensions a GGUF needs; names follow HF ``BertConfig``.

    XLM-RoBERTa numbers positions from ``pad_token_id + 1``: its first ``position_offset`` rows of
    position embeddings are never used and are left out, as llama.cpp's converter does.
    """

    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    max_position_embeddings: int
    type_vocab_size: int
    layer_norm_eps: float
    family: str = "bert"
    position_offset: int = 0


@dataclass(frozen=True)
class MetadataEntry:
    """One GGUF key/value with the value type llama.cpp reads it as."""

    key: str
    value: int | float | bool | str
    vtype: GGUFValueType


def _require_int(config: Mapping[str, Any], key: str) -> int:
    value = config.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise UnsupportedModelError(f"config.json: {key} must be a positive integer, got {value!r}")
    return value


def bert_hparams(config: Mapping[str, Any]) -> BertHparams:
    """Validate ``config.json`` of a single-label Bert/XLMRobertaForSequenceClassification."""
    family = config.get("model_type")
    if family not in FAMILIES:
        raise UnsupportedModelError(
            f"model_type must be one of {', '.join(map(repr, FAMILIES))}, got {family!r}")
    offset = 0
    if family == "xlm-roberta":
        pad = config.get("pad_token_id", 1)
        if not isinstance(pad, int) or pad < 0:
            raise UnsupportedModelError(f"config.json: pad_token_id must be an id, got {pad!r}")
        offset = pad + 1
    # llama.cpp's bert graph uses GELU; the tanh approximation differs from erf by < 1e-3.
    act = config.get("hidden_act", "gelu")
    if act not in ("gelu", "gelu_new", "gelu_pytorch_tanh"):
        raise UnsupportedModelError(f"hidden_act {act!r} is not GELU; llama.cpp's bert uses GELU")
    pos = config.get("position_embedding_type", "absolute")
    if pos != "absolute":
        raise UnsupportedModelError(f"position_embedding_type {pos!r} is not 'absolute'")
    labels = config.get("id2label")
    num_labels = len(labels) if isinstance(labels, Mapping) else config.get("num_labels", 1)
    if num_labels != 1:
        raise UnsupportedModelError(f"a reranker has exactly one output label, got {num_labels}")
    hp = BertHparams(
        vocab_size=_require_int(config, "vocab_size"),
        hidden_size=_require_int(config, "hidden_size"),
        intermediate_size=_require_int(config, "intermediate_size"),
        num_hidden_layers=_require_int(config, "num_hidden_layers"),
        num_attention_heads=_require_int(config, "num_attention_heads"),
        max_position_embeddings=_require_int(config, "max_position_embeddings") - offset,
        type_vocab_size=int(config.get("type_vocab_size", 2)),
        layer_norm_eps=float(config.get("layer_norm_eps", 1e-12)),
        family=family,
        position_offset=offset,
    )
    if hp.max_position_embeddings < 1:
        raise UnsupportedModelError(
            f"max_position_embeddings leaves no positions after the offset of {offset}")
    if hp.hidden_size % hp.num_attention_heads:
        raise UnsupportedModelError(
            f"hidden_size {hp.hidden_size} is not divisible by "
            f"num_attention_heads {hp.num_attention_heads}"
        )
    if hp.type_vocab_size < 1:
        raise UnsupportedModelError("type_vocab_size must be at least 1")
    return hp


def gguf_hparams(hp: BertHparams) -> list[MetadataEntry]:
    """The ``bert.*`` keys llama.cpp reads, with rank pooling and bidirectional attention."""
    u32, f32 = GGUFValueType.UINT32, GGUFValueType.FLOAT32
    return [
        MetadataEntry(f"{ARCH}.context_length", hp.max_position_embeddings, u32),
        MetadataEntry(f"{ARCH}.embedding_length", hp.hidden_size, u32),
        MetadataEntry(f"{ARCH}.feed_forward_length", hp.intermediate_size, u32),
        MetadataEntry(f"{ARCH}.block_count", hp.num_hidden_layers, u32),
        MetadataEntry(f"{ARCH}.attention.head_count", hp.num_attention_heads, u32),
        MetadataEntry(f"{ARCH}.attention.layer_norm_epsilon", hp.layer_norm_eps, f32),
        MetadataEntry(f"{ARCH}.attention.causal", False, GGUFValueType.BOOL),
        MetadataEntry(f"{ARCH}.pooling_type", int(PoolingType.RANK), u32),
    ]
