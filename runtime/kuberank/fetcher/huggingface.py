"""Hugging Face Hub sources: one file, or a glob (split GGUFs) via allow_patterns.

huggingface_hub resumes interrupted downloads and checks LFS hashes itself; the token comes from
HF_TOKEN, which the pod fills from spec.source.huggingFace.tokenSecretRef.
"""

from __future__ import annotations

import fnmatch
import os
from pathlib import Path

from kuberank.fetcher.errors import FetchError

GLOB_CHARS = set("*?[")


def is_glob(pattern: str) -> bool:
    return any(c in GLOB_CHARS for c in pattern)


def pick_model_file(files: list[str], pattern: str) -> str:
    """The file the runtime loads: for split GGUFs the first shard (…-00001-of-000NN.gguf)."""
    matches = sorted(f for f in files if fnmatch.fnmatch(f, pattern))
    if not matches:
        raise FetchError(f"no file in the repository matches {pattern!r}; check spec.source")
    return matches[0]


def fetch_hf(repo: str, pattern: str, revision: str, local: Path) -> Path:
    """Download into the directory ``local`` and return the path of the model file."""
    from huggingface_hub import hf_hub_download, snapshot_download
    from huggingface_hub.errors import HfHubHTTPError

    token = os.environ.get("HF_TOKEN") or None
    try:
        if not is_glob(pattern):
            return Path(
                hf_hub_download(repo, pattern, revision=revision, local_dir=local, token=token)
            )
        snapshot_download(
            repo, revision=revision, allow_patterns=[pattern], local_dir=local, token=token
        )
    except HfHubHTTPError as err:
        raise FetchError(f"Hugging Face {repo}@{revision}: {err}") from err
    files = [str(p.relative_to(local)) for p in local.rglob("*") if p.is_file()]
    return local / pick_model_file(files, pattern)
