"""Parse any supported request dialect into one normalized `RerankRequest`.

The runtime and the gateway both parse with `parse_request`, so a body the gateway accepts is a
body the runtime accepts. Token limits need a tokenizer and are left to the engine.
"""

from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal

from kuberank.protocol.errors import BadRequest, Unprocessable
from kuberank.protocol.schemas import (
    READABLE_CHARACTER,
    CohereRequest,
    Document,
    JinaRequest,
    TeiRequest,
    TextObject,
)
from pydantic import ValidationError

# A request with more documents than this is refused even when no limit is configured: it keeps
# a single request from monopolising an engine queue for minutes.
HARD_MAX_DOCUMENTS = 10_000
COHERE_MAX_TOKENS_PER_DOC = 4096  # Cohere's documented default: long documents are cut, not refused


class Dialect(StrEnum):
    """Each dialect is served on its own path; the value is that path."""

    JINA = "/v1/rerank"
    TEI = "/rerank"
    COHERE = "/v2/rerank"


@dataclass(frozen=True)
class RerankRequest:
    """A rerank request, whatever dialect it came in.

    `normalize` None means "the model's default"; `truncate` None means "the server's overflow
    policy", True/False force truncate/reject. `max_tokens_per_doc` always truncates (Cohere),
    past the model's own limits too.
    """

    dialect: Dialect
    query: str
    documents: list[str]
    model: str | None = None  # an empty string is none too: the model the caller gets
    top_n: int | None = None
    return_documents: bool = True
    normalize: bool | None = None
    truncate: bool | None = None
    truncation_direction: Literal["right", "left"] = "right"
    max_tokens_per_doc: int | None = None
    # Fields besides "text" of documents sent as objects, by index: answered with the document.
    extras: Mapping[int, Mapping[str, Any]] = field(default_factory=dict)

    @property
    def documents_field(self) -> str:
        """What the client called the documents, for messages that point at one."""
        return "texts" if self.dialect is Dialect.TEI else "documents"


class _NotJsonError(ValueError):
    """NaN, Infinity or -Infinity: Python's json reads them, RFC 8259 has no such values."""


def _not_json(constant: str) -> Any:
    raise _NotJsonError(constant)


def _finite(literal: str) -> float:
    """A JSON number as a float; one past a double's range (1e999) is no number an answer
    could carry back (an object document's fields are echoed)."""
    value = float(literal)
    if math.isinf(value):
        raise _NotJsonError(f"{literal[:40]} (out of range)")
    return value


def decode_json(raw: bytes) -> Any:
    """Bytes → JSON value; invalid UTF-8 or JSON is the client's malformed request (400)."""
    try:
        text = raw.decode("utf-8-sig")  # a byte order mark may lead (RFC 8259 lets it be read)
    except UnicodeDecodeError as exc:
        raise BadRequest(f"request body is not valid UTF-8 ({exc.reason} at byte {exc.start})",
                         code="invalid_utf8") from None
    try:
        return json.loads(text, parse_constant=_not_json, parse_float=_finite)
    except _NotJsonError as exc:
        raise BadRequest(f"request body is not valid JSON: {exc} is not a JSON value",
                         code="invalid_json") from None
    except json.JSONDecodeError as exc:
        raise BadRequest(f"request body is not valid JSON: {exc}", code="invalid_json") from None
    except RecursionError:
        raise BadRequest("request body is not valid JSON: nested too deeply",
                         code="invalid_json") from None
    except ValueError:  # Python's own bound on integer digits (4300), not a JSON rule
        raise BadRequest("request body is not valid JSON here: a number has more than "
                         f"{sys.get_int_max_str_digits()} digits", code="invalid_json") from None


