"""Wire models of the three dialects: requests, strict so that wrong JSON types are 422s, and
the answers, which document the API (OpenAPI) and let tests check what shaping builds.

Strict mode keeps `"top_n": "3"` or `"query": 5` from being coerced silently; unknown fields are
ignored because real clients send extras (`"encoding_format"`, `"rank_fields"`, ...). Answers are
TypedDicts: a key such as `document` is either present or absent, never null.
"""

from __future__ import annotations

from typing import Literal, NotRequired

from pydantic import BaseModel, ConfigDict, Field, with_config
from pydantic.config import JsonDict
from typing_extensions import TypedDict


class _Wire(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")


class TextObject(_Wire):
    """A document as an object: fields besides ``text`` (an id, a title, ...) are answered back
    with it, as GPUStack and Cohere do, so results can be matched without their index."""

    model_config = ConfigDict(extra="allow")  # merged with _Wire's: strict still
    text: str


Document = str | TextObject

# Refused by the checks after parsing, with their own codes (400 empty_documents, 422
# invalid_top_n, empty_query), and stated in the schema so that a body it admits is served (but
# for a query of only invisible characters, such as a zero-width space: no token, a 422 too).
# The pattern is ECMA-262's (JSON Schema's), whose \S is not Python's: a character that is no
# whitespace to str.strip, spelled out.
NON_EMPTY_TEXT: JsonDict = {
    "pattern": "[^\t\n\v\f\r \x1c-\x1f\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"}
# Lists stop at their first bad item: a body of a million wrong documents costs one error.
AT_LEAST_ONE: JsonDict = {"minimum": 1}


MODEL = "Served name of the model; a runtime serves one and may be called without it."
TOP_N = "Return only the n best results (default: all)."
NORMALIZE = ("Scores as sigmoid probabilities in [0, 1] instead of the raw classifier output "
             "(default: the model's spec.scoring.normalize).")
TRUNCATE = ("Shorten pairs over the token limits (true) or refuse them with 413 (false); "
            "default: the model's spec.limits.overflow.")
DOCUMENTS = ("Texts to rank, as strings or {\"text\": ...} objects (whose other fields come back "
             "with the document).")


class JinaRequest(_Wire):
    """POST /v1/rerank (Jina / GPUStack / llama-server)."""

    model: str | None = Field(default=None, description=MODEL)
    query: str = Field(json_schema_extra=NON_EMPTY_TEXT)
    documents: list[Document] = Field(description=DOCUMENTS, fail_fast=True,
                                      json_schema_extra={"minItems": 1})
    top_n: int | None = Field(default=None, description=TOP_N, json_schema_extra=AT_LEAST_ONE)
    # null is the default, as for every optional field here: generated clients send nulls.
    return_documents: bool | None = Field(
        default=True, description="Include each document in its result (null: true).")
    normalize: bool | None = Field(default=None, description=NORMALIZE)
    truncate: bool | None = Field(default=None, description=TRUNCATE)


class TeiRequest(_Wire):
    """POST /rerank (text-embeddings-inference). TEI returns sigmoid scores unless raw_scores."""

    model: str | None = Field(default=None, description=MODEL)
    query: str = Field(json_schema_extra=NON_EMPTY_TEXT)
    texts: list[str] = Field(description="Texts to rank.", fail_fast=True,
                             json_schema_extra={"minItems": 1})
    top_n: int | None = Field(default=None, description="Return only the n best results "
                              "(llama-server takes it in this body; TEI has no such field).",
                              json_schema_extra=AT_LEAST_ONE)
    return_text: bool = Field(default=False, description="Include each text in its result.")
    raw_scores: bool = Field(default=False,
                             description="Raw classifier output instead of sigmoid probabilities.")
    truncate: bool | None = Field(default=None, description=TRUNCATE)
    # TEI's spelling in the document; lower case is read too. Both in its enum crashed client
    # generators that name enum members by upper-cased value (openapi-python-client).
    truncation_direction: Literal["right", "left", "Right", "Left"] = Field(
        default="Right", description="Which end of a too-long text is cut off (right and left "
        "in lower case are read too).", json_schema_extra={"enum": ["Right", "Left"]})


class CohereRequest(_Wire):
    """POST /v2/rerank (Cohere v2). Cohere documents scores in [0, 1], hence normalize default."""

    model: str | None = Field(default=None, description=MODEL)
    query: str = Field(json_schema_extra=NON_EMPTY_TEXT)
    documents: list[Document] = Field(description=DOCUMENTS, fail_fast=True,
                                      json_schema_extra={"minItems": 1})
    top_n: int | None = Field(default=None, description=TOP_N, json_schema_extra=AT_LEAST_ONE)
    max_tokens_per_doc: int | None = Field(
        default=None, description="Cut each document to this many tokens (default 4096, as at "
        "Cohere), and to the model's own limits, whatever its overflow policy: as at Cohere, a "
        "long document is never a 413.", json_schema_extra=AT_LEAST_ONE)
    return_documents: bool | None = Field(
        default=False, description="Include each document in its result (null: false).")
    normalize: bool | None = Field(default=None, description="Scores as sigmoid probabilities "
                                   "(default true, as Cohere's are in [0, 1]).")


# -- answers ----------------------------------------------------------------------------------

closed = with_config(ConfigDict(extra="forbid"))  # an undocumented key fails the checks


@with_config(ConfigDict(extra="allow"))
class DocumentText(TypedDict):
    """The document as sent: its text, and the other fields of a document sent as an object."""

    text: str


@closed
class RankedDocument(TypedDict):
    """One result of the Jina/GPUStack and Cohere v2 answers (the same shape in both)."""

    index: int
    relevance_score: float
    document: NotRequired[DocumentText]


@closed
class Usage(TypedDict):
    prompt_tokens: int
    total_tokens: int


@closed
class JinaResponse(TypedDict):
    """Results sorted by score, cut to top_n; `index` points into the request's documents."""

    model: str
    object: Literal["list"]
    results: list[RankedDocument]
    usage: Usage


@closed
class TeiResult(TypedDict):
    index: int
    score: float
    text: NotRequired[str]


@closed
class CohereApiVersion(TypedDict):
    version: str


@closed
class CohereBilledUnits(TypedDict):
    search_units: int


@closed
class CohereTokens(TypedDict):
    input_tokens: int
    output_tokens: int


@closed
class CohereMeta(TypedDict):
    api_version: CohereApiVersion
    billed_units: CohereBilledUnits
    tokens: CohereTokens


@closed
class CohereResponse(TypedDict):
    """`id` is the request's x-request-id."""

    id: str
    results: list[RankedDocument]
    meta: CohereMeta


@closed
class ErrorDetail(TypedDict):
    message: str
    type: str
    code: str


@closed
class ErrorResponse(TypedDict):
    """Every error, whichever process answered it."""

    error: ErrorDetail
    detail: str  # error.message again, where Jina's clients look for it
