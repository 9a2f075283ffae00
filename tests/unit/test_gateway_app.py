"""The gateway app in process, fed fixed objects: every refusal it makes before any upstream.

Forwarding to a real runtime is covered by tests/cluster/test_gateway.py.
"""

from __future__ import annotations

import gzip
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from kuberank.crd.keys import digest_secret, generate_key, parse_key
from kuberank.gateway import rerank as gateway_rerank
from kuberank.gateway.app import create_app
from kuberank.gateway.settings import GatewaySettings
from kuberank.gateway.sources import StaticSource
from openapi_spec_validator import validate

pytestmark = pytest.mark.unit

KEY_ALL = generate_key()
KEY_BGE_ONLY = generate_key()
KEY_DISABLED = generate_key()
KEY_EXPIRED = generate_key()
KEY_LIMITED = generate_key()
KEY_OTHER_NS = generate_key()
KEY_EMPTY_NS = generate_key()
KEY_ALIAS_ONLY = generate_key()
KEY_OTHER_ONLY = generate_key()
KEY_WAITING = generate_key()


def apikey(name: str, key: str, namespace: str = "ns1", **spec: Any) -> dict[str, Any]:
    parsed = parse_key(key)
    assert parsed is not None
    return {
        "kind": "ApiKey",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
        "status": {"keyId": parsed.key_id, "digest": digest_secret(parsed.secret)},
    }


CREATED = "2026-01-02T03:04:05Z"  # every model's creationTimestamp


def rerankmodel(name: str, namespace: str = "ns1", **spec: Any) -> dict[str, Any]:
    return {"kind": "RerankModel", "spec": spec,
            "metadata": {"name": name, "namespace": namespace, "creationTimestamp": CREATED}}


