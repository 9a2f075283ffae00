"""WordPiece vocabulary -> llama.cpp WPM vocabulary and special-token flags."""

from __future__ import annotations

import base64
from typing import Any

import numpy as np
import pytest
from gguf import Keys, TokenType
from kuberank.modelkit.hparams import UnsupportedModelError
from kuberank.modelkit.vocab import (
    DEFAULT_SPECIALS,
    XLMR_SPECIALS,
    gguf_tokenizer_scalars,
    special_token_names,
    unigram_vocab,
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



def xlmr_tokenizer_json(**changes: Any) -> dict[str, Any]:
    """The shape of XLM-R's tokenizer.json (transformers 4.x layout), with four pieces."""
    data: dict[str, Any] = {
        "added_tokens": [{"id": i, "content": t, "special": True}
                         for i, t in enumerate(["<s>", "<pad>", "</s>", "<unk>"])]
        + [{"id": 8, "content": "<mask>", "special": True}],
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "Precompiled", "precompiled_charsmap": base64.b64encode(b"MAP").decode()},
            {"type": "Replace", "pattern": {"Regex": " {2,}"}, "content": " "}]},
        "pre_tokenizer": {"type": "Metaspace", "replacement": "\u2581",
                          "prepend_scheme": "always"},
        "model": {"type": "Unigram", "unk_id": 3, "vocab": [
            ["<s>", 0.0], ["<pad>", 0.0], ["</s>", 0.0], ["<unk>", 0.0], [",", -3.5],
            ["\u2581the", -3.6], ["s", -4.1], ["\u2581panda", -9.0], ["<mask>", 0.0]]},
    }
    data.update(changes)
    return data


def test_unigram_vocab_keeps_pieces_scores_and_kinds() -> None:
    vocab = unigram_vocab(xlmr_tokenizer_json(), XLMR_SPECIALS, 10)
    assert vocab.tokens[:9] == ["<s>", "<pad>", "</s>", "<unk>", ",", "\u2581the", "s",
                                "\u2581panda", "<mask>"]
    assert vocab.tokens[9] == "[PAD9]" and vocab.token_types[9] == TokenType.UNUSED
    assert vocab.scores is not None and vocab.scores[5] == -3.6 and vocab.scores[9] == -10000.0
    kinds = vocab.token_types
    assert [kinds[i] for i in (0, 1, 2, 8)] == [TokenType.CONTROL] * 4
    assert kinds[3] == TokenType.UNKNOWN and kinds[5] == TokenType.NORMAL
    assert (vocab.cls_id, vocab.sep_id, vocab.pad_id, vocab.unk_id, vocab.mask_id) == (
        0, 2, 1, 3, 8)
    assert vocab.precompiled_charsmap == b"MAP"
    assert vocab.add_space_prefix is True and vocab.remove_extra_whitespaces is True


def test_unigram_vocab_makes_the_xlm_roberta_pair() -> None:
    """<s> q </s> </s> d </s>: BOS, EOS and a separator (EOS again) are all added."""
    vocab = unigram_vocab(xlmr_tokenizer_json(), XLMR_SPECIALS, 9)
    keys = {e.key: e.value for e in gguf_tokenizer_scalars(vocab, 1)}
    tk = Keys.Tokenizer
    assert keys[tk.MODEL] == "t5" and keys[tk.TOKEN_TYPE_COUNT] == 1
    assert (keys[tk.BOS_ID], keys[tk.EOS_ID], keys[tk.SEP_ID]) == (0, 2, 2)
    assert keys[tk.ADD_BOS] is True and keys[tk.ADD_EOS] is True and keys[tk.ADD_SEP] is True
    assert keys[tk.ADD_PREFIX] is True and keys[tk.REMOVE_EXTRA_WS] is True


def test_unigram_vocab_reads_the_newer_transformers_layout() -> None:
    """transformers 5 writes the map alone and splits on whitespace before Metaspace."""
    data = xlmr_tokenizer_json(
        normalizer={"type": "Precompiled",
                    "precompiled_charsmap": base64.b64encode(b"M").decode()},
        pre_tokenizer={"type": "Sequence", "pretokenizers": [
            {"type": "WhitespaceSplit"},
            {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "never"}]})
    vocab = unigram_vocab(data, XLMR_SPECIALS, 9)
    assert vocab.precompiled_charsmap == b"M"
    assert vocab.remove_extra_whitespaces is True and vocab.add_space_prefix is False


@pytest.mark.parametrize(("data", "size", "message"), [
    (xlmr_tokenizer_json(model={"type": "WordPiece", "vocab": {}}), 9, "Unigram"),
    (xlmr_tokenizer_json(), 5, "embedding has 5 rows"),
    (xlmr_tokenizer_json(model={"type": "Unigram", "vocab": [["<s>"]]}), 9, r"\[text, score\]"),
    (xlmr_tokenizer_json(normalizer={"type": "Precompiled", "precompiled_charsmap": "%%"}), 9,
     "not base64"),
])
def test_unigram_vocab_refuses_what_it_cannot_convert(data: dict[str, Any], size: int,
                                                      message: str) -> None:
    with pytest.raises(UnsupportedModelError, match=message):
        unigram_vocab(data, XLMR_SPECIALS, size)
