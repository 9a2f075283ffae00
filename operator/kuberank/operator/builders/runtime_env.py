"""Runtime container flags as KUBERANK_* environment variables (see kuberank-runtime --help)."""

from __future__ import annotations

from typing import Any

from kuberank.crd.rerankmodel import RerankModelSpec

MODEL_PATH = "/models/model.gguf"


def _flag(value: bool) -> str:
    return "true" if value else "false"


def runtime_env(name: str, spec: RerankModelSpec) -> list[dict[str, Any]]:
    """Env of the runtime container; unset engine/limit fields leave the runtime's defaults."""
    engine, limits = spec.engine, spec.limits
    gpu_layers = engine.gpu_layers
    if gpu_layers is None:
        gpu_layers = -1 if spec.resources.gpus > 0 else 0
    values: dict[str, str | None] = {
        "KUBERANK_MODEL": MODEL_PATH,
        "KUBERANK_SERVED_NAME": spec.served_name_for(name),
        "KUBERANK_HOST": "0.0.0.0",
        "KUBERANK_PORT": "8080",
        "KUBERANK_THREADS": _opt(engine.threads),
        "KUBERANK_CTX_SIZE": _opt(engine.context_size),
        "KUBERANK_BATCH_SIZE": _opt(engine.batch_size),
        "KUBERANK_MAX_BATCH_PAIRS": _opt(engine.max_batch_pairs),
        "KUBERANK_CONTEXTS": _opt(engine.contexts),
        "KUBERANK_GPU_LAYERS": str(gpu_layers),
        "KUBERANK_FLASH_ATTN": None
        if engine.flash_attention is None
        else _flag(engine.flash_attention),
        "KUBERANK_MAX_DOCUMENTS": _opt(limits.max_documents),
        "KUBERANK_MAX_QUERY_TOKENS": _opt(limits.max_query_tokens),
        "KUBERANK_MAX_DOCUMENT_TOKENS": _opt(limits.max_document_tokens),
        "KUBERANK_OVERFLOW": limits.overflow,
        # Half the gateway's wait for the model: queued and then scored within it (the
        # runtime's default, 30 s, is half the gateway's own default of 60 s).
        "KUBERANK_MAX_QUEUE_SECONDS": (None if limits.timeout_seconds is None
                                       else f"{limits.timeout_seconds / 2:g}"),
        "KUBERANK_NORMALIZE": _flag(spec.scoring.normalize),
    }
    env = [{"name": k, "value": v} for k, v in values.items() if v is not None]
    ours = {e["name"] for e in env}
    # User env comes last and may override ours; duplicates are dropped so the list stays a map.
    extra = [e.to_wire() for e in engine.env or []]
    overridden = {e["name"] for e in extra} & ours
    return [e for e in env if e["name"] not in overridden] + extra


def _opt(value: int | None) -> str | None:
    return None if value is None else str(value)