OBJECTS = [
    apikey("all", KEY_ALL),
    apikey("bge-only", KEY_BGE_ONLY, models=["bge"]),
    apikey("disabled", KEY_DISABLED, disabled=True),
    apikey(
        "expired", KEY_EXPIRED, expiresAt=(datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    ),
    apikey("limited", KEY_LIMITED, rateLimit={"requestsPerMinute": 1}),
    apikey("other", KEY_OTHER_NS, namespace="ns2"),
    apikey("lonely", KEY_EMPTY_NS, namespace="ns3"),
    apikey("by-alias", KEY_ALIAS_ONLY, namespace="ns4", models=["rr"]),
    apikey("other-only", KEY_OTHER_ONLY, namespace="ns4", models=["other"]),
    rerankmodel("bge"),
    rerankmodel("minilm"),
    rerankmodel("small", limits={"maxDocuments": 2}),
    rerankmodel("roomy", limits={"maxDocuments": 5}),  # above the gateway's own default of 3
    rerankmodel("elsewhere", namespace="ns2"),
    rerankmodel("bge", namespace="ns2"),  # another tenant serving the same name
    rerankmodel("minilm", namespace="ns4", aliases=["rr"]),
    rerankmodel("other", namespace="ns4"),
    rerankmodel("late", namespace="ns4", aliases=["other"]),  # shadowed by the served name
    apikey("waits", KEY_WAITING, namespace="ns5"),
    rerankmodel("queued", namespace="ns5") | {"status": {"conditions": [
        {"type": "Degraded", "status": "True", "reason": "InsufficientGPU",
         "message": "No node has 1 free nvidia.com/gpu."}]}},
    rerankmodel("refused", namespace="ns5") | {"status": {"conditions": [
        {"type": "Degraded", "status": "True", "reason": "ChildRefused",
         "message": "The API server refused a child of this model: denied by policy"}]}},
    rerankmodel("broken", namespace="ns5") | {"status": {"conditions": [
        {"type": "Degraded", "status": "True", "reason": "InvalidSpec",
         "message": "spec.resources.memory: '4 GB' is not a Kubernetes quantity"}]}},
    rerankmodel("unpulled", namespace="ns5") | {"status": {"conditions": [
        {"type": "Degraded", "status": "True", "reason": "ImagePullFailed",
         "message": "Pod p cannot pull its image."}]}},
]


@pytest.fixture
def client() -> Iterator[TestClient]:
    settings = GatewaySettings(max_body_bytes=4096, max_documents=3)
    with TestClient(create_app(settings, StaticSource(OBJECTS))) as test_client:
        yield test_client


def rerank(
    client: TestClient, key: str | None, body: Any = None, path: str = "/v1/rerank", **headers: str
) -> Any:
    payload = body if body is not None else {"model": "bge", "query": "q", "documents": ["a"]}
    sent = {"authorization": f"Bearer {key}"} if key else {}
    sent.update(headers)
    return client.post(path, content=json.dumps(payload), headers=sent)


def error_code(response: Any) -> str:
    code: str = response.json()["error"]["code"]
    return code


@pytest.mark.parametrize("key", [None, "garbage", generate_key(), KEY_DISABLED, KEY_EXPIRED])
def test_missing_unknown_disabled_and_expired_keys_get_401(
    client: TestClient, key: str | None
) -> None:
    response = rerank(client, key)
    assert response.status_code == 401
    assert response.json()["error"]["type"] == "authentication_error"
    assert response.headers["www-authenticate"] == 'Bearer realm="kuberank"'  # RFC 6750


def test_x_api_key_header_is_accepted_like_bearer(client: TestClient) -> None:
    response = rerank(client, None, **{"x-api-key": KEY_ALL})
    assert response.status_code == 503  # authenticated and routed; no replica in this test


def test_two_keys_in_a_header_sent_twice_get_401_whatever_their_order(
    client: TestClient,
) -> None:
    """The first header's key was used, the second ignored: their order picked the tenant."""
    body = json.dumps({"model": "bge", "query": "q", "documents": ["a"]})
    for first, second in ((KEY_ALL, KEY_BGE_ONLY), (KEY_BGE_ONLY, KEY_ALL)):
        answer = client.post("/v1/rerank", content=body, headers=[
            ("authorization", f"Bearer {first}"), ("authorization", f"Bearer {second}")])
        assert answer.status_code == 401 and error_code(answer) == "invalid_api_key"
        assert "two different keys" in answer.json()["error"]["message"]


@pytest.mark.parametrize(("spelling", "route"), [("/v1/reranking", "/v1/rerank"),
                                                ("/reranking/", "/rerank")])
def test_llama_servers_other_spellings_are_its_rerank_routes(
    client: TestClient, spelling: str, route: str
) -> None:
    """llama-server serves /reranking and /v1/reranking too; clients set up with them got 404."""
    for path in (spelling, route):
        answer = rerank(client, KEY_ALL, path=path)
        assert answer.status_code == 503 and error_code(answer) == "no_ready_replica", path


def test_model_outside_the_keys_list_gets_403_naming_the_keys_models(
    client: TestClient,
) -> None:
    """A mistyped name reads as a permissions problem unless the answer says what to send."""
    body = {"model": "minilm", "query": "q", "documents": ["a"]}
    response = rerank(client, KEY_BGE_ONLY, body)
    assert response.status_code == 403
    assert response.json()["error"]["message"] == (
        "this API key may not use model 'minilm'; it may use 'bge'")


def test_model_not_served_in_the_keys_namespace_gets_404(client: TestClient) -> None:
    for model in ("nope", "elsewhere"):
        response = rerank(client, KEY_ALL, {"model": model, "query": "q", "documents": ["a"]})
        assert response.status_code == 404, model


def test_body_over_the_cap_gets_413(client: TestClient) -> None:
    body = {"model": "bge", "query": "q", "documents": ["x" * 5000]}
    assert rerank(client, KEY_ALL, body).status_code == 413


def test_gzip_body_is_inflated_before_its_checks_and_unknown_encodings_get_415(
    client: TestClient,
) -> None:
    packed = gzip.compress(json.dumps(
        {"model": "bge", "query": "q", "documents": ["a", "b", "c", "d"]}).encode())
    sent = {"authorization": f"Bearer {KEY_ALL}", "content-encoding": "gzip"}
    response = client.post("/v1/rerank", content=packed, headers=sent)
    assert (response.status_code, error_code(response)) == (422, "too_many_documents")
    bomb = gzip.compress(b" " * 10_000 + b"{}")  # under the 4096-byte cap packed, not inflated
    response = client.post("/v1/rerank", content=bomb, headers=sent)
    assert (response.status_code, error_code(response)) == (413, "payload_too_large")
    response = client.post("/v1/rerank", content=packed,
                           headers={**sent, "content-encoding": "zstd"})
    assert (response.status_code, error_code(response)) == (415, "unsupported_encoding")


def test_more_documents_than_allowed_gets_422(client: TestClient) -> None:
    body = {"model": "bge", "query": "q", "documents": ["a", "b", "c", "d"]}
    response = rerank(client, KEY_ALL, body)
    assert response.status_code == 422
    assert error_code(response) == "too_many_documents"


def test_any_count_over_the_limit_is_refused_naming_the_limit_that_applies() -> None:
    """Past the runtimes' hard cap (10,000) too: the refusal names the model's or the
    gateway's limit, the one a client can use, not a cap it can never reach."""
    settings = GatewaySettings(max_body_bytes=1 << 20, max_documents=3)
    with TestClient(create_app(settings, StaticSource(OBJECTS))) as roomy:
        for model, limit in (("bge", 3), ("small", 2)):
            for count in (10, 10_001):
                body = {"model": model, "query": "q", "documents": ["a"] * count}
                response = rerank(roomy, KEY_ALL, body)
                assert error_code(response) == "too_many_documents", response.text
                assert response.json()["error"]["message"] == (
                    f"{count} documents exceed the limit of {limit} per request")


def test_a_models_own_document_limit_is_enforced_before_rate_limiting(
    client: TestClient,
) -> None:
    body = {"model": "small", "query": "q", "documents": ["a", "b", "c"]}
    for _ in range(3):  # refused requests spend none of the key's one request per minute
        response = rerank(client, KEY_LIMITED, body)
        assert response.status_code == 422
        assert error_code(response) == "too_many_documents"
        assert "limit of 2" in response.json()["error"]["message"]
    assert rerank(client, KEY_LIMITED, {**body, "documents": ["a", "b"]}).status_code == 503
    assert rerank(client, KEY_ALL, {**body, "model": "minilm"}).status_code == 503


def test_malformed_json_gets_400(client: TestClient) -> None:
    response = client.post(
        "/v1/rerank", content=b"{not json", headers={"authorization": f"Bearer {KEY_ALL}"}
    )
    assert response.status_code == 400


def test_tei_request_without_model_needs_a_key_with_a_single_model(client: TestClient) -> None:
    body = {"query": "q", "texts": ["a"]}
    assert rerank(client, KEY_BGE_ONLY, body, path="/rerank").status_code == 503
    response = rerank(client, KEY_ALL, body, path="/rerank")
    assert response.status_code == 422 and error_code(response) == "model_required"
    # Nothing to choose from is a missing model, not a missing field.
    response = rerank(client, KEY_EMPTY_NS, body, path="/rerank")
    assert response.status_code == 404 and error_code(response) == "model_not_found"
    # A key naming one model by an alias has that one model to choose (its replica: none yet).
    response = rerank(client, KEY_ALIAS_ONLY, body, path="/rerank")
    assert response.status_code == 503 and error_code(response) == "no_ready_replica"


def test_a_tei_client_names_its_model_in_its_base_url(client: TestClient) -> None:
    """TEI's body names no model: a key that may use two failed every TEI client (LiteLLM's
    huggingface/, LlamaIndex's TextEmbeddingInference) with model_required."""
    def routed_to(response: Any) -> str:
        assert response.status_code == 503 and error_code(response) == "no_ready_replica"
        message: str = response.json()["error"]["message"]
        return message.split("'")[1]

    tei = {"query": "q", "texts": ["a"]}
    assert routed_to(rerank(client, KEY_ALL, tei, path="/models/minilm/rerank")) == "minilm"
    assert routed_to(rerank(client, KEY_ALL, tei, path="/models/bge/rerank/")) == "bge"
    assert routed_to(rerank(client, KEY_ALL, tei, path="/models/bge/reranking")) == "bge"
    jina = {"query": "q", "documents": ["a"]}
    for path in ("/models/minilm/v1/rerank", "/models/minilm/v2/rerank",
                 "/models/minilm/v1/reranking"):
        assert routed_to(rerank(client, KEY_ALL, jina, path=path)) == "minilm", path
    assert routed_to(rerank(client, KEY_ALL, {**jina, "model": "minilm"},
                            path="/models/minilm/v1/rerank")) == "minilm"
    # Two different models: neither is picked; two names of one model are that model.
    both = rerank(client, KEY_ALL, {**jina, "model": "bge"}, path="/models/minilm/v1/rerank")
    assert both.status_code == 422 and error_code(both) == "model_mismatch"
    assert routed_to(rerank(client, KEY_ALIAS_ONLY, {**jina, "model": "minilm"},
                            path="/models/rr/v1/rerank")) == "minilm"
    # The key's own rules hold as for a model in the body.
    refused = rerank(client, KEY_BGE_ONLY, tei, path="/models/minilm/rerank")
    assert refused.status_code == 403 and error_code(refused) == "model_not_allowed"
    missing = rerank(client, KEY_ALL, tei, path="/models/nope/rerank")
    assert missing.status_code == 404 and error_code(missing) == "model_not_found"
    assert routed_to(rerank(client, KEY_ALIAS_ONLY, tei, path="/models/rr/rerank")) == "minilm"
    # Only the rerank routes are under /models/<name>/.
    for path in ("/models/minilm/metrics", "/models/minilm", "/models//rerank"):
        other = rerank(client, KEY_ALL, tei, path=path)
        assert other.status_code == 404 and error_code(other) == "unknown_path", path


def test_a_model_name_with_slashes_is_named_in_the_path_as_it_is() -> None:
    """Aliases spell hub repositories (BAAI/bge-reranker-v2-m3), slash included."""
    key = generate_key()
    objects = [apikey("k", key), rerankmodel("bge", aliases=["BAAI/bge-reranker-v2-m3"]),
               rerankmodel("other")]
    with TestClient(create_app(GatewaySettings(), StaticSource(objects))) as slashed:
        for path in ("/models/BAAI/bge-reranker-v2-m3/rerank",
                     "/models/BAAI%2Fbge-reranker-v2-m3/rerank"):
            response = rerank(slashed, key, {"query": "q", "texts": ["a"]}, path=path)
            assert error_code(response) == "no_ready_replica", path
            assert "model 'bge'" in response.json()["error"]["message"]


def test_a_key_listing_an_alias_may_use_its_model_by_every_name_that_reaches_it(
    client: TestClient,
) -> None:
    """Answers name the served name, which a client may send back: a 403 for it read as a
    permission the key lacked for the model it had just used. An alias another model's served
    name shadows reaches that model, and gives no access to the model declaring it."""
    def status(key: str, model: str) -> tuple[int, str]:
        response = rerank(client, key, {"model": model, "query": "q", "documents": ["a"]})
        return response.status_code, error_code(response)

    assert status(KEY_ALIAS_ONLY, "rr") == (503, "no_ready_replica")
    assert status(KEY_ALIAS_ONLY, "minilm") == (503, "no_ready_replica")
    assert status(KEY_ALIAS_ONLY, "other") == (403, "model_not_allowed")
    assert status(KEY_OTHER_ONLY, "other") == (503, "no_ready_replica")
    assert status(KEY_OTHER_ONLY, "late") == (403, "model_not_allowed")
    listed = client.get("/v1/models", headers={"authorization": f"Bearer {KEY_ALIAS_ONLY}"})
    assert [m["id"] for m in listed.json()["data"]] == ["minilm", "rr"]
    one = client.get("/v1/models/minilm", headers={"authorization": f"Bearer {KEY_ALIAS_ONLY}"})
    assert one.status_code == 200 and one.json()["id"] == "minilm"


def test_rate_limited_key_gets_429_with_retry_after(client: TestClient) -> None:
    assert rerank(client, KEY_LIMITED).status_code == 503
    response = rerank(client, KEY_LIMITED)
    assert response.status_code == 429
    assert int(response.headers["retry-after"]) >= 1


def test_a_503_says_what_the_model_waits_for(client: TestClient) -> None:
    """A model Pending for a GPU answered only "has no ready replica"."""
    response = rerank(client, KEY_WAITING, {"model": "queued", "query": "q", "documents": ["a"]})
    assert response.status_code == 503 and error_code(response) == "no_ready_replica"
    assert response.json()["error"]["message"].endswith(
        "no ready replica: InsufficientGPU: No node has 1 free nvidia.com/gpu.")
    assert response.headers["retry-after"] == "5"  # a GPU may free up


def test_a_failing_models_503_names_the_failure_and_asks_for_no_retry_until_changed(
    client: TestClient,
) -> None:
    """Clients that honour Retry-After would retry a model nobody fixes for ever."""
    response = rerank(client, KEY_WAITING, {"model": "broken", "query": "q", "documents": ["a"]})
    assert response.status_code == 503 and error_code(response) == "no_ready_replica"
    assert response.json()["error"]["message"].endswith(
        "no ready replica: InvalidSpec: spec.resources.memory: '4 GB' is not a Kubernetes "
        "quantity")
    assert "retry-after" not in response.headers
    # Nor does the operator retry a child the API server refused (a spec edit does).
    response = rerank(client, KEY_WAITING, {"model": "refused", "query": "q", "documents": ["a"]})
    assert response.status_code == 503 and "denied by policy" in response.text
    assert "retry-after" not in response.headers
    # A failure that may clear by itself (a registry back up) still says when to retry.
    response = rerank(client, KEY_WAITING, {"model": "unpulled", "query": "q",
                                            "documents": ["a"]})
    assert response.status_code == 503 and response.headers["retry-after"] == "5"


def test_no_ready_replica_gets_503_with_retry_after(client: TestClient) -> None:
    response = rerank(client, KEY_ALL, path="/v2/rerank")
    assert response.status_code == 503
    assert error_code(response) == "no_ready_replica"
    assert response.headers["retry-after"] == "5"


def test_models_lists_only_what_the_key_may_use_in_its_namespace(client: TestClient) -> None:
    def ids(key: str) -> list[str]:
        response = client.get("/v1/models", headers={"authorization": f"Bearer {key}"})
        assert response.status_code == 200
        return [m["id"] for m in response.json()["data"]]

    assert ids(KEY_ALL) == ["bge", "minilm", "roomy", "small"]
    assert ids(KEY_BGE_ONLY) == ["bge"]
    assert ids(KEY_OTHER_NS) == ["bge", "elsewhere"]
    assert client.get("/v1/models").status_code == 401


def test_model_cards_carry_every_field_of_openais_model_object(client: TestClient) -> None:
    """OpenAI's ``Model`` requires ``created``: typed clients refused a card without it."""
    listed = client.get("/v1/models", headers={"authorization": f"Bearer {KEY_ALL}"}).json()
    created = int(datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC).timestamp())
    for card in listed["data"]:
        assert card["object"] == "model" and card["owned_by"] == "ns1", card
        assert card["created"] == created and isinstance(card["id"], str)


