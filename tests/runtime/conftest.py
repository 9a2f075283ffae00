"""Generated models for runtime tests, built by kuberank.modelkit on first use.

They are cached in $KUBERANK_CACHE/models (what `kuberank-models build` fills), so a machine
that ran scripts/setup.sh reuses them and a fresh one builds them in a few seconds.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from gguf import GGUFReader, GGUFValueType, GGUFWriter
from kuberank.modelkit import paths
from kuberank.modelkit.build import ensure_minilm, ensure_tiny


def _log(message: str) -> None:
    print(f"[models] {message}", file=sys.stderr)


@pytest.fixture(scope="session")
def models_dir() -> Path:
    """The model cache with the tiny and MiniLM test models present."""
    out = paths.models_dir()
    ensure_tiny(out, _log)
    ensure_minilm(out, _log)
    return out


@pytest.fixture(scope="session")
def tiny_model() -> Path:
    """tiny-reranker.gguf: random 2-layer BERT cross-encoder with the real MiniLM vocabulary."""
    return ensure_tiny(paths.models_dir(), _log)


@pytest.fixture(scope="session")
def minilm_model(models_dir: Path) -> Path:
    """minilm-l6-reranker.gguf: MiniLM-L6 weights with a seeded random rank head."""
    return models_dir / paths.MINILM


@pytest.fixture(scope="session")
def minilm_hf_dir(models_dir: Path) -> Path:
    """HF twin of minilm-l6-reranker.gguf that transformers loads offline."""
    return models_dir / paths.MINILM_HF


@pytest.fixture
def embedding_only_model(tiny_model: Path, tmp_path: Path) -> Path:
    """The tiny model with its pooling type rewritten from RANK (4) to MEAN (1): not a reranker."""
    path = tmp_path / "embedding-only.gguf"
    shutil.copy(tiny_model, path)
    reader = GGUFReader(path, "r+")
    field = reader.fields["bert.pooling_type"]
    field.parts[field.data[0]][0] = 1
    del reader
    return path


def rewritten(src: Path, dst: Path, drop: frozenset[str] = frozenset(),
              labels: list[str] | None = None, filled: dict[str, float] | None = None) -> Path:
    """A copy of the GGUF ``src`` without the tensors in ``drop``; with ``labels``, a rank head
    of that many outputs (the first row negated for each further label) and their names;
    the tensors named in ``filled`` filled with its value."""
    reader = GGUFReader(src)
    writer = GGUFWriter(dst, str(reader.fields["general.architecture"].contents()))
    for key, field in reader.fields.items():
        if key.startswith("GGUF.") or key == "general.architecture":
            continue
        kind = field.types[0]
        if kind == GGUFValueType.ARRAY:
            writer.add_key_value(key, field.contents(), kind, sub_type=field.types[-1])
        else:
            writer.add_key_value(key, field.contents(), kind)
    if labels is not None:
        writer.add_array("bert.classifier.output_labels", labels)
    for tensor in reader.tensors:
        if tensor.name in drop:
            continue
        data = np.array(tensor.data)
        if labels is not None and tensor.name in ("cls.output.weight", "cls.output.bias"):
            data = np.concatenate([data] + [-data] * (len(labels) - 1), axis=0)
        if filled and tensor.name in filled:
            data = np.full_like(data, filled[tensor.name])
        writer.add_tensor(tensor.name, data, raw_dtype=tensor.tensor_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return dst


@pytest.fixture
def headless_model(tiny_model: Path, tmp_path: Path) -> Path:
    """The tiny model, rank pooling still declared, without its classification head."""
    return rewritten(tiny_model, tmp_path / "headless.gguf",
                     drop=frozenset({"cls.weight", "cls.bias", "cls.output.weight",
                                     "cls.output.bias"}))


@pytest.fixture
def nan_model(tiny_model: Path, tmp_path: Path) -> Path:
    """The tiny model scoring every pair NaN (its head's bias is), as broken weights do."""
    return rewritten(tiny_model, tmp_path / "nan.gguf", filled={"cls.output.bias": float("nan")})


@pytest.fixture
def two_label_model(tiny_model: Path, tmp_path: Path) -> Path:
    """The tiny model with a two-label head (label 0 "not relevant", as some classifiers)."""
    return rewritten(tiny_model, tmp_path / "two-labels.gguf", labels=["LABEL_0", "LABEL_1"])


@pytest.fixture
def cls_only_model(tiny_model: Path, tmp_path: Path) -> Path:
    """The tiny model with a ``cls`` projection and no ``cls.output``, the layout llama.cpp
    accepts for heads such as jina-reranker-v1's."""
    return rewritten(tiny_model, tmp_path / "cls-only.gguf",
                     drop=frozenset({"cls.output.weight", "cls.output.bias"}))
