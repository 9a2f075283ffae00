"""The runtime driven by a real client library: Cohere's Python SDK (v2 and v1 clients).

Applications that already call Cohere point `base_url` at kuberank and keep their code; this
checks that the SDK parses our answers into its own types and maps our errors onto its own
exception classes, on loopback against the real `kuberank-runtime` process.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import cohere
import httpx
import pytest
from cohere.core.api_error import ApiError
from serverkit import Server, running

pytestmark = pytest.mark.runtime

SERVED = "tiny"
DOCS = ["hi", "it is a bear", "The giant panda (Ailuropoda melanoleuca) is a bear of China."]
QUERY = "What is a panda?"


@pytest.fixture(scope="module")
def server(tiny_model: Path) -> Iterator[Server]:
    with running(tiny_model, "--max-documents", "3", env={"KUBERANK_SERVED_NAME": SERVED}) as srv:
        yield srv


@pytest.fixture
def v2(server: Server) -> cohere.ClientV2:
    return cohere.ClientV2(api_key="unused-by-the-runtime", base_url=server.url, timeout=60)


def test_v2_client_reads_results_sorted_and_cut_to_top_n(v2: cohere.ClientV2,
                                                         server: Server) -> None:
    answer = v2.rerank(model=SERVED, query=QUERY, documents=DOCS, top_n=2)
    raw = server.client.post("/v2/rerank", json={"model": SERVED, "query": QUERY,
                                                 "documents": DOCS}).json()
    expected = [(r["index"], r["relevance_score"]) for r in raw["results"]][:2]
    assert [(r.index, r.relevance_score) for r in answer.results] == expected
    assert all(0.0 < r.relevance_score < 1.0 for r in answer.results)  # Cohere's [0, 1] scale
    assert answer.meta is not None and answer.meta.tokens is not None
    assert answer.meta.tokens.input_tokens is not None and answer.meta.tokens.input_tokens > 0


def test_v2_client_max_tokens_per_doc_evaluates_fewer_tokens(v2: cohere.ClientV2) -> None:
    whole = v2.rerank(model=SERVED, query=QUERY, documents=DOCS)
    cut = v2.rerank(model=SERVED, query=QUERY, documents=DOCS, max_tokens_per_doc=2)
    assert whole.meta is not None and whole.meta.tokens is not None
    assert cut.meta is not None and cut.meta.tokens is not None
    assert cut.meta.tokens.input_tokens is not None and whole.meta.tokens.input_tokens is not None
    assert cut.meta.tokens.input_tokens < whole.meta.tokens.input_tokens
    assert sorted(r.index for r in cut.results) == [0, 1, 2]


def test_v1_client_gets_documents_and_raw_scores_from_v1_rerank(server: Server) -> None:
    v1 = cohere.Client(api_key="unused-by-the-runtime", base_url=server.url, timeout=60)
    answer = v1.rerank(model=SERVED, query=QUERY, documents=DOCS, return_documents=True)
    raw = server.client.post("/v1/rerank", json={"model": SERVED, "query": QUERY,
                                                 "documents": DOCS}).json()
    assert [(r.index, r.relevance_score) for r in answer.results] == [
        (r["index"], r["relevance_score"]) for r in raw["results"]]
    assert [r.document.text if r.document else None for r in answer.results] == [
        DOCS[r.index] for r in answer.results]


@pytest.mark.parametrize(
    ("kwargs", "exception", "code"),
    [
        ({"model": "not-served", "query": QUERY, "documents": DOCS}, cohere.NotFoundError,
         "model_not_found"),
        ({"model": SERVED, "query": QUERY, "documents": []}, cohere.BadRequestError,
         "empty_documents"),
        ({"model": SERVED, "query": QUERY, "documents": [*DOCS, "one too many"]},
         cohere.UnprocessableEntityError, None),
        ({"model": SERVED, "query": "", "documents": DOCS}, cohere.UnprocessableEntityError,
         "empty_query"),
    ],
    ids=["unknown-model-404", "no-documents-400", "too-many-documents-422", "empty-query-422"],
)
def test_v2_client_raises_its_own_exception_for_each_error_status(
    v2: cohere.ClientV2, server: Server, kwargs: dict[str, object],
    exception: type[ApiError], code: str | None,
) -> None:
    with pytest.raises(exception) as caught:
        v2.rerank(**kwargs)  # type: ignore[arg-type]
    body = caught.value.body
    assert isinstance(body, dict) and set(body["error"]) == {"message", "type", "code"}
    if code is not None:
        assert body["error"]["code"] == code
    # the error changed nothing: the next request is answered as before
    assert server.client.get("/health").status_code == httpx.codes.OK
    assert len(v2.rerank(model=SERVED, query=QUERY, documents=DOCS).results) == len(DOCS)