def test_retrieving_one_model_answers_its_card_or_404_like_the_list(client: TestClient) -> None:
    def get(key: str, model: str) -> Any:
        return client.get(f"/v1/models/{model}", headers={"authorization": f"Bearer {key}"})

    listed = client.get("/v1/models", headers={"authorization": f"Bearer {KEY_ALL}"}).json()
    assert get(KEY_ALL, "small").json() == next(m for m in listed["data"] if m["id"] == "small")
    for key, model in ((KEY_BGE_ONLY, "small"), (KEY_OTHER_NS, "small"), (KEY_ALL, "nope")):
        response = get(key, model)
        assert response.status_code == 404, (key, model)
        assert error_code(response) == "model_not_found"
    assert client.get("/v1/models/bge").status_code == 401


def test_health_and_readiness_once_objects_are_loaded(client: TestClient) -> None:
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200


def test_metrics_count_requests_by_key_id_tenant_model_dialect_and_status(
    client: TestClient,
) -> None:
    rerank(client, KEY_BGE_ONLY)
    rerank(client, KEY_OTHER_NS)
    rerank(client, KEY_OTHER_NS)
    rerank(client, None)
    text = client.get("/metrics").text
    mine, theirs = parse_key(KEY_BGE_ONLY), parse_key(KEY_OTHER_NS)
    assert mine is not None and theirs is not None
    # Two tenants serving the same name keep series of their own.
    assert (
        f'kuberank_gateway_requests_total{{dialect="jina",key_id="{mine.key_id}",'
        f'model="bge",namespace="ns1",status="503"}} 1.0'
    ) in text
    assert (
        f'kuberank_gateway_requests_total{{dialect="jina",key_id="{theirs.key_id}",'
        f'model="bge",namespace="ns2",status="503"}} 2.0'
    ) in text
    assert (
        'kuberank_gateway_request_duration_seconds_count{dialect="jina",model="bge",'
        'namespace="ns2"} 2.0'
    ) in text
    assert (
        'kuberank_gateway_requests_total{dialect="jina",key_id="",model="",namespace="",'
        'status="401"}'
    ) in text
    assert mine.secret not in text and theirs.secret not in text


