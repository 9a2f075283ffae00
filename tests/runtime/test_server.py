"""The real `kuberank-runtime` process on loopback, driven over HTTP with httpx."""

from __future__ import annotations

import concurrent.futures
import gzip
import http.client
import json
import re
import signal
import socket
import subprocess
import sys
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import jsonschema
import pytest
from openapi_spec_validator import validate
from promtext import sample
from serverkit import RUNTIME, Server, running

pytestmark = pytest.mark.runtime

DOCS = ["hi", "it is a bear", "The giant panda (Ailuropoda melanoleuca) is a bear of China."]


@pytest.fixture(scope="module")
def server(tiny_model: Path) -> Iterator[Server]:
    with running(tiny_model, "--max-documents", "100", "--max-body-bytes", str(12 * 2**20),
                 env={"KUBERANK_SERVED_NAME": "tiny"}) as srv:
        yield srv


@pytest.fixture(scope="module")
def strict_server(tiny_model: Path) -> Iterator[Server]:
    with running(tiny_model, "--overflow", "reject", "--max-document-tokens", "8",
                 "--normalize") as srv:
        yield srv


def rerank(srv: Server, body: object, path: str = "/v1/rerank") -> httpx.Response:
    return srv.client.post(path, json=body)


def assert_error(r: httpx.Response, status: int, code: str | None = None) -> None:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "code"}
    assert err["message"]
    if code is not None:
        assert err["code"] == code


