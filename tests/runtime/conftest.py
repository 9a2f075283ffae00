"""Generated models for runtime tests, built by kuberank.modelkit on first use.

They are cached in $KUBERANK_CACHE/models (what `kuberank-models build` fills), so a machine
that ran scripts/setup.sh reuses them and a fresh one builds them in a few seconds.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
from gguf import GGUFReader
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
