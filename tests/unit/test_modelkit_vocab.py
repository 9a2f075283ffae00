"""WordPiece vocabulary -> llama.cpp WPM vocabulary and special-token flags."""

from __future__ import annotations

import numpy as np
import pytest
from gguf import Keys, TokenType
from kuberank.modelkit.hparams import UnsupportedModelError
from kuberank.modelkit.vocab import (
    DEFAULT_SPECIALS,
    gguf_tokenizer_scalars,
    special_token_names,
    wordpiece_vocab,
)
from kuberank.modelkit.writer import cast_tensor

pytestmark = pytest.mark.unit

HF = ["[PAD]", "[unused0]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "##ing", "run", "!"]


def test_tokens_are_converted_to_phantom_space_form() -> None:
    vocab = wordpiece_vocab(HF, DEFAULT_SPECIALS, len(HF))
    assert vocab.tokens == ["[PAD]", "\u2581[unused0]", "[UNK]", "[CLS]", "[SEP]", "[MASK]",
                            "\u2581the", "ing", "\u2581run", "\u2581!"]


def test_special_tokens_are_control_and_the_rest_normal() -> None:
    vocab = wordpiece_vocab(HF, DEFAULT_SPECIALS, len(HF))
    control = [i for i, t in enumerate(vocab.token_types) if t == TokenType.CONTROL]
    assert control == [0, 2, 3, 4, 5]
    assert vocab.token_types[6] == TokenType.NORMAL


def test_special_ids_are_found_by_token_text() -> None:
    vocab = wordpiece_vocab(HF, DEFAULT_SPECIALS, len(HF))
    assert (vocab.pad_id, vocab.unk_id, vocab.cls_id, vocab.sep_id, vocab.mask_id) == \
        (0, 2, 3, 4, 5)


def test_embedding_rows_beyond_the_vocab_file_get_unused_placeholders() -> None:
    vocab = wordpiece_vocab(HF, DEFAULT_SPECIALS, len(HF) + 2)
    assert vocab.tokens[-2:] == ["[PAD10]", "[PAD11]"]
    assert vocab.token_types[-2:] == [TokenType.UNUSED, TokenType.UNUSED]


def test_a_vocab_larger_than_the_embedding_is_refused() -> None:
    with pytest.raises(UnsupportedModelError, match="10 tokens but the embedding has 9"):
        wordpiece_vocab(HF, DEFAULT_SPECIALS, 9)


def test_a_missing_cls_token_is_refused() -> None:
    with pytest.raises(UnsupportedModelError, match="cls_token"):
        wordpiece_vocab([t for t in HF if t != "[CLS]"], DEFAULT_SPECIALS, len(HF))


def test_a_vocab_without_mask_token_still_converts() -> None:
    vocab = wordpiece_vocab([t for t in HF if t != "[MASK]"], DEFAULT_SPECIALS, len(HF))
    assert vocab.mask_id is None
    keys = {e.key for e in gguf_tokenizer_scalars(vocab, 2)}
    assert Keys.Tokenizer.MASK_ID not in keys


def test_special_token_names_read_plain_and_added_token_forms() -> None:
    names = special_token_names({"cls_token": {"content": "<cls>"}, "sep_token": "<sep>",
                                 "pad_token": None})
    assert names["cls_token"] == "<cls>"
    assert names["sep_token"] == "<sep>"
    assert names["pad_token"] == "[PAD]"


def test_pair_flags_make_cls_query_sep_document_sep() -> None:
    vocab = wordpiece_vocab(HF, DEFAULT_SPECIALS, len(HF))
    kv = {e.key: e.value for e in gguf_tokenizer_scalars(vocab, 2)}
    tk = Keys.Tokenizer
    assert kv[tk.MODEL] == "bert"
    assert (kv[tk.BOS_ID], kv[tk.EOS_ID], kv[tk.SEP_ID]) == (3, 4, 4)
    assert (kv[tk.ADD_BOS], kv[tk.ADD_EOS], kv[tk.ADD_SEP]) == (True, True, False)
    assert kv[tk.TOKEN_TYPE_COUNT] == 2


def test_f16_applies_to_matrices_and_vectors_stay_f32() -> None:
    matrix, vector = np.ones((2, 3), np.float32), np.ones(3, np.float64)
    assert cast_tensor("blk.0.attn_q.weight", matrix, "f16").dtype == np.float16
    assert cast_tensor("blk.0.attn_q.bias", vector, "f16").dtype == np.float32
    assert cast_tensor("blk.0.attn_q.weight", matrix, "f32").dtype == np.float32


def test_token_types_stay_f32_because_llama_cpp_adds_them_to_f32_activations() -> None:
    assert cast_tensor("token_types.weight", np.ones((2, 3)), "f16").dtype == np.float32