def test_jina_rerank_returns_the_contract_shape(server: Server) -> None:
    r = rerank(server, {"model": "tiny", "query": "What is a panda?", "top_n": 2,
                        "documents": [*DOCS[:2], {"text": DOCS[2]}]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == "tiny" and body["object"] == "list"
    results = body["results"]
    assert len(results) == 2
    assert results[0]["relevance_score"] >= results[1]["relevance_score"]
    for res in results:
        assert res["document"] == {"text": DOCS[res["index"]]}
    assert body["usage"]["prompt_tokens"] == body["usage"]["total_tokens"] > 0


def test_documents_sent_as_objects_come_back_whole_and_an_empty_model_is_none(
    server: Server,
) -> None:
    """GPUStack answers a document object as it was sent (an id to match results by)."""
    sent = [{"text": DOCS[0], "id": "a-1", "tags": ["x"]}, DOCS[1], {"text": DOCS[2], "id": 3}]
    r = rerank(server, {"model": "", "query": "What is a panda?", "documents": sent})
    assert r.status_code == 200, r.text
    assert r.json()["model"] == "tiny"
    for res in r.json()["results"]:
        original = sent[res["index"]]
        assert res["document"] == (original if isinstance(original, dict) else {"text": original})


def test_what_no_answer_could_carry_back_is_a_400_not_a_failed_answer(server: Server) -> None:
    r = server.client.post("/v1/rerank", content=b'{"query": "q", "documents": '
                           b'[{"text": "a", "weight": 1e999}]}')
    assert_error(r, 400, "invalid_json")
    assert "out of range" in r.json()["error"]["message"]
    # nor a string no answer can encode, in any field that would be answered back
    r = server.client.post("/v2/rerank", content=b'{"query": "q", "return_documents": true, '
                           b'"documents": [{"text": "a", "m": {"deep": ["\\ud800"]}}]}')
    assert_error(r, 400, "invalid_utf8")


def test_return_documents_false_omits_the_document_key(server: Server) -> None:
    r = rerank(server, {"query": "q", "documents": DOCS, "return_documents": False})
    assert all("document" not in res for res in r.json()["results"])


def test_scores_are_the_same_in_every_dialect(server: Server) -> None:
    jina = rerank(server, {"query": "panda", "documents": DOCS, "normalize": True}).json()
    tei = rerank(server, {"query": "panda", "texts": DOCS, "return_text": True}, "/rerank").json()
    cohere = rerank(server, {"query": "panda", "documents": DOCS}, "/v2/rerank").json()
    by_index = {r["index"]: r["relevance_score"] for r in jina["results"]}
    assert {r["index"]: r["score"] for r in tei} == pytest.approx(by_index)
    assert {r["index"]: r["relevance_score"] for r in cohere["results"]} == pytest.approx(by_index)
    assert tei[0]["text"] == DOCS[tei[0]["index"]]
    assert cohere["meta"]["api_version"]["version"] == "2"


def test_the_jina_and_tei_paths_answer_either_body_in_its_own_shape(server: Server) -> None:
    """As llama-server: its clients send `documents` to /rerank, or `texts` to /v1/rerank."""
    jina = rerank(server, {"query": "panda", "documents": DOCS}, "/rerank")
    tei = rerank(server, {"query": "panda", "texts": DOCS, "raw_scores": True}, "/v1/rerank")
    assert jina.status_code == tei.status_code == 200, (jina.text, tei.text)
    assert jina.json()["object"] == "list"
    assert {r["index"]: r["relevance_score"] for r in jina.json()["results"]} == pytest.approx(
        {r["index"]: r["score"] for r in tei.json()})


def test_every_dialect_reports_evaluated_tokens_in_a_header(server: Server) -> None:
    jina = rerank(server, {"query": "panda", "documents": DOCS})
    tei = rerank(server, {"query": "panda", "texts": DOCS}, "/rerank")
    cohere = rerank(server, {"query": "panda", "documents": DOCS}, "/v2/rerank")
    tokens = jina.json()["usage"]["prompt_tokens"]
    assert tokens > 0
    assert [r.headers["x-prompt-tokens"] for r in (jina, tei, cohere)] == [str(tokens)] * 3


def test_tei_raw_scores_match_jina_default(server: Server) -> None:
    jina = rerank(server, {"query": "panda", "documents": DOCS}).json()
    tei = rerank(server, {"query": "panda", "texts": DOCS, "raw_scores": True}, "/rerank").json()
    assert [r["score"] for r in tei] == pytest.approx(
        [r["relevance_score"] for r in jina["results"]])


def test_every_answer_carries_a_request_id_that_cohere_answers_use_as_their_id(
    server: Server,
) -> None:
    body = {"query": "q", "documents": DOCS}
    jina = server.client.post("/v1/rerank", json=body, headers={"x-request-id": "client-42"})
    assert jina.headers["x-request-id"] == "client-42"
    cohere = server.client.post("/v2/rerank", json=body, headers={"x-request-id": "client-43"})
    assert cohere.headers["x-request-id"] == cohere.json()["id"] == "client-43"
    fresh = server.client.post("/v2/rerank", json=body)
    assert re.fullmatch(r"[0-9a-f]{32}", fresh.headers["x-request-id"])
    assert fresh.json()["id"] == fresh.headers["x-request-id"]
    unsafe = server.client.post("/v1/rerank", json=body, headers={"x-request-id": "a b"})
    assert re.fullmatch(r"[0-9a-f]{32}", unsafe.headers["x-request-id"])
    refused = server.client.post("/v1/rerank", content=b"{", headers={"x-request-id": "bad-1"})
    assert (refused.status_code, refused.headers["x-request-id"]) == (400, "bad-1")


def test_openapi_document_is_valid_and_describes_what_is_sent_and_answered(
    server: Server,
) -> None:
    document = server.client.get("/openapi.json").json()
    validate(document)
    operation_ids = [op["operationId"] for item in document["paths"].values()
                     for op in item.values()]
    assert len(operation_ids) == len(set(operation_ids))
    for path in ("/v1/rerank", "/rerank", "/v2/rerank"):
        answers = document["paths"][path]["post"]["responses"]
        assert {"x-request-id", "x-prompt-tokens"} <= set(answers["200"]["headers"])
        assert "Retry-After" in answers["429"]["headers"]
        assert "Retry-After" in answers["503"]["headers"]
        assert "408" in answers  # a stalled body
        assert "500" in answers  # the engine failed to score: stated as every other status
    assert "503" in document["paths"]["/health"]["get"]["responses"]
    assert "text/plain" in document["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
    # FastAPI's own 422 (another error shape) is stated for no route, and answered by none
    assert "422" not in document["paths"]["/v1/models/{model_id}"]["get"]["responses"]
    assert "HTTPValidationError" not in json.dumps(document)

    def schema_of(path: str, status: int | None = None) -> jsonschema.Draft202012Validator:
        operation = document["paths"][path]["post"]
        part = operation["requestBody"] if status is None else operation["responses"][str(status)]
        schema = part["content"]["application/json"]["schema"]
        return jsonschema.Draft202012Validator({**schema, "components": document["components"]})

    bodies = {"/v1/rerank": {"query": "q", "documents": ["a", {"text": "b", "id": 1}], "top_n": 2},
              "/rerank": {"query": "q", "texts": ["a", "b"], "return_text": True},
              "/v2/rerank": {"query": "q", "documents": ["a", "b"], "return_documents": True}}
    crossed = [("/rerank", bodies["/v1/rerank"]), ("/v1/rerank", bodies["/rerank"])]
    for path, body in [*bodies.items(), *crossed]:  # each path reads the other's body too
        schema_of(path).validate(body)
        answer = server.client.post(path, json=body)
        assert answer.status_code == 200, answer.text
        schema_of(path, 200).validate(answer.json())
        for status, bad in ((404, {**body, "model": "other"}), (422, {"query": 5})):
            refused = server.client.post(path, json=bad)
            assert refused.status_code == status, refused.text
            schema_of(path, status).validate(refused.json())
    with pytest.raises(jsonschema.ValidationError):
        schema_of("/v1/rerank", 200).validate({"model": "m", "object": "list", "results": []})


def test_models_lists_the_served_name_from_the_environment(server: Server) -> None:
    assert [m["id"] for m in server.client.get("/v1/models").json()["data"]] == ["tiny"]


def test_retrieving_the_served_model_answers_its_card_and_any_other_404(server: Server) -> None:
    listed = server.client.get("/v1/models").json()["data"]
    assert server.client.get("/v1/models/tiny").json() == listed[0]
    assert_error(server.client.get("/v1/models/other"), 404, "model_not_found")
    documented = server.client.get("/openapi.json").json()["paths"]["/v1/models/{model_id}"]
    assert "404" in documented["get"]["responses"]


def test_a_long_query_still_lets_each_document_be_read(server: Server) -> None:
    docs = ["apple pie is a dessert", "apple computers make laptops", "banana"]
    answer = rerank(server, {"query": "lorem " * 2000, "documents": docs})
    assert answer.status_code == 200, answer.text
    scores = [r["relevance_score"] for r in answer.json()["results"]]
    # Cut longest-first, each pair keeps its whole document: three documents, three scores
    # (cut to their first token, as before, the two "apple ..." ones tied).
    assert len(set(scores)) == 3
    assert answer.json()["usage"]["prompt_tokens"] == 3 * 512


def test_unknown_model_is_404(server: Server) -> None:
    assert_error(rerank(server, {"model": "other", "query": "q", "documents": ["a"]}), 404,
                 "model_not_found")


@pytest.mark.parametrize(
    ("content", "status", "code"),
    [
        (b"{not json", 400, "invalid_json"),
        (b'{"query": "q", "documents": ["a"], "x": ' + b"9" * 4301 + b"}", 400, "invalid_json"),
        (b'{"query": "q", "documents": ["\xff\xfe"]}', 400, "invalid_utf8"),
        (b'{"query": "q", "documents": ["\\ud800"]}', 400, "invalid_utf8"),
        (b'{"query": "q", "documents": []}', 400, "empty_documents"),
        (b'{"query": "\\u200b\\u00ad", "documents": ["a"]}', 422, "empty_query"),
        (b'{"query": "q", "documents": [{"text": "a", "x": ' + b"[" * 64 + b"]" * 64 + b"}]}",
         422, "invalid_schema"),
        (b'{"documents": ["a"]}', 422, None),
        (b'{"query": "q", "documents": [1, 2]}', 422, None),
        (b'{"query": "q", "documents": "a"}', 422, None),
        (b'{"query": ["q"], "documents": ["a"]}', 422, None),
        (b'{"query": "q", "documents": ["a"], "top_n": 0}', 422, "invalid_top_n"),
        (b'{"query": "q", "documents": ["a"], "top_n": -3}', 422, "invalid_top_n"),
        (b'{"query": "q", "documents": ["a"], "top_n": "1"}', 422, None),
        (b"[]", 422, None),
    ],
)
def test_bad_input_gets_its_status_and_the_server_keeps_serving(
    server: Server, content: bytes, status: int, code: str | None
) -> None:
    assert_error(server.client.post("/v1/rerank", content=content), status, code)
    assert rerank(server, {"query": "q", "documents": ["a"]}).status_code == 200


def test_huge_top_n_returns_every_document(server: Server) -> None:
    r = rerank(server, {"query": "q", "documents": DOCS, "top_n": 10**30})
    assert r.status_code == 200
    assert sorted(res["index"] for res in r.json()["results"]) == [0, 1, 2]


def test_more_documents_than_allowed_is_422(server: Server) -> None:
    assert_error(rerank(server, {"query": "q", "documents": ["a"] * 5000}), 422,
                 "too_many_documents")


def test_ten_megabyte_document_is_truncated_to_fit(server: Server) -> None:
    doc = "panda " * (10 * 2**20 // 6)
    r = rerank(server, {"query": "q", "documents": [doc, "short"], "return_documents": False})
    assert r.status_code == 200, r.text
    assert r.json()["usage"]["prompt_tokens"] <= 512 + 8


def test_ten_megabyte_document_is_413_when_the_request_refuses_truncation(server: Server) -> None:
    doc = "panda " * (10 * 2**20 // 6)
    assert_error(rerank(server, {"query": "q", "documents": [doc], "truncate": False}), 413,
                 "document_too_long")


def test_sigterm_drains_serving_requests_while_health_says_draining(tiny_model: Path) -> None:
    srv = Server(tiny_model, "--served-name", "tiny", "--drain-seconds", "2")
    try:
        srv.wait_healthy()
        srv.proc.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        deadline = signalled + 1
        while (health := srv.client.get("/health")).status_code == 200:
            assert time.monotonic() < deadline, "health still 200 a second after SIGTERM"
            time.sleep(0.02)
        assert_error(health, 503, "draining")
        # Each answer now closes its connection: a kept one cut at the end of the drain would
        # lose the request sent on it then (clients do not resend a POST).
        assert health.headers["connection"] == "close"
        with httpx.Client(base_url=srv.url, timeout=10) as fresh:  # a new connection
            answer = fresh.post("/v1/rerank", json={"query": "q", "documents": DOCS})
        assert answer.status_code == 200, answer.text
        assert answer.headers["connection"] == "close"
        # Drained and done: 0, as llama-server and TEI exit (143 read as killed).
        assert srv.proc.wait(timeout=15) == 0
        assert time.monotonic() - signalled >= 2
    finally:
        srv.stop()


def test_a_drain_closes_each_kept_connection_with_its_next_answer_running_ones_included(
    tiny_model: Path,
) -> None:
    """A kept connection left open after the drain is cut when it ends, under the request its
    client may send right then (clients do not resend a POST); one closed when the drain begins
    loses the next request of a client that does not look before it sends (http.client). So an
    idle one stays open and its next answer closes it, and a request running at SIGTERM gets
    its answer with Connection: close too."""
    srv = Server(tiny_model, "--drain-seconds", "3", "--max-documents", "6000")
    try:
        srv.wait_healthy()
        port = int(srv.url.rsplit(":", 1)[1])
        idle = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        idle.request("GET", "/health")
        first = idle.getresponse()
        assert first.status == 200 and first.read() and first.getheader("connection") is None
        many = {"query": "q", "documents": [f"document {i} " + "word " * 100
                                            for i in range(6000)]}
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            running = pool.submit(srv.client.post, "/v1/rerank", json=many)
            deadline = time.monotonic() + 30
            while "kuberank_runtime_queue_depth 0.0" in httpx.get(f"{srv.url}/metrics").text:
                assert time.monotonic() < deadline, "the request never reached the queue"
                time.sleep(0.05)
            srv.proc.send_signal(signal.SIGTERM)
            time.sleep(0.5)  # the drain has begun (readiness fails within 0.1 s)
            idle.request("POST", "/v1/rerank", body=json.dumps({"query": "q", "documents": DOCS}),
                         headers={"content-type": "application/json"})
            next_answer = idle.getresponse()  # sent on the kept connection: still served
            assert next_answer.status == 200 and next_answer.read()
            assert next_answer.getheader("connection") == "close"
            answer = running.result(timeout=60)
        assert answer.status_code == 200 and answer.headers["connection"] == "close"
        idle.close()
        srv.proc.wait(timeout=30)
    finally:
        srv.stop()


def test_a_request_still_running_when_shutdown_gives_up_gets_a_json_503(tiny_model: Path) -> None:
    """After the drain, requests in flight get --shutdown-seconds to finish; one that does not
    is answered in the contract's error shape (uvicorn alone sends a bare-text 500)."""
    srv = Server(tiny_model, "--shutdown-seconds", "1", "--max-documents", "10000")
    try:
        srv.wait_healthy()
        long = {"query": "q", "documents": [f"document {i} " + "word " * 100
                                            for i in range(10000)]}
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            answer = pool.submit(srv.client.post, "/v1/rerank", json=long)
            deadline = time.monotonic() + 30
            while "kuberank_runtime_queue_depth 0.0" in srv.client.get("/metrics").text:
                assert time.monotonic() < deadline, "the long request never reached the queue"
                time.sleep(0.05)
            srv.proc.send_signal(signal.SIGTERM)
            cut = answer.result(timeout=30)
        assert_error(cut, 503, "draining")
        assert cut.headers["retry-after"] == "1"
        srv.proc.wait(timeout=15)
    finally:
        srv.stop()


def test_gzip_and_deflate_bodies_are_inflated_and_score_like_plain_ones(server: Server) -> None:
    payload = json.dumps({"query": "What is a panda?", "documents": DOCS}).encode()
    plain = server.client.post("/v1/rerank", content=payload)
    assert plain.status_code == 200, plain.text
    for encoding, packed in (("gzip", gzip.compress(payload)), ("deflate", zlib.compress(payload))):
        answer = server.client.post("/v1/rerank", content=packed,
                                    headers={"content-encoding": encoding})
        assert answer.status_code == 200, (encoding, answer.text)
        assert answer.json()["results"] == plain.json()["results"]


def test_bad_or_unknown_body_encodings_are_refused_and_the_server_keeps_serving(
    server: Server,
) -> None:
    payload = json.dumps({"query": "q", "documents": ["a"]}).encode()
    refused = [
        (server.client.post("/v1/rerank", content=payload, headers={"content-encoding": "br"}),
         415, "unsupported_encoding"),
        (server.client.post("/v1/rerank", content=payload,
                            headers={"content-encoding": "gzip"}), 400, "invalid_encoding"),
        (server.client.post("/v1/rerank", content=gzip.compress(payload)[:-12],
                            headers={"content-encoding": "gzip"}), 400, "invalid_encoding"),
        # 13 MiB of spaces packs into a few KiB: the cap holds for what it inflates to
        (server.client.post("/v1/rerank", content=gzip.compress(b" " * (13 * 2**20) + payload),
                            headers={"content-encoding": "gzip"}), 413, "payload_too_large"),
    ]
    for answer, status, code in refused:
        assert_error(answer, status, code)
    assert rerank(server, {"query": "q", "documents": ["a"]}).status_code == 200


def test_body_over_the_limit_is_413(server: Server) -> None:
    doc = "x" * (13 * 2**20)
    assert_error(rerank(server, {"query": "q", "documents": [doc]}), 413, "payload_too_large")


def test_server_overflow_reject_refuses_a_long_document(strict_server: Server) -> None:
    long = "one two three four five six seven eight nine"
    refused = rerank(strict_server, {"query": "q", "documents": ["a", long]})
    assert_error(refused, 413, "document_too_long")
    assert refused.json()["error"]["message"].startswith("documents[1]: ")
    tei = rerank(strict_server, {"query": "q", "texts": ["a", long], "truncate": False},
                 path="/rerank")
    assert_error(tei, 413, "document_too_long")
    assert tei.json()["error"]["message"].startswith("texts[1]: ")
    ok = rerank(strict_server, {"query": "q", "documents": ["one two"]})
    assert ok.status_code == 200


def test_cohere_cuts_a_long_document_even_where_overflow_rejects(strict_server: Server) -> None:
    """Cohere clients send no max_tokens_per_doc by default and Cohere cuts at 4096 tokens: the
    dialect does the same instead of a 413 those clients never expect."""
    long = "one two three four five six seven eight nine"
    cut = rerank(strict_server, {"query": "q", "documents": [long, "one"]}, path="/v2/rerank")
    assert cut.status_code == 200, cut.text
    assert sorted(r["index"] for r in cut.json()["results"]) == [0, 1]


def test_empty_documents_are_ranked_like_blank_ones(server: Server) -> None:
    for path, field in (("/v1/rerank", "documents"), ("/rerank", "texts"),
                        ("/v2/rerank", "documents")):
        r = rerank(server, {"query": "panda", field: ["", "   ", "a bear"]}, path=path)
        assert r.status_code == 200, r.text
        results = r.json() if path == "/rerank" else r.json()["results"]
        score = {x["index"]: x.get("relevance_score", x.get("score")) for x in results}
        assert score[0] == score[1]  # both are the pair with nothing in the document


def test_server_normalize_turns_scores_into_probabilities(strict_server: Server) -> None:
    body = rerank(strict_server, {"query": "q", "documents": ["a", "b"]}).json()
    assert all(0 < r["relevance_score"] < 1 for r in body["results"])
    raw = rerank(strict_server, {"query": "q", "documents": ["a"], "normalize": False}).json()
    assert not 0.5 <= raw["results"][0]["relevance_score"] < 1


def test_concurrent_clients_get_the_sequential_answers(server: Server) -> None:
    bodies = [{"query": f"question {i}", "documents": [f"answer {j} to {i}" for j in range(6)]}
              for i in range(16)]
    sequential = [rerank(server, b).json()["results"] for b in bodies]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        together = list(pool.map(lambda b: rerank(server, b).json()["results"], bodies))
    assert together == sequential


def test_metrics_count_requests_tokens_and_truncations(server: Server) -> None:
    waits = "kuberank_runtime_queue_wait_seconds_count"
    waited_before = sample(server.client.get("/metrics").text, waits)
    rerank(server, {"query": "q", "documents": ["w " * 2000, "x"]})
    text = server.client.get("/metrics").text
    assert sample(text, waits) == waited_before + 1  # one wait per request, not per pair
    for name in ["kuberank_runtime_requests_total", "kuberank_runtime_request_seconds_bucket",
                 "kuberank_runtime_documents_per_request_bucket",
                 "kuberank_runtime_tokens_evaluated_total", "kuberank_runtime_truncations_total",
                 "kuberank_runtime_queue_depth", "kuberank_runtime_batch_pairs_bucket"]:
        assert name in text
    assert 'kuberank_runtime_requests_total{path="/v1/rerank",status="200"}' in text
    assert sample(text, "kuberank_runtime_engine_info", device="cpu", flash_attn="on",
                  max_batch_pairs="1", batch_tokens="512") == 1
    truncations = [line for line in text.splitlines()
                   if line.startswith("kuberank_runtime_truncations_total")]
    assert float(truncations[0].split()[-1]) >= 1


def test_request_latency_starts_once_the_body_is_in(server: Server) -> None:
    """A client trickling its body added its upload time to the histogram ("parse to
    response"): a slow network looked like a slow model."""
    def latency() -> tuple[float, float]:
        text = server.client.get("/metrics").text
        return (sample(text, "kuberank_runtime_request_seconds_sum", path="/rerank"),
                sample(text, "kuberank_runtime_request_seconds_count", path="/rerank"))

    (total, count), pause = latency(), 1.5
    body = json.dumps({"query": "q", "texts": ["a"]}).encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as conn:
        conn.sendall(b"POST /rerank HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body[:5])
        time.sleep(pause)
        conn.sendall(body[5:])
        assert conn.recv(65536).startswith(b"HTTP/1.1 200")
    after, counted = latency()
    assert counted == count + 1
    assert after - total < pause / 3


def test_every_get_answers_head_as_well(server: Server) -> None:
    assert server.client.get("/health").json() == {"status": "ok"}
    for path in ("/health", "/v1/models", "/v1/models/tiny", "/metrics", "/openapi.json"):
        answer = server.client.head(path)
        assert (answer.status_code, answer.content) == (200, b""), path
    assert server.client.head("/v1/models/other").status_code == 404


@pytest.mark.parametrize("path", ["/v1/rerank/", "/rerank/", "/v2/rerank/"])
def test_a_trailing_slash_is_served_like_the_path_not_redirected(server: Server, path: str) -> None:
    body = {"query": "panda", "texts" if path == "/rerank/" else "documents": DOCS}
    plain, slashed = rerank(server, body, path.rstrip("/")), rerank(server, body, path)
    assert slashed.status_code == plain.status_code == 200, slashed.text
    ranked = [r.json() if path == "/rerank/" else r.json()["results"] for r in (plain, slashed)]
    assert ranked[0] == ranked[1]
    assert_error(server.client.get("/v1/reranks/"), 404, "unknown_path")


def test_llama_servers_other_spellings_answer_as_its_routes(server: Server) -> None:
    """llama-server's /v1/reranking and /reranking: 404 here before."""
    body = {"query": "q", "documents": DOCS}
    for spelling, route in (("/v1/reranking", "/v1/rerank"), ("/reranking", "/rerank")):
        spelled, routed = server.client.post(spelling, json=body), server.client.post(route,
                                                                                       json=body)
        assert spelled.status_code == routed.status_code == 200
        assert spelled.json()["results"] == routed.json()["results"]


def test_unknown_route_and_method_are_json_errors(server: Server) -> None:
    assert_error(server.client.get("/v1/reranks"), 404, "unknown_path")
    wrong_method = server.client.get("/v1/rerank")
    assert_error(wrong_method, 405)
    assert wrong_method.headers["allow"] == "POST"


def test_a_non_reranker_model_exits_1_with_the_reason_last(embedding_only_model: Path) -> None:
    srv = Server(embedding_only_model)
    try:
        # 1, not 143: a signal's status would read as if Kubernetes had killed the container.
        assert srv.proc.wait(timeout=60) == 1
        last = srv.output().strip().splitlines()[-1]
        assert last.startswith("kuberank-runtime: cannot serve ") and "not a reranker" in last
    finally:
        srv.stop()


def test_a_port_already_taken_exits_3_before_the_model_is_loaded(tiny_model: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = subprocess.run(
            [RUNTIME, "--model", str(tiny_model), "--host", "127.0.0.1", "--port", str(port)],
            capture_output=True, text=True, timeout=60)
    assert proc.returncode == 3
    assert "address already in use" in proc.stderr.lower()
    assert "serving " not in proc.stderr  # the engine never loaded the model


def test_help_documents_every_flag_and_its_environment_variable() -> None:
    out = subprocess.run([RUNTIME, "--help"], capture_output=True, text=True, check=True).stdout
    for flag in ["--model", "--served-name", "--host", "--port", "--threads", "--ctx-size",
                 "--batch-size", "--gpu-layers", "--flash-attn", "--max-documents",
                 "--max-query-tokens", "--max-document-tokens", "--overflow", "--normalize"]:
        assert flag in out
        assert "KUBERANK_" + flag[2:].upper().replace("-", "_") in out


def test_python_dash_m_runs_the_same_cli() -> None:
    out = subprocess.run([sys.executable, "-m", "kuberank.runtime", "--help"],
                         capture_output=True, text=True, check=True).stdout
    assert "kuberank-runtime" in out
    assert json.dumps("--overflow")[1:-1] in out


def test_gpu_layers_on_a_build_without_gpu_backend_runs_on_the_cpu_and_says_so(
        tiny_model: Path) -> None:
    """A pod given a GPU but an image built for the CPU must be visible, not just slow."""
    srv = Server(tiny_model, "--gpu-layers", "-1")
    try:
        srv.wait_healthy()
        assert rerank(srv, {"query": "q", "documents": ["a", "b"]}).status_code == 200
        metrics = srv.client.get("/metrics").text
        # The CPU's defaults, not the GPU's, since nothing is offloaded.
        assert sample(metrics, "kuberank_runtime_engine_info", device="cpu", flash_attn="on",
                      max_batch_pairs="1") == 1
        log = srv.output()
    finally:
        srv.stop()
    assert "gpu_layers is -1 but this llama.cpp build has no GPU backend" in log
