import json
from typing import Any

import jsonschema
import pytest
from kuberank.protocol.dialects import (
    HARD_MAX_DOCUMENTS,
    MAX_ECHO_DEPTH,
    Dialect,
    RerankRequest,
    parse_request,
)
from kuberank.protocol.errors import ApiError, BadRequest, Unprocessable
from kuberank.protocol.schemas import CohereRequest, JinaRequest, TeiRequest

pytestmark = pytest.mark.unit


def body(**fields: Any) -> bytes:
    return json.dumps(fields).encode()


def test_jina_request_accepts_strings_and_text_objects() -> None:
    req = parse_request(Dialect.JINA, body(model="m", query="q", top_n=2,
                                           documents=["a", {"text": "b"}]))
    assert req == RerankRequest(dialect=Dialect.JINA, model="m", query="q",
                                documents=["a", "b"], top_n=2)


def test_the_other_fields_of_object_documents_are_kept_for_the_answer() -> None:
    docs = ["a", {"text": "b", "id": 7, "meta": {"lang": "en"}}, {"text": "c"}]
    for dialect in (Dialect.JINA, Dialect.COHERE):
        req = parse_request(dialect, body(query="q", documents=docs))
        assert req.documents == ["a", "b", "c"]
        assert req.extras == {1: {"id": 7, "meta": {"lang": "en"}}}


@pytest.mark.parametrize("dialect", list(Dialect))
def test_an_empty_model_is_no_model_as_at_the_gateway(dialect: Dialect) -> None:
    field = "texts" if dialect is Dialect.TEI else "documents"
    assert parse_request(dialect, body(model="", query="q", **{field: ["a"]})).model is None


@pytest.mark.parametrize(("path", "fields", "read_as"), [
    (Dialect.JINA, {"texts": ["a"]}, Dialect.TEI),
    (Dialect.TEI, {"documents": ["a"]}, Dialect.JINA),
    (Dialect.JINA, {"documents": ["a"], "texts": ["b"]}, Dialect.JINA),
    (Dialect.TEI, {"documents": ["a"], "texts": ["b"]}, Dialect.TEI),
    (Dialect.COHERE, {"documents": ["a"], "texts": ["b"]}, Dialect.COHERE),
])
def test_jina_and_tei_paths_read_either_body_as_llama_server_does(
    path: Dialect, fields: dict[str, Any], read_as: Dialect,
) -> None:
    assert parse_request(path, body(query="q", **fields)).dialect is read_as


def test_cohere_never_reads_texts() -> None:
    with pytest.raises(Unprocessable, match="documents: Field required"):
        parse_request(Dialect.COHERE, body(query="q", texts=["a"]))


def test_jina_defaults_return_documents_and_leave_normalize_to_the_model() -> None:
    req = parse_request(Dialect.JINA, body(query="q", documents=["a"]))
    assert req.return_documents is True
    assert req.normalize is None
    assert req.truncate is None


def test_tei_maps_texts_return_text_raw_scores_and_truncation() -> None:
    req = parse_request(Dialect.TEI, body(query="q", texts=["a", "b"], return_text=True,
                                          raw_scores=True, truncate=False,
                                          truncation_direction="Left"))
    assert req.documents == ["a", "b"]
    assert req.return_documents is True
    assert req.normalize is False
    assert req.truncate is False
    assert req.truncation_direction == "left"


def test_tei_bodies_take_top_n_as_llama_server_does() -> None:
    assert parse_request(Dialect.TEI, body(query="q", texts=["a"], top_n=1)).top_n == 1
    assert parse_request(Dialect.JINA, body(query="q", texts=["a"], top_n=1)).top_n == 1
    with pytest.raises(Unprocessable):
        parse_request(Dialect.TEI, body(query="q", texts=["a"], top_n=0))


def test_tei_scores_are_sigmoid_unless_raw_scores() -> None:
    assert parse_request(Dialect.TEI, body(query="q", texts=["a"])).normalize is True


def test_cohere_reads_max_tokens_per_doc_and_omits_documents_by_default() -> None:
    req = parse_request(Dialect.COHERE, body(model="m", query="q", documents=[{"text": "a"}],
                                             max_tokens_per_doc=7))
    assert req.max_tokens_per_doc == 7
    assert req.return_documents is False
    assert req.normalize is True