@pytest.mark.parametrize("path", ["/v1/rerank/", "/v2/rerank/"])
def test_a_trailing_slash_reaches_the_route_instead_of_a_redirect(
    client: TestClient, path: str
) -> None:
    response = rerank(client, KEY_ALL, path=path)
    assert response.status_code == 503  # routed and authenticated: the model has no replica
    assert error_code(response) == "no_ready_replica"


def test_a_path_prefix_an_ingress_forwards_unstripped_is_served() -> None:
    settings = GatewaySettings(max_body_bytes=4096, max_documents=3, path_prefix="/search/")
    with TestClient(create_app(settings, StaticSource(OBJECTS))) as prefixed:
        for path in ("/search/v1/rerank", "/search/v1/rerank/", "/v1/rerank"):
            response = rerank(prefixed, KEY_ALL, path=path)
            assert error_code(response) == "no_ready_replica", path  # routed, authenticated
        assert error_code(rerank(prefixed, KEY_ALL, path="/searching/v1/rerank")) == "unknown_path"
        wrong = rerank(prefixed, KEY_ALL, path="/search/v1/reranks/")
        assert wrong.json()["error"]["message"] == "no such path: POST /search/v1/reranks/"
    for wrong in ("no-slash", "/v1", "/rerank/", "/healthz", "/models"):
        with pytest.raises(ValueError, match="path_prefix"):
            GatewaySettings(path_prefix=wrong)


