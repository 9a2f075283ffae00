"""Vocabularies in the form llama.cpp's tokenizers expect: BERT WordPiece and XLM-R Unigram.

Pure. llama.cpp stores BERT vocabularies in "phantom space" form: a word-initial piece gets a
leading U+2581, a continuation piece (``##x``) loses its ``##``, special tokens stay as they are.
The special-token flags make a rank pair ``[CLS] query [SEP] document [SEP]``: BOS is ``[CLS]``,
EOS is ``[SEP]``, BOS and EOS are added, no extra separator — what llama.cpp's converter derives
from a BERT tokenizer's pair template.

XLM-RoBERTa's SentencePiece Unigram vocabulary (its ``tokenizer.json``) becomes llama.cpp's UGM
tokenizer ("t5"): pieces with their scores, the normalizer's precompiled character map, and
flags that make the pair ``<s> query </s> </s> document </s>``, as transformers encodes it.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
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

XLMR_SPECIALS: Mapping[str, str] = {
    "cls_token": "<s>",
    "sep_token": "</s>",
    "pad_token": "<pad>",
    "unk_token": "<unk>",
    "mask_token": "<mask>",
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
    model: str = "bert"  # tokenizer.ggml.model: "bert" (WPM) or "t5" (UGM)
    add_sep: bool = False
    scores: list[float] | None = None
    precompiled_charsmap: bytes | None = None
    add_space_prefix: bool | None = None
    remove_extra_whitespaces: bool | None = None


def special_token_names(tokenizer_config: Mapping[str, Any],
                        defaults: Mapping[str, str] = DEFAULT_SPECIALS) -> dict[str, str]:
    """Special token strings from ``tokenizer_config.json`` (plain or AddedToken dicts)."""
    names = dict(defaults)
    for key in defaults:
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
    special_ids = _special_ids({tok: i for i, tok in enumerate(hf_tokens)}, specials)
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
    return _with_specials(tokens, types, special_ids)


def _with_specials(tokens: list[str], types: list[int],
                   special_ids: Mapping[str, int]) -> GgufVocab:
    return GgufVocab(
        tokens=tokens,
        token_types=types,
        cls_id=special_ids["cls_token"],
        sep_id=special_ids["sep_token"],
        pad_id=special_ids["pad_token"],
        unk_id=special_ids["unk_token"],
        mask_id=special_ids.get("mask_token"),
    )


def _special_ids(ids: Mapping[str, int], specials: Mapping[str, str]) -> dict[str, int]:
    special_ids: dict[str, int] = {}
    for key, token in specials.items():
        if token in ids:
            special_ids[key] = ids[token]
        elif key != "mask_token":
            raise UnsupportedModelError(f"{key} {token!r} is not in the vocabulary")
    return special_ids


def _components(node: Any, list_key: str) -> Iterator[Mapping[str, Any]]:
    """A tokenizer.json normalizer or pre-tokenizer, and the members of a Sequence of them."""
    if isinstance(node, Mapping):
        yield node
        for member in node.get(list_key) or []:
            yield from _components(member, list_key)


def unigram_vocab(
    tokenizer_json: Mapping[str, Any], specials: Mapping[str, str], vocab_size: int
) -> GgufVocab:
    """Convert an XLM-R ``tokenizer.json`` (SentencePiece Unigram) into llama.cpp's UGM vocab."""
    model = tokenizer_json.get("model") or {}
    pieces = model.get("vocab")
    if model.get("type") != "Unigram" or not isinstance(pieces, list):
        raise UnsupportedModelError("tokenizer.json does not hold a Unigram (SentencePiece) model")
    if not all(isinstance(p, list) and len(p) == 2 and isinstance(p[1], (int, float))
               for p in pieces):
        raise UnsupportedModelError("tokenizer.json: Unigram pieces must be [text, score] pairs")
    if len(pieces) > vocab_size:
        raise UnsupportedModelError(
            f"vocabulary has {len(pieces)} tokens but the embedding has {vocab_size} rows")
    texts = [str(piece[0]) for piece in pieces]
    special_ids = _special_ids({text: i for i, text in enumerate(texts)}, specials)
    unk_id = model.get("unk_id")
    unk_id = unk_id if isinstance(unk_id, int) else special_ids["unk_token"]
    control = set(special_ids.values()) | {
        t["id"] for t in tokenizer_json.get("added_tokens") or [] if t.get("special")}
    tokens, types, scores = [], [], []
    for i in range(vocab_size):
        if i >= len(pieces):
            tokens.append(f"[PAD{i}]")
            types.append(int(TokenType.UNUSED))
            scores.append(-10000.0)
            continue
        tokens.append(texts[i])
        scores.append(float(pieces[i][1]))
        if i == unk_id:
            types.append(int(TokenType.UNKNOWN))
        elif i in control:
            types.append(int(TokenType.CONTROL))
        else:
            types.append(int(TokenType.NORMAL))
    normalizers = list(_components(tokenizer_json.get("normalizer"), "normalizers"))
    pre_tokenizers = list(_components(tokenizer_json.get("pre_tokenizer"), "pretokenizers"))
    charsmap = next((n.get("precompiled_charsmap") for n in normalizers
                     if n.get("type") == "Precompiled"), None)
    metaspace = next((p for p in pre_tokenizers if p.get("type") == "Metaspace"), {})
    return replace(
        _with_specials(tokens, types, {**special_ids, "unk_token": unk_id}),
        model="t5",
        add_sep=True,
        scores=scores,
        precompiled_charsmap=_decoded_charsmap(charsmap),
        add_space_prefix=bool(metaspace.get("add_prefix_space", True))
        and metaspace.get("prepend_scheme", "always") != "never",
        # SentencePiece collapses runs of spaces; transformers does it by splitting on them.
        remove_extra_whitespaces=any(p.get("type") == "WhitespaceSplit" for p in pre_tokenizers)
        or any(n.get("type") == "Replace" for n in normalizers),
    )


