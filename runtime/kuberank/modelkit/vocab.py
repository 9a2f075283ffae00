"""WordPiece vocabulary in the form llama.cpp's WPM tokenizer expects.

Pure. llama.cpp stores BERT vocabularies in "phantom space" form: a word-initial piece gets a
leading U+2581, a continuation piece (``##x``) loses its ``##``, special tokens stay as they are.
The special-token flags make a rank pair ``[CLS] query [SEP] document [SEP]``: BOS is ``[CLS]``,
EOS is ``[SEP]``, BOS and EOS are added, no extra separator — what llama.cpp's converter derives
from a BERT tokenizer's pair template.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gguf import GGUFValueType, Keys, TokenType
from kuberank.modelkit.hparams import MetadataEntry, UnsupportedModelError

PHANTOM_SPACE = "\u2581"

DEFAULT_SPECIALS: Mapping[str, str] = {
    "cls_token": "[CLS]",
    "sep_token": "[SEP]",
    "pad_token": "[PAD]",
    "unk_token": "[UNK]",
    "mask_token": "[MASK]",
}


@dataclass(frozen=True)
class GgufVocab:
    """Tokens, their types and the special ids, ready for the ``tokenizer.ggml.*`` keys."""

    tokens: list[str]
    token_types: list[int]
    cls_id: int
    sep_id: int
    pad_id: int
    unk_id: int
    mask_id: int | None


def special_token_names(tokenizer_config: Mapping[str, Any]) -> dict[str, str]:
    """Special token strings from ``tokenizer_config.json`` (plain or AddedToken dicts)."""
    names = dict(DEFAULT_SPECIALS)
    for key in DEFAULT_SPECIALS:
        value = tokenizer_config.get(key)
        if isinstance(value, Mapping):
            value = value.get("content")
        if isinstance(value, str) and value:
            names[key] = value
    return names


def _phantom(token: str) -> str:
    return token[2:] if token.startswith("##") else PHANTOM_SPACE + token


def wordpiece_vocab(
    hf_tokens: Sequence[str], specials: Mapping[str, str], vocab_size: int
) -> GgufVocab:
    """Convert HF WordPiece tokens (index = id) into llama.cpp's WPM vocabulary.

    Ids the vocab file does not cover (embedding rows beyond it) become unused ``[PADn]``
    placeholders, as llama.cpp's converter does, so token ids and embedding rows stay aligned.
    """
    if len(hf_tokens) > vocab_size:
        raise UnsupportedModelError(
            f"vocabulary has {len(hf_tokens)} tokens but the embedding has {vocab_size} rows"
        )
    ids = {tok: i for i, tok in enumerate(hf_tokens)}
    special_ids: dict[str, int] = {}
    for key, token in specials.items():
        if token in ids:
            special_ids[key] = ids[token]
        elif key != "mask_token":
            raise UnsupportedModelError(f"{key} {token!r} is not in the vocabulary")
    control = set(special_ids.values())
    tokens: list[str] = []
    types: list[int] = []
    for i in range(vocab_size):
        if i >= len(hf_tokens):
            tokens.append(f"[PAD{i}]")
            types.append(int(TokenType.UNUSED))
        elif i in control:
            tokens.append(hf_tokens[i])
            types.append(int(TokenType.CONTROL))
        else:
            tokens.append(_phantom(hf_tokens[i]))
            types.append(int(TokenType.NORMAL))
    return GgufVocab(
        tokens=tokens,
        token_types=types,
        cls_id=special_ids["cls_token"],
        sep_id=special_ids["sep_token"],
        pad_id=special_ids["pad_token"],
        unk_id=special_ids["unk_token"],
        mask_id=special_ids.get("mask_token"),
    )


def gguf_tokenizer_scalars(vocab: GgufVocab, type_vocab_size: int) -> list[MetadataEntry]:
    """Scalar ``tokenizer.ggml.*`` keys (the token arrays are written separately)."""
    u32, flag, tk = GGUFValueType.UINT32, GGUFValueType.BOOL, Keys.Tokenizer
    entries = [
        MetadataEntry(tk.MODEL, "bert", GGUFValueType.STRING),
        MetadataEntry(tk.PRE, "default", GGUFValueType.STRING),
        MetadataEntry(tk.TOKEN_TYPE_COUNT, type_vocab_size, u32),
        MetadataEntry(tk.BOS_ID, vocab.cls_id, u32),
        MetadataEntry(tk.EOS_ID, vocab.sep_id, u32),
        MetadataEntry(tk.SEP_ID, vocab.sep_id, u32),
        MetadataEntry(tk.PAD_ID, vocab.pad_id, u32),
        MetadataEntry(tk.UNK_ID, vocab.unk_id, u32),
        MetadataEntry(tk.ADD_BOS, True, flag),
        MetadataEntry(tk.ADD_EOS, True, flag),
        MetadataEntry(tk.ADD_SEP, False, flag),
    ]
    if vocab.mask_id is not None:
        entries.append(MetadataEntry(tk.MASK_ID, vocab.mask_id, u32))
    return entries
