"""HF BertForSequenceClassification tensor names -> llama.cpp bert tensor names."""

from __future__ import annotations

import gguf
import pytest
from kuberank.modelkit.hparams import BertHparams, UnsupportedModelError
from kuberank.modelkit.tensors import check_tensors, expected_shapes, gguf_tensor_name

pytestmark = pytest.mark.unit

HP = BertHparams(vocab_size=100, hidden_size=8, intermediate_size=16, num_hidden_layers=2,
                 num_attention_heads=2, max_position_embeddings=32, type_vocab_size=2,
                 layer_norm_eps=1e-12)

TRUNK = [
    "embeddings.word_embeddings.weight",
    "embeddings.token_type_embeddings.weight",
    "embeddings.position_embeddings.weight",
    "embeddings.LayerNorm.weight",
    "embeddings.LayerNorm.bias",
] + [
    f"encoder.layer.{i}.{module}.{param}"
    for i in range(2)
    for module in (
        "attention.self.query", "attention.self.key", "attention.self.value",
        "attention.output.dense", "attention.output.LayerNorm", "intermediate.dense",
        "output.dense", "output.LayerNorm",
    )
    for param in ("weight", "bias")
]


@pytest.mark.parametrize("hf_name", TRUNK)
def test_trunk_names_agree_with_gguf_py_tensor_map(hf_name: str) -> None:
    reference = gguf.TensorNameMap(gguf.MODEL_ARCH.BERT, 2)
    expected = reference.get_name(hf_name, try_suffixes=(".weight", ".bias"))
    assert gguf_tensor_name("bert." + hf_name) == expected
    assert gguf_tensor_name(hf_name) == expected


def test_pooler_becomes_rank_dense_and_classifier_becomes_rank_output() -> None:
    assert gguf_tensor_name("bert.pooler.dense.weight") == "cls.weight"
    assert gguf_tensor_name("bert.pooler.dense.bias") == "cls.bias"
    assert gguf_tensor_name("classifier.weight") == "cls.output.weight"
    assert gguf_tensor_name("classifier.bias") == "cls.output.bias"


def test_old_tf_style_gamma_beta_layernorm_names_are_understood() -> None:
    assert gguf_tensor_name("bert.embeddings.LayerNorm.gamma") == "token_embd_norm.weight"
    assert gguf_tensor_name("encoder.layer.3.output.LayerNorm.beta") == \
        "blk.3.layer_output_norm.bias"


@pytest.mark.parametrize("hf_name", ["bert.embeddings.position_ids",
                                     "cls.predictions.transform.dense.weight",
                                     "cls.seq_relationship.bias"])
def test_tensors_outside_the_forward_pass_are_dropped(hf_name: str) -> None:
    assert gguf_tensor_name(hf_name) is None


@pytest.mark.parametrize("hf_name", ["bert.encoder.layer.0.attention.self.rotary.weight",
                                     "classifier.dense.weight", "roberta.embeddings.x"])
def test_unknown_tensors_are_refused_instead_of_ignored(hf_name: str) -> None:
    with pytest.raises(UnsupportedModelError, match="unexpected tensor"):
        gguf_tensor_name(hf_name)


def test_expected_shapes_cover_every_tensor_llama_cpp_loads_for_rank_bert() -> None:
    shapes = expected_shapes(HP)
    assert len(shapes) == 9 + 16 * HP.num_hidden_layers
    assert shapes["token_embd.weight"] == (100, 8)
    assert shapes["position_embd.weight"] == (32, 8)
    assert shapes["cls.weight"] == (8, 8)
    assert shapes["cls.output.weight"] == (1, 8)
    assert shapes["blk.1.ffn_up.weight"] == (16, 8)
    assert shapes["blk.1.ffn_up.bias"] == (16,)
    assert shapes["blk.1.ffn_down.weight"] == (8, 16)


def test_mapped_names_are_exactly_the_expected_set() -> None:
    head = ["pooler.dense.weight", "pooler.dense.bias", "classifier.weight", "classifier.bias"]
    assert {gguf_tensor_name(n) for n in TRUNK + head} == set(expected_shapes(HP))


def test_check_tensors_accepts_a_complete_model() -> None:
    check_tensors(HP, expected_shapes(HP).items())


def test_check_tensors_names_a_missing_rank_head() -> None:
    found = {k: v for k, v in expected_shapes(HP).items() if not k.startswith("cls.")}
    with pytest.raises(UnsupportedModelError, match=r"missing tensors: cls\.bias"):
        check_tensors(HP, found.items())


def test_check_tensors_refuses_extra_tensors() -> None:
    found = {**expected_shapes(HP), "blk.2.attn_q.weight": (8, 8)}
    with pytest.raises(UnsupportedModelError, match=r"unexpected tensors: blk\.2\.attn_q\.weight"):
        check_tensors(HP, found.items())


def test_check_tensors_refuses_shapes_that_contradict_the_config() -> None:
    found = {**expected_shapes(HP), "cls.output.weight": (2, 8)}
    with pytest.raises(UnsupportedModelError, match=r"cls\.output\.weight"):
        check_tensors(HP, found.items())


@pytest.mark.parametrize(("hf_name", "gguf_name"), [
    ("roberta.embeddings.word_embeddings.weight", "token_embd.weight"),
    ("roberta.encoder.layer.23.attention.self.query.bias", "blk.23.attn_q.bias"),
    ("classifier.dense.weight", "cls.weight"),
    ("classifier.out_proj.bias", "cls.output.bias"),
    ("roberta.pooler.dense.weight", None),  # never run by XLMRobertaForSequenceClassification
])
def test_xlm_roberta_names_map_onto_the_same_rank_graph(hf_name: str,
                                                        gguf_name: str | None) -> None:
    assert gguf_tensor_name(hf_name, "xlm-roberta") == gguf_name


def test_a_bert_classifier_does_not_take_xlm_roberta_head_names() -> None:
    with pytest.raises(UnsupportedModelError, match="unexpected tensor"):
        gguf_tensor_name("classifier.out_proj.weight")