def parse_request(
    dialect: Dialect, raw: bytes, *, max_documents: int | None = None, count: bool = True
) -> RerankRequest:
    """Validate a raw body of `dialect`; raise BadRequest (400) or Unprocessable (422).
    ``count=False`` leaves the document count to the caller (the gateway knows its limit only
    once it knows the model), so a refusal names the limit that applies."""
    body = decode_json(raw)
    if not isinstance(body, dict):
        raise Unprocessable("request body must be a JSON object")
    try:
        request = _from_wire(_by_fields(dialect, body), body)
    except ValidationError as exc:
        for error in exc.errors():
            if error["type"] == "string_unicode":  # pydantic checks these itself
                loc = error["loc"]
                if len(loc) > 2 and isinstance(loc[1], int):  # a key of a document object
                    raise BadRequest(f"{loc[0]}[{loc[1]}] has a field name that is not valid "
                                     "Unicode (an unpaired surrogate)",
                                     code="invalid_utf8") from None
                raise BadRequest(f"{loc[0]} contains an unpaired surrogate, not valid Unicode",
                                 code="invalid_utf8") from None
        raise Unprocessable(_describe(exc)) from None
    _check(request, max_documents, count)
    return request


def _by_fields(dialect: Dialect, body: Mapping[str, Any]) -> Dialect:
    """The dialect of a body sent to ``/v1/rerank`` or ``/rerank``: as llama-server reads them,
    ``texts`` without ``documents`` is TEI's and ``documents`` without ``texts`` Jina's, so a
    client set up for either path is served on both (and answered in its own shape)."""
    if dialect is Dialect.JINA and "texts" in body and "documents" not in body:
        return Dialect.TEI
    if dialect is Dialect.TEI and "documents" in body and "texts" not in body:
        return Dialect.JINA
    return dialect


def _from_wire(dialect: Dialect, body: dict[str, Any]) -> RerankRequest:
    if dialect is Dialect.JINA:
        jina = JinaRequest.model_validate(body)
        return RerankRequest(
            dialect=dialect, model=jina.model or None, query=jina.query,
            documents=_texts(jina.documents), extras=_extras(jina.documents), top_n=jina.top_n,
            return_documents=jina.return_documents is not False, normalize=jina.normalize,
            truncate=jina.truncate,
        )
    if dialect is Dialect.TEI:
        tei = TeiRequest.model_validate(body)
        direction: Literal["right", "left"] = (
            "left" if tei.truncation_direction.lower() == "left" else "right"
        )
        return RerankRequest(
            dialect=dialect, model=tei.model or None, query=tei.query, documents=list(tei.texts),
            top_n=tei.top_n,
            return_documents=tei.return_text, normalize=not tei.raw_scores,
            truncate=tei.truncate, truncation_direction=direction,
        )
    cohere = CohereRequest.model_validate(body)
    return RerankRequest(
        dialect=dialect, model=cohere.model or None, query=cohere.query,
        documents=_texts(cohere.documents), extras=_extras(cohere.documents), top_n=cohere.top_n,
        return_documents=bool(cohere.return_documents),
        normalize=True if cohere.normalize is None else cohere.normalize,
        max_tokens_per_doc=(COHERE_MAX_TOKENS_PER_DOC if cohere.max_tokens_per_doc is None
                            else cohere.max_tokens_per_doc),
    )


def _texts(documents: list[Document]) -> list[str]:
    return [d if isinstance(d, str) else d.text for d in documents]


def _extras(documents: list[Document]) -> dict[int, dict[str, Any]]:
    """The fields besides ``text`` of the documents sent as objects (an id, a title, ...), by
    index: answered back with each document, as GPUStack and Cohere do."""
    return {i: dict(d.model_extra) for i, d in enumerate(documents)
            if not isinstance(d, str) and d.model_extra}


def check_document_count(count: int, max_documents: int | None) -> None:
    """422 ``too_many_documents`` above ``max_documents`` (capped by ``HARD_MAX_DOCUMENTS``)."""
    limit = min(max_documents or HARD_MAX_DOCUMENTS, HARD_MAX_DOCUMENTS)
    if count > limit:
        raise Unprocessable(
            f"{count} documents exceed the limit of {limit} per request",
            code="too_many_documents",
        )