def test_a_model_still_loading_says_so_in_its_503() -> None:
    loading = {**rerankmodel("loading"), "status": {"conditions": [
        {"type": "Available", "status": "False", "reason": "NoReplicasReady",
         "message": "No replica is ready yet (fetching or loading)."}]}}
    settings = GatewaySettings(max_body_bytes=4096, max_documents=3)
    with TestClient(create_app(settings, StaticSource([*OBJECTS, loading]))) as fresh:
        response = rerank(fresh, KEY_ALL, {"model": "loading", "query": "q", "documents": ["a"]})
        assert error_code(response) == "no_ready_replica"
        assert response.json()["error"]["message"] == (
            "model 'loading' has no ready replica: its replicas are still fetching or loading "
            "the model")
        assert response.headers["retry-after"]


def test_series_of_deleted_keys_and_models_leave_after_one_scrape_reads_them(
    client: TestClient,
) -> None:
    rerank(client, KEY_BGE_ONLY)
    rerank(client, KEY_ALL, {"model": "minilm", "query": "q", "documents": ["a"]})
    rerank(client, KEY_OTHER_NS)
    mine, other = parse_key(KEY_BGE_ONLY), parse_key(KEY_OTHER_NS)
    assert mine is not None and other is not None
    gateway = client.app.state.gateway  # type: ignore[attr-defined]
    gateway.keys.remove("ns1", "bge-only")
    gateway.routes.remove_model("ns1", "minilm")
    assert client.head("/metrics").status_code == 200  # a probe, no scrape: nothing moves on
    last = client.get("/metrics").text  # the requests since the scrape before are read
    assert mine.key_id in last and 'model="minilm"' in last
    text = client.get("/metrics").text
    assert mine.key_id not in text  # its key is gone
    assert 'model="minilm"' not in text  # its model is gone, with every metric's series
    assert 'namespace="ns1"' in text and 'model="bge"' in text  # the rest stay
    assert (
        f'kuberank_gateway_requests_total{{dialect="jina",key_id="{other.key_id}",'
        f'model="bge",namespace="ns2",status="503"}} 1.0'
    ) in text