@pytest.mark.parametrize("raw", [
    b"{not json", b"", b"[1,", b"\"unterminated",
    b'{"query": "q", "documents": ["a"], "top_n": 1' + b"0" * 5000 + b"}",  # past int's limit
    b'{"query": "q", "documents": ["a"], "top_n": NaN}',  # Python reads it; JSON has no NaN
    b'{"query": "q", "documents": ["a"], "x": -Infinity}',
    # a double's range: an object document's fields are echoed, and no JSON can say inf
    b'{"query": "q", "documents": [{"text": "a", "score": 1e999}]}',
    b'{"query": "q", "documents": ["a"], "x": -1.5e400}',
])
def test_malformed_json_is_400(raw: bytes) -> None:
    with pytest.raises(BadRequest) as info:
        parse_request(Dialect.JINA, raw)
    assert info.value.status == 400
    assert info.value.code == "invalid_json"


@pytest.mark.parametrize(("raw", "message"), [
    (rb'{"query": "q", "documents": ["b", {"text": "a", "m": {"d": ["\udc00"]}}]}',
     "documents[1] has a field that contains an unpaired surrogate"),
    (rb'{"query": "q", "documents": [{"text": "a", "m": {"\ud800": 1}}]}',
     "documents[0] has a field that contains an unpaired surrogate"),
    (rb'{"query": "q", "documents": [{"text": "a", "\ud800x": 1}]}',
     "documents[0] has a field name that is not valid Unicode"),
])
def test_an_unpaired_surrogate_anywhere_in_an_echoed_document_is_400(
    raw: bytes, message: str,
) -> None:
    """Its other fields are answered back: a string no answer can encode is refused up front."""
    for dialect in (Dialect.JINA, Dialect.COHERE):
        with pytest.raises(BadRequest) as info:
            parse_request(dialect, raw)
        assert info.value.code == "invalid_utf8" and message in info.value.message


def test_an_unpaired_surrogate_in_a_checked_value_names_the_field() -> None:
    raw = rb'{"query": "q", "texts": ["a"], "truncation_direction": "\ud800"}'
    with pytest.raises(BadRequest) as info:
        parse_request(Dialect.TEI, raw)
    assert info.value.code == "invalid_utf8"
    assert info.value.message.startswith("truncation_direction contains an unpaired surrogate")


def test_paired_surrogates_in_an_echoed_document_are_fine() -> None:
    raw = rb'{"query": "q", "documents": [{"text": "a", "\ud83d\udc3c": ["\ud83d\udc3c"]}]}'
    assert parse_request(Dialect.JINA, raw).extras == {0: {"\U0001f43c": ["\U0001f43c"]}}


def test_invalid_utf8_is_400() -> None:
    with pytest.raises(BadRequest) as info:
        parse_request(Dialect.JINA, b'{"query": "\xff\xfe", "documents": ["a"]}')
    assert info.value.code == "invalid_utf8"


def test_lone_surrogate_escape_is_400() -> None:
    with pytest.raises(BadRequest) as info:
        parse_request(Dialect.JINA, b'{"query": "q", "documents": ["\\ud800"]}')
    assert info.value.code == "invalid_utf8"


def test_deeply_nested_json_is_400_not_a_crash() -> None:
    with pytest.raises(BadRequest):
        parse_request(Dialect.JINA, b"[" * 100_000 + b"]" * 100_000)


def test_empty_documents_list_is_400_in_the_clients_own_words() -> None:
    with pytest.raises(BadRequest) as info:
        parse_request(Dialect.JINA, body(query="q", documents=[]))
    assert info.value.code == "empty_documents"
    assert info.value.message == "documents must not be empty"
    with pytest.raises(BadRequest) as tei:
        parse_request(Dialect.TEI, body(query="q", texts=[]))
    assert tei.value.message == "texts must not be empty"
    with pytest.raises(BadRequest, match=r"^texts\[1\] contains an unpaired surrogate"):
        parse_request(Dialect.TEI, b'{"query": "q", "texts": ["a", "\\ud800"]}')


def test_empty_string_documents_are_ranked_like_any_other() -> None:
    for dialect, field in ((Dialect.JINA, "documents"), (Dialect.TEI, "texts"),
                           (Dialect.COHERE, "documents")):
        parsed = parse_request(dialect, body(query="q", **{field: ["a", "", " "]}))
        assert parsed.documents == ["a", "", " "]


def test_cohere_cuts_long_documents_by_default_as_cohere_does() -> None:
    assert parse_request(Dialect.COHERE, body(query="q", documents=["a"])).max_tokens_per_doc \
        == 4096
    assert parse_request(Dialect.COHERE, body(query="q", documents=["a"],
                                              max_tokens_per_doc=None)).max_tokens_per_doc == 4096
    assert parse_request(Dialect.COHERE, body(query="q", documents=["a"],
                                              max_tokens_per_doc=9)).max_tokens_per_doc == 9
    assert parse_request(Dialect.JINA, body(query="q", documents=["a"])).max_tokens_per_doc \
        is None


