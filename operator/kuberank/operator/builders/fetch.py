"""The init container that puts the model file at /models/model.gguf (kuberank-fetch).

With ``spec.cache`` the files go to the shared claim mounted at /cache and /models only holds
the pod's link to them; without it /models (an emptyDir) holds both.
"""

from __future__ import annotations

from typing import Any

from kuberank.crd.rerankmodel import ModelCache, ModelSource

MODELS_DIR = "/models"
SOURCE_DIR = "/source"
CACHE_DIR = "/cache"
LINK_NAME = "model.gguf"


URL_ENV = "KUBERANK_FETCH_URL"  # a url source's URL, when it comes from a Secret


def fetch_args(source: ModelSource, cache: ModelCache | None = None) -> list[str]:
    """kuberank-fetch arguments for the one source that is set."""
    common = ["--dest", MODELS_DIR, "--link", LINK_NAME]
    cached = [*common, "--cache", CACHE_DIR] if uses_cache(source, cache) else common
    if source.url is not None:
        where = (["--url", source.url.url] if source.url.url is not None
                 else ["--url-env", URL_ENV])
        return ["url", *where, "--sha256", source.url.sha256, *cached]
    if source.hugging_face is not None:
        hf = source.hugging_face
        return ["hf", "--repo", hf.repo, "--file", hf.file, "--revision", hf.revision, *cached]
    assert source.pvc is not None
    return ["pvc", "--path", f"{SOURCE_DIR}/{source.pvc.path}", *common]


def uses_cache(source: ModelSource, cache: ModelCache | None) -> bool:
    """A cache claim matters only to sources that are fetched (a pvc source is read in place)."""
    return cache is not None and source.pvc is None


def fetch_env(source: ModelSource) -> list[dict[str, Any]]:
    """HF_HOME inside the cache volume (read-only root), plus the token or URL from its
    Secret."""
    env: list[dict[str, Any]] = [{"name": "HF_HOME", "value": f"{MODELS_DIR}/.hf"}]
    secret_url = source.url.url_secret_ref if source.url is not None else None
    if secret_url is not None:
        env.append({"name": URL_ENV, "valueFrom": {"secretKeyRef": {
            "name": secret_url.name, "key": secret_url.key}}})
    hf = source.hugging_face
    if hf is not None and hf.token_secret_ref is not None:
        ref = hf.token_secret_ref
        env.append(
            {
                "name": "HF_TOKEN",
                "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}},
            }
        )
    return env


def cache_volume(source: ModelSource, cache: ModelCache | None) -> dict[str, Any] | None:
    """The shared claim fetched files are kept on, when the model has one."""
    if cache is None or not uses_cache(source, cache):
        return None
    return {"name": "cache", "persistentVolumeClaim": {"claimName": cache.claim_name}}


def source_volume(source: ModelSource) -> dict[str, Any] | None:
    """The PVC holding the model, mounted read-only, when the source is a volume."""
    if source.pvc is None:
        return None
    return {
        "name": "source",
        "persistentVolumeClaim": {"claimName": source.pvc.claim_name, "readOnly": True},
    }
