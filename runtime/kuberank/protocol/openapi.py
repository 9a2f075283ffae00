"""The rerank endpoints in the OpenAPI document (``/openapi.json``, ``/docs``).

Their bodies are read and parsed by hand (size cap first, one parser for runtime and gateway),
so FastAPI cannot infer request or answer schemas; this module states them from the wire models.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

from fastapi import FastAPI
from kuberank.protocol.dialects import Dialect
from kuberank.protocol.errors import ApiError
from kuberank.protocol.requestid import HEADER as REQUEST_ID_HEADER
from kuberank.protocol.schemas import (
    CohereRequest,
    CohereResponse,
    ErrorResponse,
    JinaRequest,
    JinaResponse,
    TeiRequest,
    TeiResult,
)
from pydantic import BaseModel

REQUESTS: dict[Dialect, type[BaseModel]] = {
    Dialect.JINA: JinaRequest, Dialect.TEI: TeiRequest, Dialect.COHERE: CohereRequest,
}
ANSWERS: dict[Dialect, Any] = {
    Dialect.JINA: JinaResponse, Dialect.TEI: list[TeiResult], Dialect.COHERE: CohereResponse,
}
# As llama-server reads them, each of these paths takes the other's body too, and answers it in
# that body's shape (``dialects._by_fields``).
ALSO_READS: dict[Dialect, Dialect] = {Dialect.JINA: Dialect.TEI, Dialect.TEI: Dialect.JINA}
LABELS = {Dialect.JINA: "Jina", Dialect.TEI: "TEI", Dialect.COHERE: "Cohere"}
ERROR_DESCRIPTIONS = {
    400: "Malformed JSON or UTF-8, or no documents.",
    401: "Missing, unknown, expired or disabled API key.",
    403: "The API key may not use this model.",
    404: "No such model.",
    408: "The client sent no more of the body for the read timeout.",
    413: "Body over the size limit, or a pair too long where truncation is refused.",
    415: "A Content-Encoding other than gzip, deflate or identity.",
    422: "A field of the wrong type or value, or more documents than allowed.",
    429: "Rate limit of the key, or the model's queue, is full; see Retry-After.",
    500: "A fault of the server, not of the request (the engine failed to score, say).",
    503: "The model is loading, has no ready replica or is waking up; see Retry-After (absent "
         "for a model scaled to 0 replicas by hand, which does not come back by itself).",
    504: "The model did not answer in time.",
}
REQUEST_ID = {REQUEST_ID_HEADER: {
    "description": "The client's request id when it sent a usable one, else a new one.",
    "schema": {"type": "string"},
}}


RETRY_AFTER = {"Retry-After": {
    "description": "Seconds to wait before trying again.", "schema": {"type": "integer"},
}}
RETRIED = (429, 503)
_FASTAPI_422 = "#/components/schemas/HTTPValidationError"


def rerank_responses(dialect: Dialect, errors: Iterable[type[ApiError]],
                     answer_headers: dict[str, Any] | None = None) -> dict[int | str, Any]:
    """FastAPI ``responses=`` for one dialect: its answer (with ``answer_headers`` besides the
    request id) and the errors this process returns."""
    other = ALSO_READS.get(dialect)
    answer = ANSWERS[dialect] if other is None else ANSWERS[dialect] | ANSWERS[other]
    described = "The documents, best first" + (
        f" (in {LABELS[other]}'s shape for a {LABELS[other]} body)." if other else ".")
    out: dict[int | str, Any] = {
        200: {"model": answer, "description": described,
              "headers": {**REQUEST_ID, **(answer_headers or {})}},
    }
    for error in errors:
        headers = {**REQUEST_ID, **(RETRY_AFTER if error.status in RETRIED else {})}
        out[error.status] = {"model": ErrorResponse, "headers": headers,
                             "description": ERROR_DESCRIPTIONS[error.status]}
    return out


def document_request_bodies(app: FastAPI) -> None:
    """Add each dialect's request body, with its referenced models, to ``app.openapi()``, and
    take out the 422 FastAPI states for every route with a path parameter: its body is not the
    error shape these servers answer, and a GET such as ``/v1/models/{id}`` never answers it."""

    def edit(document: dict[str, Any]) -> None:
        components = document.setdefault("components", {}).setdefault("schemas", {})
        for dialect, model in REQUESTS.items():
            operation = document["paths"].get(dialect.value, {}).get("post")
            if operation is None:
                continue
            read = [model] + ([REQUESTS[ALSO_READS[dialect]]] if dialect in ALSO_READS else [])
            refs = []
            for each in read:
                schema = each.model_json_schema(ref_template="#/components/schemas/{model}")
                components.update(schema.pop("$defs", {}))
                components[each.__name__] = schema
                refs.append({"$ref": f"#/components/schemas/{each.__name__}"})
            body = refs[0] if len(refs) == 1 else {"anyOf": refs}
            operation["requestBody"] = {"required": True, "content": {"application/json": {
                "schema": body}}}
        for item in document["paths"].values():
            for operation in item.values():
                answers = operation.get("responses", {})
                if _FASTAPI_422 in json.dumps(answers.get("422", {})):
                    del answers["422"]
        if _FASTAPI_422 not in json.dumps(document["paths"]):
            components.pop("HTTPValidationError", None)
            components.pop("ValidationError", None)

    amend_openapi(app, edit)


# How the gateway takes a key: either header, as the 401s say.
KEY_SCHEMES = {
    "bearerKey": {"type": "http", "scheme": "bearer",
                  "description": "Authorization: Bearer <API key from the ApiKey's Secret>"},
    "headerKey": {"type": "apiKey", "in": "header", "name": "X-API-Key",
                  "description": "The same key in X-API-Key (Cohere and TEI clients' habit)"},
}


def require_api_keys(app: FastAPI, open_paths: Iterable[str]) -> None:
    """State in ``app.openapi()`` that every operation but those on ``open_paths`` (probes,
    metrics) takes an API key, in either header: clients generated from the document sent
    none, and every call of theirs got 401."""
    unkeyed = set(open_paths)

    def edit(document: dict[str, Any]) -> None:
        document.setdefault("components", {})["securitySchemes"] = KEY_SCHEMES
        for path, item in document["paths"].items():
            if path not in unkeyed:
                for operation in item.values():
                    operation["security"] = [{name: []} for name in KEY_SCHEMES]

    amend_openapi(app, edit)


def amend_openapi(app: FastAPI, edit: Callable[[dict[str, Any]], None]) -> None:
    """Make ``app.openapi()`` apply ``edit`` to the document FastAPI (or an earlier amendment)
    generates, once: the edited document is what every later call serves."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = generate()
            edit(document)
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