@pytest.mark.parametrize("dialect", list(Dialect))
def test_a_whole_number_written_with_a_fraction_is_that_integer(dialect: Dialect) -> None:
    """JSON has one number type: JSON Schema (and so the OpenAPI document) reads 2.0 as the
    integer 2; 2.5 stays a 422 (above)."""
    field = "texts" if dialect is Dialect.TEI else "documents"
    extra = {"max_tokens_per_doc": 16.0} if dialect is Dialect.COHERE else {}
    req = parse_request(dialect, body(query="q", top_n=2.0, **{field: ["a", "b", "c"]}, **extra))
    assert req.top_n == 2 and isinstance(req.top_n, int)
    if dialect is Dialect.COHERE:
        assert req.max_tokens_per_doc == 16 and isinstance(req.max_tokens_per_doc, int)


@pytest.mark.parametrize(
    "fields",
    [
        {"documents": ["a"]},  # missing query
        {"query": "q"},  # missing documents
        {"query": 5, "documents": ["a"]},
        {"query": "q", "documents": "a"},
        {"query": "q", "documents": [1, 2]},
        {"query": "q", "documents": [None]},
        {"query": "q", "documents": [{"content": "a"}]},
        {"query": "q", "documents": ["a"], "top_n": "2"},
        {"query": "q", "documents": ["a"], "top_n": True},
        {"query": "q", "documents": ["a"], "top_n": 1.5},
        {"query": "q", "documents": ["a"], "return_documents": "yes"},
        {"query": "", "documents": ["a"]},
        {"query": " \t\n\u3000", "documents": ["a"]},
    ],
)
def test_schema_violations_are_422(fields: dict[str, Any]) -> None:
    with pytest.raises(Unprocessable):
        parse_request(Dialect.JINA, body(**fields))


def test_an_empty_or_blank_query_says_so() -> None:
    for query in ("", "  \n", "\u0007\u0082"):
        with pytest.raises(Unprocessable) as info:
            parse_request(Dialect.COHERE, body(query=query, documents=["a"]))
        assert (info.value.code, info.value.message) == (
            "empty_query",
            "query must contain text (it is empty, or only whitespace or control characters)")


@pytest.mark.parametrize(
    ("document", "got"),
    [
        (None, "null"),
        (7, "a number"),
        (True, "a boolean"),
        (["a"], "an array"),
        ({"content": "a"}, "an object without a string 'text'"),
        ({"text": 3}, "an object without a string 'text'"),
    ],
)
def test_a_bad_document_is_named_once_with_what_was_sent(document: Any, got: str) -> None:
    with pytest.raises(Unprocessable) as info:
        parse_request(Dialect.JINA, body(query="q", documents=["ok", document]))
    assert info.value.message == (
        f"documents[1] must be a string or an object with a string 'text', got {got}"
    )


def test_several_problems_are_counted_not_listed() -> None:
    with pytest.raises(Unprocessable) as info:
        parse_request(Dialect.COHERE, body(query=5, documents=[None, 1], top_n="2"))
    # (documents: only the first bad one, as a list stops at its first)
    assert info.value.message == "query: Input should be a valid string (and 2 more errors)"
    with pytest.raises(Unprocessable) as info:
        parse_request(Dialect.JINA, body(query="q", documents=["a"], top_n="2", normalize=1))
    assert info.value.message.endswith("(and 1 more error)")


def test_a_list_of_wrong_documents_is_refused_at_its_first() -> None:
    """Validation stops at the first bad item: a body of a million wrong documents costs one
    error, not a million (it took seconds of CPU and gigabytes while others waited)."""
    for dialect, field in ((Dialect.JINA, "documents"), (Dialect.COHERE, "documents"),
                           (Dialect.TEI, "texts")):
        with pytest.raises(Unprocessable) as info:
            parse_request(dialect, body(query="q", **{field: ["ok"] + [7] * 200_000}))
        assert "more error" not in info.value.message
        assert info.value.message.startswith(f"{field}[1]"), info.value.message


