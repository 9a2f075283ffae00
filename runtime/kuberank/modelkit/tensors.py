"""Name mapping from HF Bert/XLMRobertaForSequenceClassification tensors to llama.cpp ``bert``.

Pure. The rank head is the point of this module: llama.cpp's RANK pooling applies ``cls``
(dense + tanh) then ``cls.output``, which is exactly BERT's pooler followed by its classifier.
llama.cpp's own converter drops the pooler, so its scores differ from transformers; mapping the
pooler to ``cls`` keeps them equal. Shapes need no transposing: an HF Linear weight
``(out, in)`` in row-major order is ggml's ``{in, out}``.
"""

from __future__ import annotations

from collections.abc import Iterable

from kuberank.modelkit.hparams import BertHparams, UnsupportedModelError

_GLOBAL = {
    "embeddings.word_embeddings.weight": "token_embd.weight",
    "embeddings.token_type_embeddings.weight": "token_types.weight",
    "embeddings.position_embeddings.weight": "position_embd.weight",
    "embeddings.LayerNorm.weight": "token_embd_norm.weight",
    "embeddings.LayerNorm.bias": "token_embd_norm.bias",
}

# The rank head, per family: llama.cpp applies ``cls`` (dense + tanh), then ``cls.output``.
_HEADS: dict[str, dict[str, str | None]] = {
    "bert": {
        "pooler.dense.weight": "cls.weight",
        "pooler.dense.bias": "cls.bias",
        "classifier.weight": "cls.output.weight",
        "classifier.bias": "cls.output.bias",
    },
    # XLM-RoBERTa's head is dense + tanh + projection already; it never runs a pooler, so one
    # left in its checkpoint is dropped rather than mapped.
    "xlm-roberta": {
        "classifier.dense.weight": "cls.weight",
        "classifier.dense.bias": "cls.bias",
        "classifier.out_proj.weight": "cls.output.weight",
        "classifier.out_proj.bias": "cls.output.bias",
        "pooler.dense.weight": None,
        "pooler.dense.bias": None,
    },
}

_LAYER = {
    "attention.self.query": "attn_q",
    "attention.self.key": "attn_k",
    "attention.self.value": "attn_v",
    "attention.output.dense": "attn_output",
    "attention.output.LayerNorm": "attn_output_norm",
    "intermediate.dense": "ffn_up",
    "output.dense": "ffn_down",
    "output.LayerNorm": "layer_output_norm",
}

# Present in HF checkpoints but not part of the forward pass llama.cpp runs.
_IGNORED_PREFIXES = ("embeddings.position_ids", "cls.predictions.", "cls.seq_relationship.")


def _canonical(hf_name: str) -> str:
    name = hf_name.removeprefix("bert.").removeprefix("roberta.")
    if name.endswith(".gamma"):
        name = name.removesuffix(".gamma") + ".weight"
    elif name.endswith(".beta"):
        name = name.removesuffix(".beta") + ".bias"
    return name


def gguf_tensor_name(hf_name: str, family: str = "bert") -> str | None:
    """GGUF name for an HF tensor name; None for tensors llama.cpp does not use."""
    name = _canonical(hf_name)
    if name.startswith(_IGNORED_PREFIXES):
        return None
    if name in _GLOBAL:
        return _GLOBAL[name]
    head = _HEADS[family]
    if name in head:
        return head[name]
    parts = name.split(".")
    if len(parts) >= 5 and parts[:2] == ["encoder", "layer"] and parts[2].isdigit():
        module, param = ".".join(parts[3:-1]), parts[-1]
        if module in _LAYER and param in ("weight", "bias"):
            return f"blk.{int(parts[2])}.{_LAYER[module]}.{param}"
    raise UnsupportedModelError(f"unexpected tensor {hf_name!r} for a BERT cross-encoder")


def expected_shapes(hp: BertHparams) -> dict[str, tuple[int, ...]]:
    """Every GGUF tensor a rank-pooling ``bert`` model needs, with its numpy (row-major) shape."""
    h, ff = hp.hidden_size, hp.intermediate_size
    shapes: dict[str, tuple[int, ...]] = {
        "token_embd.weight": (hp.vocab_size, h),
        "token_types.weight": (hp.type_vocab_size, h),
        "position_embd.weight": (hp.max_position_embeddings, h),
        "token_embd_norm.weight": (h,),
        "token_embd_norm.bias": (h,),
        "cls.weight": (h, h),
        "cls.bias": (h,),
        "cls.output.weight": (1, h),
        "cls.output.bias": (1,),
    }
    # base name -> (weight shape, bias length)
    per_layer: dict[str, tuple[tuple[int, ...], int]] = {
        "attn_q": ((h, h), h),
        "attn_k": ((h, h), h),
        "attn_v": ((h, h), h),
        "attn_output": ((h, h), h),
        "attn_output_norm": ((h,), h),
        "ffn_up": ((ff, h), ff),
        "ffn_down": ((h, ff), h),
        "layer_output_norm": ((h,), h),
    }
    for i in range(hp.num_hidden_layers):
        for base, (weight_shape, bias_len) in per_layer.items():
            shapes[f"blk.{i}.{base}.weight"] = weight_shape
            shapes[f"blk.{i}.{base}.bias"] = (bias_len,)
    return shapes


def check_tensors(hp: BertHparams, found: Iterable[tuple[str, tuple[int, ...]]]) -> None:
    """Raise unless ``found`` (GGUF name, shape) is exactly the set the model needs."""
    expected = expected_shapes(hp)
    got = dict(found)
    missing = sorted(set(expected) - set(got))
    if missing:
        raise UnsupportedModelError(f"missing tensors: {', '.join(missing)}")
    extra = sorted(set(got) - set(expected))
    if extra:
        raise UnsupportedModelError(f"unexpected tensors: {', '.join(extra)}")
    wrong = [f"{n} {got[n]} != {s}" for n, s in expected.items() if tuple(got[n]) != s]
    if wrong:
        raise UnsupportedModelError(f"tensor shapes do not match config: {'; '.join(wrong)}")
