"""Turn per-document scores into each dialect's response body (pure)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from kuberank.protocol.dialects import Dialect, RerankRequest

# The tokens evaluated, on every answer of a runtime: TEI's bare-list body has no usage field,
# and the gateway charges tokens/minute limits from it.
PROMPT_TOKENS_HEADER = "x-prompt-tokens"
# Sent by the gateway when it will try another replica if this one refuses: a refusal it will
# not pass on holds no place in the refusing runtime's queue (see runtime/backlog.Promises).
ANOTHER_REPLICA_HEADER = "x-kuberank-another-replica"


@dataclass(frozen=True)
class Ranked:
    index: int
    score: float


def sigmoid(x: float) -> float:
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    z = math.exp(x)
    return z / (1.0 + z)


def rank(scores: list[float], top_n: int | None) -> list[Ranked]:
    """Best first; ties keep request order; a top_n beyond the list length returns all."""
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    if top_n is not None:
        order = order[:top_n]
    return [Ranked(i, scores[i]) for i in order]


def shape_response(
    request: RerankRequest,
    scores: list[float],
    *,
    model: str,
    prompt_tokens: int,
    response_id: str,
    normalize_default: bool = False,
) -> Any:
    """The JSON body for `request.dialect` given raw scores (one per document, request order);
    `response_id` (the request's x-request-id) is the Cohere answer's `id`."""
    normalize = normalize_default if request.normalize is None else request.normalize
    # Ranked on the raw scores: a sigmoid rounds every raw score above ~36.7 to exactly 1.0,
    # and those would tie (request order, and the wrong ones cut by top_n).
    ranked = rank(scores, request.top_n)
    if normalize:
        ranked = [Ranked(r.index, sigmoid(r.score)) for r in ranked]
    docs = request.documents
    if request.dialect is Dialect.TEI:
        return [
            {"index": r.index, "score": r.score}
            | ({"text": docs[r.index]} if request.return_documents else {})
            for r in ranked
        ]
    results = [
        {"index": r.index, "relevance_score": r.score}
        | ({"document": {"text": docs[r.index], **request.extras.get(r.index, {})}}
           if request.return_documents else {})
        for r in ranked
    ]
    if request.dialect is Dialect.COHERE:
        return {
            "id": response_id,
            "results": results,
            "meta": {
                "api_version": {"version": "2"},
                # Cohere bills one search unit per query and up to 100 documents.
                "billed_units": {"search_units": -(-len(docs) // 100)},
                "tokens": {"input_tokens": prompt_tokens, "output_tokens": 0},
            },
        }
    return {
        "model": model,
        "object": "list",
        "results": results,
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
    }
