"""HF BertConfig -> llama.cpp bert hyper-parameters."""

from __future__ import annotations

from typing import Any

import pytest
from gguf import GGUFValueType, Keys, PoolingType
from kuberank.modelkit.hparams import UnsupportedModelError, bert_hparams, gguf_hparams

pytestmark = pytest.mark.unit

MINILM: dict[str, Any] = {
    "model_type": "bert",
    "hidden_act": "gelu",
    "hidden_size": 384,
    "intermediate_size": 1536,
    "layer_norm_eps": 1e-12,
    "max_position_embeddings": 512,
    "num_attention_heads": 12,
    "num_hidden_layers": 6,
    "type_vocab_size": 2,
    "vocab_size": 30522,
    "position_embedding_type": "absolute",
    "id2label": {"0": "LABEL_0"},
}


def _metadata(config: dict[str, Any]) -> dict[str, tuple[object, GGUFValueType]]:
    return {e.key: (e.value, e.vtype) for e in gguf_hparams(bert_hparams(config))}


def test_minilm_config_maps_to_llama_cpp_bert_keys_with_rank_pooling() -> None:
    arch = "bert"
    u32 = GGUFValueType.UINT32
    assert _metadata(MINILM) == {
        Keys.LLM.CONTEXT_LENGTH.format(arch=arch): (512, u32),
        Keys.LLM.EMBEDDING_LENGTH.format(arch=arch): (384, u32),
        Keys.LLM.FEED_FORWARD_LENGTH.format(arch=arch): (1536, u32),
        Keys.LLM.BLOCK_COUNT.format(arch=arch): (6, u32),
        Keys.Attention.HEAD_COUNT.format(arch=arch): (12, u32),
        Keys.Attention.LAYERNORM_EPS.format(arch=arch): (1e-12, GGUFValueType.FLOAT32),
        Keys.Attention.CAUSAL.format(arch=arch): (False, GGUFValueType.BOOL),
        Keys.LLM.POOLING_TYPE.format(arch=arch): (int(PoolingType.RANK), u32),
    }


def test_rank_pooling_is_llama_cpp_pooling_type_4() -> None:
    assert _metadata(MINILM)["bert.pooling_type"][0] == 4


def test_defaults_apply_when_optional_keys_are_absent() -> None:
    config = {k: v for k, v in MINILM.items()
              if k not in ("hidden_act", "type_vocab_size", "layer_norm_eps", "id2label")}
    hp = bert_hparams(config)
    assert (hp.type_vocab_size, hp.layer_norm_eps) == (2, 1e-12)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"model_type": "roberta"}, "model_type"),
        ({"hidden_act": "relu"}, "hidden_act"),
        ({"position_embedding_type": "relative_key"}, "position_embedding_type"),
        ({"id2label": {"0": "neg", "1": "pos"}}, "one output label"),
        ({"num_attention_heads": 5}, "divisible"),
        ({"vocab_size": 0}, "vocab_size"),
        ({"hidden_size": "384"}, "hidden_size"),
        ({"model_type": "xlm-roberta", "pad_token_id": -1}, "pad_token_id"),
        ({"model_type": "xlm-roberta", "max_position_embeddings": 2}, "no positions"),
    ],
)
def test_configs_llama_cpp_cannot_reproduce_are_refused_by_name(
    override: dict[str, Any], message: str
) -> None:
    with pytest.raises(UnsupportedModelError, match=message):
        bert_hparams({**MINILM, **override})


def test_missing_dimension_is_refused() -> None:
    config = {k: v for k, v in MINILM.items() if k != "num_hidden_layers"}
    with pytest.raises(UnsupportedModelError, match="num_hidden_layers"):
        bert_hparams(config)


def test_xlm_roberta_drops_the_position_rows_before_its_first_position() -> None:
    """bge-reranker-v2-m3: 8194 position rows, pad id 1, so positions start at row 2."""
    hp = bert_hparams({**MINILM, "model_type": "xlm-roberta", "max_position_embeddings": 8194,
                       "pad_token_id": 1, "type_vocab_size": 1})
    assert (hp.family, hp.position_offset, hp.max_position_embeddings) == ("xlm-roberta", 2, 8192)
    assert bert_hparams(MINILM).position_offset == 0