def _check(request: RerankRequest, max_documents: int | None, count: bool) -> None:
    # A query of only whitespace or control characters tokenizes to nothing, as an empty one
    # does: every document would be scored against no question at all.
    if not re.search(READABLE_CHARACTER, request.query):
        raise Unprocessable("query must contain text (it is empty, or only whitespace or "
                            "control characters)", code="empty_query")
    if not request.documents:
        raise BadRequest(f"{request.documents_field} must not be empty", code="empty_documents")
    # An empty document is ranked like any other (TEI does the same): one empty chunk in a
    # retrieval result must not fail the whole request.
    if count:
        check_document_count(len(request.documents), max_documents)
    if request.top_n is not None and request.top_n < 1:
        raise Unprocessable("top_n must be at least 1", code="invalid_top_n")
    if request.max_tokens_per_doc is not None and request.max_tokens_per_doc < 1:
        raise Unprocessable("max_tokens_per_doc must be at least 1", code="invalid_max_tokens")
    _check_encodable(request)


def _check_encodable(request: RerankRequest) -> None:
    """JSON escapes can smuggle lone surrogates (\\ud800) that no tokenizer can take, nor
    any answer carry back (an object document's other fields are echoed)."""
    texts = [("query", request.query)] + [
        (f"{request.documents_field}[{i}]", d) for i, d in enumerate(request.documents)]
    for where, text in texts:
        if not _encodable(text):
            raise BadRequest(f"{where} contains an unpaired surrogate, not valid Unicode",
                             code="invalid_utf8")
    for i, extra in request.extras.items():
        problem = _echo_problem(extra)
        if problem == "surrogate":
            raise BadRequest(f"{request.documents_field}[{i}] has a field that contains an "
                             "unpaired surrogate, not valid Unicode", code="invalid_utf8")
        if problem == "depth":
            raise Unprocessable(f"{request.documents_field}[{i}] has a field nested more than "
                                f"{MAX_ECHO_DEPTH} levels deep (a document's fields are sent "
                                "back with it)")


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


# An object document's other fields are sent back inside the answer, a few levels deeper than
# they came: the decoder took ~980 levels, the encoder of the answer fewer (a 500).
MAX_ECHO_DEPTH = 64


def _echo_problem(value: Any) -> Literal["surrogate", "depth"] | None:
    """What keeps a decoded JSON value from being sent back: a string, key or value, that is
    no Unicode, or nesting past ``MAX_ECHO_DEPTH`` (walked without recursion)."""
    pending: list[tuple[Any, int]] = [(value, 0)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, str):
            if not _encodable(item):
                return "surrogate"
        elif isinstance(item, dict | list):
            if depth >= MAX_ECHO_DEPTH:
                return "depth"
            children = [*item.keys(), *item.values()] if isinstance(item, dict) else item
            pending.extend((child, depth + 1) for child in children)
    return None


# Pydantic tags each failed branch of ``Document`` (str | TextObject) with the branch's name.
_DOCUMENT_BRANCHES = frozenset({"str", TextObject.__name__})


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, dict):
        return "an object without a string 'text'"
    return "an array" if isinstance(value, list) else type(value).__name__


def _where(loc: tuple[int | str, ...]) -> str:
    """A field's path as a client writes it: ``texts[1]``, ``documents[0].text``."""
    where = ""
    for part in loc:
        where += f"[{part}]" if isinstance(part, int) else f".{part}" if where else str(part)
    return where or "body"


def _describe(exc: ValidationError) -> str:
    """The first problem in words a client can act on, plus how many more there are.

    A document that is neither a string nor ``{"text": ...}`` fails both union branches; that is
    one problem, said once ("documents[1] must be ..."), not two pydantic messages.
    """
    problems: list[str] = []
    seen_documents: set[tuple[Any, ...]] = set()
    for error in exc.errors():
        loc = error["loc"]
        if len(loc) >= 3 and loc[2] in _DOCUMENT_BRANCHES:
            if loc[:2] in seen_documents:
                continue
            seen_documents.add(loc[:2])
            # The str branch comes first and carries the document itself as its input.
            got = _json_kind(error["input"]) if loc[2] == "str" else "another value"
            problems.append(f"{loc[0]}[{loc[1]}] must be a string or an object with a string "
                            f"'text', got {got}")
        else:
            problems.append(f"{_where(loc)}: {error['msg']}")
    more = len(problems) - 1
    return problems[0] + (f" (and {more} more error{'s' if more > 1 else ''})" if more else "")
