"""Hugging Face Hub sources: one file, or a glob (split GGUFs) via allow_patterns.

huggingface_hub resumes interrupted downloads and checks LFS hashes itself; the token comes from
HF_TOKEN, which the pod fills from spec.source.huggingFace.tokenSecretRef.
"""

from __future__ import annotations

import fnmatch
import os
from pathlib import Path, PurePosixPath

from kuberank.fetcher.errors import FetchError

GLOB_CHARS = set("*?[")


def is_glob(pattern: str) -> bool:
    return any(c in GLOB_CHARS for c in pattern)


HUB_BOOKKEEPING = ".cache"  # huggingface_hub keeps its download metadata here in local_dir


def pick_model_file(files: list[str], pattern: str) -> str:
    """The file the runtime loads: for split GGUFs the first shard (…-00001-of-000NN.gguf).
    A pattern matches whole paths as ``allow_patterns`` does (``*`` crosses ``/``, so
    ``*Q8_0*.gguf`` finds ``Q8_0/m-Q8_0.gguf``), but the hub's own download metadata under
    ``.cache/`` (``.cache/huggingface/download/m-Q8_0.gguf.metadata``) is never a candidate."""
    matches = sorted(f for f in files if PurePosixPath(f).parts[0] != HUB_BOOKKEEPING
                     and fnmatch.fnmatch(f, pattern))
    if not matches:
        raise FetchError(f"no file in the repository matches {pattern!r}; check spec.source")
    return matches[0]


def fetch_hf(repo: str, pattern: str, revision: str, local: Path) -> Path:
    """Download into the directory ``local`` and return the path of the model file."""
    from huggingface_hub import hf_hub_download, snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, HFValidationError, LocalEntryNotFoundError

    # A token Secret made with `echo ... | kubectl create secret` ends in a newline, which an
    # HTTP header cannot carry.
    token = os.environ.get("HF_TOKEN", "").strip() or None
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
    except LocalEntryNotFoundError as err:  # no answer, or one without the file's metadata
        raise FetchError(f"Hugging Face {repo}@{revision}: the Hub could not be reached or did "
                         "not describe the file (check the pod's egress, HF_ENDPOINT and a "
                         "proxy in between)") from err
    except HFValidationError as err:
        raise FetchError(f"Hugging Face: {err}; check spec.source.huggingFace") from err
    files = [str(p.relative_to(local)) for p in local.rglob("*") if p.is_file()]
    return local / pick_model_file(files, pattern)
