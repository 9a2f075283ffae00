"""Wire models of the three dialects: requests, strict so that wrong JSON types are 422s, and
the answers, which document the API (OpenAPI) and let tests check what shaping builds.

Strict mode keeps `"top_n": "3"` or `"query": 5` from being coerced silently (`"top_n": 3.0` is
the integer 3, as JSON Schema reads it); unknown fields are ignored because real clients send
extras (`"encoding_format"`, `"rank_fields"`, ...). Answers are TypedDicts: a key such as
`document` is either present or absent, never null.
"""

from __future__ import annotations

from typing import Annotated, Literal, NotRequired

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, with_config
from pydantic.config import JsonDict
from typing_extensions import TypedDict


def _integral(value: object) -> object:
    """3.0 as 3: JSON has one number type (a client's 3.0 is JSON Schema's integer 3); 3.5,
    "3" and true stay refused by strict mode."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


WholeNumber = Annotated[int, BeforeValidator(_integral)]


class _Wire(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")


class TextObject(_Wire):
    """A document as an object: fields besides ``text`` (an id, a title, ...) are answered back
    with it, as GPUStack and Cohere do, so results can be matched without their index."""

    model_config = ConfigDict(extra="allow")  # merged with _Wire's: strict still
    text: str


Document = str | TextObject

# A character that is neither whitespace to str.strip nor a control character (BERT's text
# cleaning drops those, and llama.cpp's tokenizer with it): a query without one asks nothing.
# Written in escapes that ECMA-262 (JSON Schema's regex) and Python read alike; \S is not the
# same class in both.
READABLE_CHARACTER = (r"[^\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f"
                      r"\u3000]")
# Refused by the checks after parsing, with their own codes (400 empty_documents, 422
# invalid_top_n, empty_query), and stated in the schema so that a body it admits is served (but
# for a query of only other invisible characters, such as a zero-width space, that the model
# reads as no token: a 422 too).
NON_EMPTY_TEXT: JsonDict = {"pattern": READABLE_CHARACTER}
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
    top_n: WholeNumber | None = Field(default=None, description=TOP_N,
                                      json_schema_extra=AT_LEAST_ONE)
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
    top_n: WholeNumber | None = Field(default=None, description="Return only the n best results "
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
    top_n: WholeNumber | None = Field(default=None, description=TOP_N,
                                      json_schema_extra=AT_LEAST_ONE)
    max_tokens_per_doc: WholeNumber | None = Field(
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
