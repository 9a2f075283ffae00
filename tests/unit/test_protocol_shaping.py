import math

import pytest
from kuberank.protocol.dialects import Dialect, RerankRequest
from kuberank.protocol.errors import (
    BadRequest,
    PayloadTooLarge,
    RateLimited,
    Unprocessable,
    UpstreamTimeout,
    error_body,
)
from kuberank.protocol.openapi import ANSWERS
from kuberank.protocol.schemas import ErrorResponse
from kuberank.protocol.shaping import rank, shape_response, sigmoid
from pydantic import TypeAdapter

pytestmark = pytest.mark.unit

DOCS = ["hi", "it is a bear", "The giant panda"]
SCORES = [-6.16, -3.73, 1.95]


def request(dialect: Dialect = Dialect.JINA, **kw: object) -> RerankRequest:
    return RerankRequest(dialect=dialect, query="What is a panda?", documents=DOCS, **kw)  # type: ignore[arg-type]


def test_jina_response_matches_the_gpustack_contract() -> None:
    out = shape_response(request(top_n=3), SCORES, model="m", prompt_tokens=69, response_id="r1")
    assert out == {
        "model": "m",
        "object": "list",
        "results": [
            {"index": 2, "relevance_score": 1.95, "document": {"text": "The giant panda"}},
            {"index": 1, "relevance_score": -3.73, "document": {"text": "it is a bear"}},
            {"index": 0, "relevance_score": -6.16, "document": {"text": "hi"}},
        ],
        "usage": {"prompt_tokens": 69, "total_tokens": 69},
    }


@pytest.mark.parametrize("dialect", [Dialect.JINA, Dialect.COHERE])
def test_a_document_sent_as_an_object_comes_back_with_its_other_fields(dialect: Dialect) -> None:
    extras = {2: {"id": "doc-9", "title": "Pandas"}}
    out = shape_response(request(dialect, extras=extras, return_documents=True), SCORES,
                         model="m", prompt_tokens=3, response_id="r1")
    assert [r["document"] for r in out["results"]] == [
        {"text": "The giant panda", "id": "doc-9", "title": "Pandas"},
        {"text": "it is a bear"}, {"text": "hi"}]
    TypeAdapter(ANSWERS[dialect]).validate_python(out)


def test_top_n_cuts_after_sorting() -> None:
    out = shape_response(request(top_n=1), SCORES, model="m", prompt_tokens=1, response_id="r1")
    assert [r["index"] for r in out["results"]] == [2]


def test_document_is_omitted_not_null_without_return_documents() -> None:
    out = shape_response(request(return_documents=False), SCORES, model="m", prompt_tokens=1,
                         response_id="r1")
    assert all("document" not in r for r in out["results"])


def test_normalize_per_model_and_per_request() -> None:
    by_model = shape_response(request(), SCORES, model="m", prompt_tokens=1, response_id="r1",
                              normalize_default=True)
    assert by_model["results"][0]["relevance_score"] == pytest.approx(sigmoid(1.95))
    request_wins = shape_response(request(normalize=False), SCORES, model="m", prompt_tokens=1,
                                  response_id="r1", normalize_default=True)
    assert request_wins["results"][0]["relevance_score"] == 1.95


@pytest.mark.parametrize("dialect", list(Dialect))
def test_normalized_scores_are_ranked_on_the_raw_scores(dialect: Dialect) -> None:
    """Above ~36.7 a sigmoid is exactly 1.0 in floats: ranked after it, such scores tied, came
    back in request order and top_n kept the wrong ones."""
    out = shape_response(request(dialect, top_n=2, normalize=True, return_documents=False),
                         [40.0, 45.0, 37.0], model="m", prompt_tokens=1, response_id="r1")
    results = out if dialect is Dialect.TEI else out["results"]
    assert [r["index"] for r in results] == [1, 0]
    assert all(0.0 < r.get("score", r.get("relevance_score")) <= 1.0 for r in results)


def test_tei_response_is_a_bare_list_with_optional_text() -> None:
    out = shape_response(request(Dialect.TEI, return_documents=False, normalize=False), SCORES,
                         model="m", prompt_tokens=1, response_id="r1")
    assert out == [{"index": 2, "score": 1.95}, {"index": 1, "score": -3.73},
                   {"index": 0, "score": -6.16}]
    with_text = shape_response(request(Dialect.TEI, return_documents=True, normalize=True), SCORES,
                               model="m", prompt_tokens=1, response_id="r1")
    assert with_text[0]["text"] == "The giant panda"
    assert 0 < with_text[0]["score"] < 1


def test_cohere_response_has_id_results_and_meta() -> None:
    out = shape_response(request(Dialect.COHERE, return_documents=False, top_n=2), SCORES,
                         model="m", prompt_tokens=12, response_id="abc")
    assert out["id"] == "abc"
    assert [r["index"] for r in out["results"]] == [2, 1]
    assert out["meta"]["api_version"] == {"version": "2"}
    assert out["meta"]["tokens"]["input_tokens"] == 12
    assert out["meta"]["billed_units"] == {"search_units": 1}


@pytest.mark.parametrize(("documents", "units"), [(1, 1), (100, 1), (101, 2), (250, 3)])
def test_cohere_bills_a_search_unit_per_hundred_documents(documents: int, units: int) -> None:
    many = RerankRequest(dialect=Dialect.COHERE, query="q", documents=["d"] * documents)
    out = shape_response(many, [0.0] * documents, model="m", prompt_tokens=1, response_id="a")
    assert out["meta"]["billed_units"] == {"search_units": units}


def test_rank_keeps_request_order_on_ties_and_tolerates_huge_top_n() -> None:
    assert [r.index for r in rank([1.0, 2.0, 1.0], 10**30)] == [1, 0, 2]


def test_sigmoid_is_stable_at_extremes() -> None:
    assert sigmoid(-1000.0) == 0.0
    assert sigmoid(1000.0) == 1.0
    assert math.isclose(sigmoid(0.0), 0.5)


def test_error_body_shape_and_statuses() -> None:
    assert error_body(BadRequest("nope", code="invalid_json")) == {
        "error": {"message": "nope", "type": "invalid_request_error", "code": "invalid_json"},
        "detail": "nope",
    }
    assert PayloadTooLarge("x").status == 413
    assert RateLimited("x", retry_after=3).retry_after == 3
    assert UpstreamTimeout("x").status == 504


@pytest.mark.parametrize("dialect", list(Dialect))
@pytest.mark.parametrize("return_documents", [True, False])
def test_every_answer_has_exactly_the_documented_shape(dialect: Dialect,
                                                       return_documents: bool) -> None:
    out = shape_response(request(dialect, return_documents=return_documents, top_n=2), SCORES,
                         model="m", prompt_tokens=3, response_id="r1")
    TypeAdapter(ANSWERS[dialect]).validate_python(out)


def test_error_bodies_have_the_documented_shape() -> None:
    TypeAdapter(ErrorResponse).validate_python(error_body(Unprocessable("top_n: bad")))
