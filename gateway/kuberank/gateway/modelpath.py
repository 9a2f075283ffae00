"""``/models/<name>/rerank``: the model named in the path, for clients whose dialect has no
field for it. TEI's ``/rerank`` body names no model and its clients (LiteLLM's
``huggingface/``, LlamaIndex's ``TextEmbeddingInference``) send none: one base URL is one
model to them. Without this, a key that may use two models could not be used by them at all.
Every rerank path works under the prefix (``/models/<name>/v1/rerank`` too); the name may hold
slashes (``BAAI/bge-reranker-v2-m3``), as served names and aliases may."""

from __future__ import annotations

import copy
from typing import Any

from fastapi import FastAPI
from kuberank.protocol.dialects import Dialect
from kuberank.protocol.openapi import amend_openapi
from kuberank.protocol.paths import SENT_PATH, SPELLINGS
from starlette.types import ASGIApp, Receive, Scope, Send

PREFIX = "/models/"
PATH_MODEL = "path_model"  # in scope["state"]
# Longest first: /models/m/v1/rerank is model "m" and /v1/rerank, not model "m/v1" and /rerank.
_API_PATHS = sorted({d.value for d in Dialect} | set(SPELLINGS), key=len, reverse=True)


def split_model_path(path: str) -> tuple[str, str] | None:
    """``(model, path to route)`` for ``/models/<model><rerank path>``, else None (pure)."""
    if not path.startswith(PREFIX):
        return None
    rest = path[len(PREFIX):]
    for api in _API_PATHS:
        # A base URL given with a trailing slash: /models/minilm//rerank.
        model = rest[:-len(api)].rstrip("/") if rest.endswith(api) else ""
        if model:
            return model, SPELLINGS.get(api, api)
    return None


def path_model(scope: Scope) -> str | None:
    """The model the request's path names, if it names one."""
    found = (scope.get("state") or {}).get(PATH_MODEL)
    return str(found) if found is not None else None


class ModelInPath:
    """Routes ``/models/<name>/<rerank path>`` as the rerank path, the name in scope state.
    Goes inside PathNormalizer (prefix and trailing slash already taken off)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and (found := split_model_path(scope["path"])) is not None:
            model, path = found
            state = scope.setdefault("state", {})
            state.setdefault(SENT_PATH, scope["path"])  # what a 404 names: what was sent
            state[PATH_MODEL] = model
            scope = {**scope, "path": path, "raw_path": path.encode("latin-1", "replace")}
        await self.app(scope, receive, send)


MODEL_PARAMETER = {
    "name": "model", "in": "path", "required": True, "schema": {"type": "string"},
    "description": "The served name or alias of the model to rank with (a `/` in it as is, or "
                   "as %2F); a body naming another model is 422 model_mismatch.",
}


def document_model_paths(app: FastAPI) -> None:
    """List ``/models/{model}<rerank path>`` in ``app.openapi()`` beside each rerank path: a
    client generated from the document could not reach a model by path."""

    def edit(document: dict[str, Any]) -> None:
        paths = document["paths"]
        for dialect in Dialect:
            if dialect.value not in paths:
                continue
            item = copy.deepcopy(paths[dialect.value])
            for operation in item.values():
                operation["operationId"] = f"{operation['operationId']}_model_in_path"
                operation["parameters"] = [*operation.get("parameters", []), MODEL_PARAMETER]
            paths[f"{PREFIX}{{model}}{dialect.value}"] = item

    amend_openapi(app, edit)