def test_a_documents_fields_nested_past_what_an_answer_carries_back_are_422() -> None:
    """They are echoed a few levels deeper than they came; the decoder allowed ~980 levels,
    the answer's encoder fewer, and the request got a 500."""
    def nested(depth: int) -> bytes:
        return (b'{"query": "q", "documents": ["a", {"text": "b", "x": ' + b"[" * depth
                + b"]" * depth + b"}]}")

    assert parse_request(Dialect.JINA, nested(MAX_ECHO_DEPTH - 1)).extras[1]["x"]
    for dialect in (Dialect.JINA, Dialect.COHERE):
        with pytest.raises(Unprocessable) as info:
            parse_request(dialect, nested(MAX_ECHO_DEPTH))
        assert info.value.message.startswith("documents[1] has a field nested more than")
    deep_elsewhere = b'{"query": "q", "documents": ["a"], "x": ' + b"[" * 500 + b"]" * 500 + b"}"
    assert parse_request(Dialect.JINA, deep_elsewhere).documents == ["a"]  # not sent back


@pytest.mark.parametrize(("model", "field"), [
    (JinaRequest, "documents"), (CohereRequest, "documents"), (TeiRequest, "texts")])
def test_the_request_schema_admits_no_body_the_checks_refuse(model: Any, field: str) -> None:
    schema = jsonschema.Draft202012Validator(model.model_json_schema())
    schema.validate({"query": "q", field: ["a"], "top_n": 1})
    refused = [{"query": "", field: ["a"]}, {"query": " \n\t", field: ["a"]},
               {"query": "\u001f\u3000\u0085", field: ["a"]},
               {"query": "\u0082\u0007\u009f\u0000", field: ["a"]},  # control characters
               {"query": "q", field: []}, {"query": "q", field: ["a"], "top_n": 0}]
    if model is CohereRequest:
        refused.append({"query": "q", field: ["a"], "max_tokens_per_doc": 0})
    for bad in refused:
        with pytest.raises(ApiError):
            parse_request(Dialect.TEI if model is TeiRequest else
                          Dialect.COHERE if model is CohereRequest else Dialect.JINA,
                          json.dumps(bad).encode())
        assert not schema.is_valid(bad), bad


@pytest.mark.parametrize("raw", [b"[]", b"42", b"null", b'"q"'])
def test_non_object_body_is_422(raw: bytes) -> None:
    with pytest.raises(Unprocessable):
        parse_request(Dialect.JINA, raw)


@pytest.mark.parametrize("top_n", [0, -1])
def test_non_positive_top_n_is_422(top_n: int) -> None:
    with pytest.raises(Unprocessable) as info:
        parse_request(Dialect.JINA, body(query="q", documents=["a"], top_n=top_n))
    assert info.value.code == "invalid_top_n"


def test_huge_top_n_is_accepted() -> None:
    req = parse_request(Dialect.JINA, body(query="q", documents=["a"], top_n=10**30))
    assert req.top_n == 10**30


def test_more_documents_than_the_limit_is_422() -> None:
    with pytest.raises(Unprocessable) as info:
        parse_request(Dialect.JINA, body(query="q", documents=["a"] * 11), max_documents=10)
    assert info.value.code == "too_many_documents"
    assert parse_request(Dialect.JINA, body(query="q", documents=["a"] * 10), max_documents=10)


def test_hard_document_cap_applies_without_a_configured_limit() -> None:
    with pytest.raises(Unprocessable):
        parse_request(Dialect.JINA, body(query="q", documents=["a"] * (HARD_MAX_DOCUMENTS + 1)))


def test_cohere_non_positive_max_tokens_per_doc_is_422() -> None:
    with pytest.raises(Unprocessable):
        parse_request(Dialect.COHERE, body(query="q", documents=["a"], max_tokens_per_doc=0))


def test_every_error_is_an_api_error_with_a_message() -> None:
    with pytest.raises(ApiError) as info:
        parse_request(Dialect.TEI, body(query="q", texts=[{"text": "a"}]))
    assert "texts" in info.value.message


@pytest.mark.parametrize(("dialect", "expected"), [(Dialect.JINA, True), (Dialect.COHERE, False)])
def test_null_return_documents_means_the_dialects_default(dialect: Dialect, expected: bool) -> None:
    req = parse_request(dialect, body(query="q", documents=["a"], return_documents=None))
    assert req.return_documents is expected


def test_a_leading_byte_order_mark_is_read_past() -> None:
    """Windows tools write one; RFC 8259 lets a parser ignore it. Only leading, only once."""
    raw = "\ufeff".encode() + body(query="q", documents=["a"])
    assert parse_request(Dialect.JINA, raw).documents == ["a"]
    with pytest.raises(BadRequest):
        parse_request(Dialect.JINA, "\ufeff".encode() + raw)