def _decoded_charsmap(encoded: Any) -> bytes | None:
    if not encoded:
        return None
    try:
        return base64.b64decode(str(encoded), validate=True)
    except binascii.Error as err:
        raise UnsupportedModelError(
            f"tokenizer.json: precompiled_charsmap is not base64: {err}") from err


def gguf_tokenizer_scalars(vocab: GgufVocab, type_vocab_size: int) -> list[MetadataEntry]:
    """Scalar ``tokenizer.ggml.*`` keys (the token arrays are written separately)."""
    u32, flag, tk = GGUFValueType.UINT32, GGUFValueType.BOOL, Keys.Tokenizer
    entries = [
        MetadataEntry(tk.MODEL, vocab.model, GGUFValueType.STRING),
        MetadataEntry(tk.PRE, "default", GGUFValueType.STRING),
        MetadataEntry(tk.TOKEN_TYPE_COUNT, type_vocab_size, u32),
        MetadataEntry(tk.BOS_ID, vocab.cls_id, u32),
        MetadataEntry(tk.EOS_ID, vocab.sep_id, u32),
        MetadataEntry(tk.SEP_ID, vocab.sep_id, u32),
        MetadataEntry(tk.PAD_ID, vocab.pad_id, u32),
        MetadataEntry(tk.UNK_ID, vocab.unk_id, u32),
        MetadataEntry(tk.ADD_BOS, True, flag),
        MetadataEntry(tk.ADD_EOS, True, flag),
        MetadataEntry(tk.ADD_SEP, vocab.add_sep, flag),
    ]
    if vocab.mask_id is not None:
        entries.append(MetadataEntry(tk.MASK_ID, vocab.mask_id, u32))
    if vocab.add_space_prefix is not None:
        entries.append(MetadataEntry(tk.ADD_PREFIX, vocab.add_space_prefix, flag))
    if vocab.remove_extra_whitespaces is not None:
        entries.append(MetadataEntry(tk.REMOVE_EXTRA_WS, vocab.remove_extra_whitespaces, flag))
    return entries