def test_openapi_document_is_valid_and_states_bodies_and_every_refusal(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    validate(document)
    operation_ids = [op["operationId"] for item in document["paths"].values()
                     for op in item.values()]
    assert len(operation_ids) == len(set(operation_ids))
    for path in ("/v1/rerank", "/rerank", "/v2/rerank"):
        operation = document["paths"][path]["post"]
        assert operation["requestBody"]["required"] is True
        assert set(operation["responses"]) == {
            "200", "400", "401", "403", "404", "408", "413", "415", "422", "429", "500", "503",
            "504"}
    paths = document["paths"]
    assert {"200", "401"} <= set(paths["/v1/models"]["get"]["responses"])
    assert set(paths["/v1/models/{model_id}"]["get"]["responses"]) == {"200", "401", "404"}
    assert "503" in paths["/readyz"]["get"]["responses"]
    assert "text/plain" in paths["/metrics"]["get"]["responses"]["200"]["content"]
    # Generated clients send a key (they sent none: 401 on every call), in either header.
    schemes = document["components"]["securitySchemes"]
    assert {(s["type"], s.get("scheme"), s.get("name")) for s in schemes.values()} == {
        ("http", "bearer", None), ("apiKey", None, "X-API-Key")}
    for path in ("/v1/rerank", "/rerank", "/v2/rerank", "/v1/models", "/v1/models/{model_id}",
                 "/models/{model}/rerank"):
        for operation in paths[path].values():
            assert operation["security"] == [{name: []} for name in schemes], path
    # The model in the path (TEI's clients send none in the body), for each dialect.
    for path in ("/v1/rerank", "/rerank", "/v2/rerank"):
        by_path = paths[f"/models/{{model}}{path}"]["post"]
        assert by_path["requestBody"] == paths[path]["post"]["requestBody"]
        assert set(by_path["responses"]) == set(paths[path]["post"]["responses"])
        assert [p["name"] for p in by_path["parameters"] if p["in"] == "path"] == ["model"]
    for path in ("/healthz", "/readyz", "/metrics"):
        assert "security" not in paths[path]["get"], path
    # Client generators name enum members by upper-cased value: two alike crashed one.
    def enums(node: Any) -> Iterator[list[Any]]:
        if isinstance(node, dict):
            if isinstance(node.get("enum"), list):
                yield node["enum"]
            for value in node.values():
                yield from enums(value)
        elif isinstance(node, list):
            for value in node:
                yield from enums(value)

    for members in enums(document):
        upper = [str(m).upper() for m in members]
        assert len(upper) == len(set(upper)), members
    listed = paths["/v1/models"]["get"]["responses"]["200"]["content"]["application/json"]
    assert listed["schema"] == {"$ref": "#/components/schemas/ModelList"}
    card = document["components"]["schemas"]["ModelCard"]
    assert set(card["required"]) >= {"id", "created", "owned_by", "root", "ready", "state"}


def test_every_get_answers_head_as_well(client: TestClient) -> None:
    assert client.head("/healthz").status_code == 200
    assert client.head("/readyz").status_code == 200
    metrics = client.head("/metrics")
    assert (metrics.status_code, metrics.content) == (200, b"")
    assert metrics.headers["content-type"].startswith("text/plain")
    assert client.head("/v1/models").status_code == 401  # as its GET: a key is needed
    listed = client.head("/v1/models", headers={"authorization": f"Bearer {KEY_ALL}"})
    assert (listed.status_code, listed.content) == (200, b"")


def test_access_log_is_one_json_line_per_request_without_the_key(
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = GatewaySettings(max_body_bytes=4096, max_documents=3, access_log=True)
    with caplog.at_level(logging.INFO, logger="kuberank.gateway.access"), TestClient(
        create_app(settings, StaticSource(OBJECTS))
    ) as logged:
        rerank(logged, KEY_BGE_ONLY, **{"x-request-id": "req-1"})
        rerank(logged, None)
    lines = [json.loads(r.getMessage()) for r in caplog.records
             if r.name == "kuberank.gateway.access"]
    parsed = parse_key(KEY_BGE_ONLY)
    assert parsed is not None
    assert lines[0] == {"request_id": "req-1", "key_id": parsed.key_id, "namespace": "ns1",
                        "model": "bge", "dialect": "jina", "status": 503,
                        "ms": lines[0]["ms"]}
    assert lines[0]["ms"] > 0
    assert (lines[1]["status"], lines[1]["key_id"], lines[1]["model"]) == (401, None, None)
    assert parsed.secret not in caplog.text


def test_no_access_log_unless_asked(client: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="kuberank.gateway.access"):
        rerank(client, KEY_BGE_ONLY)
    assert not [r for r in caplog.records if r.name == "kuberank.gateway.access"]


def test_a_huge_model_name_comes_back_cut_short(client: TestClient) -> None:
    response = rerank(client, KEY_ALL, {"model": "m" * 3_000, "query": "q", "documents": ["a"]})
    assert response.status_code == 404
    assert len(response.json()["error"]["message"]) < 200


def test_a_key_id_another_tenant_publishes_too_shares_neither_access_nor_budget() -> None:
    """ns2 publishes KEY_LIMITED's (public) id with a secret of its own: the ns1 key still
    authenticates as ns1, and the forger's requests spend only the forger's budget."""
    parsed = parse_key(KEY_LIMITED)
    assert parsed is not None
    forged = f"kr_{parsed.key_id}_{'f' * 32}"
    objects = [*OBJECTS, apikey("copycat", forged, namespace="ns2",
                                rateLimit={"requestsPerMinute": 1})]
    with TestClient(create_app(GatewaySettings(), StaticSource(objects))) as client:
        minilm = {"model": "minilm", "query": "q", "documents": ["a"]}  # served in ns1 only
        assert error_code(rerank(client, forged, minilm)) == "model_not_found"
        assert rerank(client, forged).status_code == 503  # admitted (ns2's bge has no replica)
        assert error_code(rerank(client, forged)) == "rate_limited"
        mine = rerank(client, KEY_LIMITED, minilm)
        assert mine.status_code == 503, mine.json()  # ns1's model, and its own minute
        assert error_code(rerank(client, KEY_LIMITED)) == "rate_limited"


def test_a_models_own_document_limit_wins_over_the_gateways_default(client: TestClient) -> None:
    body = {"model": "roomy", "query": "q", "documents": ["d"] * 5}
    assert rerank(client, KEY_ALL, body).status_code == 503  # admitted; no replica here
    refused = rerank(client, KEY_ALL, {**body, "documents": ["d"] * 6})
    assert refused.status_code == 422 and "limit of 5" in refused.json()["error"]["message"]
    default = rerank(client, KEY_ALL, {**body, "model": "minilm", "documents": ["d"] * 4})
    assert default.status_code == 422 and "limit of 3" in default.json()["error"]["message"]


class SlowToSync(StaticSource):
    """The fixed objects, but reported unsynced until the test says so (a gateway that has just
    started and not yet listed them)."""

    listed = False

    def synced(self) -> bool:
        return self.listed and super().synced()


def test_a_gateway_not_yet_synced_answers_503_where_it_would_refuse_for_not_knowing() -> None:
    source = SlowToSync(OBJECTS)
    with TestClient(create_app(GatewaySettings(), source)) as client:
        not_ready = client.get("/readyz")
        assert not_ready.status_code == 503 and error_code(not_ready) == "gateway_starting"
        starting = rerank(client, generate_key())
        assert starting.status_code == 503 and error_code(starting) == "gateway_starting"
        assert starting.headers["retry-after"] == "1"
        assert rerank(client, None).status_code == 401  # no key at all: nothing to wait for
        source.listed = True
        assert client.get("/readyz").status_code == 200
        assert rerank(client, generate_key()).status_code == 401
        assert error_code(rerank(client, KEY_ALL, {"model": "nope", "query": "q",
                                                   "documents": ["a"]})) == "model_not_found"


def test_a_fault_of_the_gateways_own_is_a_counted_500_with_its_request_id(
    client: TestClient, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Such a 500 went past the request's metrics (the chart's 5xx alert never saw one) and
    its request id. The fault is planted: the one a probe found (an alias and a lone
    surrogate) is mended in ``with_model``."""
    async def broken(*_: Any) -> Any:
        raise RuntimeError("planted fault")

    monkeypatch.setattr(gateway_rerank, "_rerank", broken)
    with caplog.at_level(logging.ERROR, logger="kuberank.gateway.rerank"):
        answer = rerank(client, KEY_ALL, **{"x-request-id": "fault-1"})
    assert answer.status_code == 500 and error_code(answer) == "internal_error"
    assert answer.headers["x-request-id"] == "fault-1"
    assert answer.headers["connection"] == "close"
    assert "planted fault" in caplog.text and "fault-1" in caplog.text
    assert ('kuberank_gateway_requests_total{dialect="jina",key_id="",model="",namespace="",'
            'status="500"} 1.0') in client.get("/metrics").text
