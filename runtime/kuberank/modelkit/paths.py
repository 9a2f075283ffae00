"""Where generated models live, so the runtime, tests and CLI agree on one place.

Models are build artefacts, never committed: they sit in ``$KUBERANK_CACHE/models``
(default ``~/.cache/kuberank/models``).
"""

from __future__ import annotations

import os
from pathlib import Path

TINY = "tiny-reranker.gguf"
"""Tiny random BERT cross-encoder (real MiniLM vocabulary) for fast tests."""

MINILM = "minilm-l6-reranker.gguf"
"""MiniLM-L6 encoder weights with a seeded random pooler and classifier head."""

MINILM_HF = "minilm-l6-reranker-hf"
"""HF-format twin directory of ``MINILM`` so transformers can score the same weights."""

DEFAULT = "kuberank-minilm-reranker.gguf"
"""The fine-tuned default model served when no model is configured (issue 7)."""

DEFAULT_HF = "kuberank-minilm-reranker-hf"
"""HF-format twin directory of ``DEFAULT`` (the trainer's own output, converted to ``DEFAULT``)."""


def cache_dir() -> Path:
    """Root of kuberank's caches: ``$KUBERANK_CACHE`` or ``~/.cache/kuberank``."""
    env = os.environ.get("KUBERANK_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "kuberank"


def models_dir() -> Path:
    """Directory holding generated model files."""
    return cache_dir() / "models"


def default_model_path() -> Path:
    """Path of the default model the runtime serves."""
    return models_dir() / DEFAULT
