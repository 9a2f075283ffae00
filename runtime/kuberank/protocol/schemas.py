"""Wire models of the three request dialects, strict so that wrong JSON types are 422s.

Strict mode keeps `"top_n": "3"` or `"query": 5` from being coerced silently; unknown fields are
ignored because real clients send extras (`"encoding_format"`, `"rank_fields"`, ...).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _Wire(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")


class TextObject(_Wire):
    text: str


Document = str | TextObject


class JinaRequest(_Wire):
    """POST /v1/rerank (Jina / GPUStack / llama-server)."""

    model: str | None = None
    query: str
    documents: list[Document]
    top_n: int | None = None
    return_documents: bool = True
    normalize: bool | None = None
    truncate: bool | None = None


class TeiRequest(_Wire):
    """POST /rerank (text-embeddings-inference). TEI returns sigmoid scores unless raw_scores."""

    model: str | None = None
    query: str
    texts: list[str]
    return_text: bool = False
    raw_scores: bool = False
    truncate: bool | None = None
    truncation_direction: Literal["right", "left", "Right", "Left"] = "right"


class CohereRequest(_Wire):
    """POST /v2/rerank (Cohere v2). Cohere documents scores in [0, 1], hence normalize default."""

    model: str | None = None
    query: str
    documents: list[Document]
    top_n: int | None = None
    max_tokens_per_doc: int | None = Field(default=None)
    return_documents: bool = False
    normalize: bool | None = None
