import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient
from kuberank.protocol.body import read_body
from kuberank.protocol.errors import RateLimited, install_error_handlers
from kuberank.protocol.requestid import RequestIdMiddleware
from pydantic import BaseModel

pytestmark = pytest.mark.unit


class Item(BaseModel):
    n: int


def make_app() -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)
    app.add_middleware(RequestIdMiddleware)

    @app.get("/limited")
    async def limited() -> None:
        raise RateLimited("slow down", retry_after=7)

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("bug")

    @app.post("/typed")
    async def typed(item: Item) -> dict[str, int]:
        return {"n": item.n}

    @app.post("/raw")
    async def raw(request: Request) -> dict[str, int]:
        return {"size": len(await read_body(request, 10))}

    return app


@pytest.fixture
def client() -> TestClient:
    return TestClient(make_app(), raise_server_exceptions=False)


def test_api_error_becomes_json_with_retry_after(client: TestClient) -> None:
    r = client.get("/limited")
    assert r.status_code == 429
    assert r.headers["retry-after"] == "7"
    assert r.json() == {"error": {"message": "slow down", "type": "rate_limit_error",
                                  "code": "rate_limited"},
                        "detail": "slow down"}  # where Jina's clients read the message


def test_unhandled_exception_becomes_500_json(client: TestClient) -> None:
    r = client.get("/boom", headers={"x-request-id": "crash-1"})
    assert r.status_code == 500
    assert r.json()["error"]["type"] == "server_error"
    assert r.headers["x-request-id"] == "crash-1"  # answered outside the middleware, still named
    assert r.headers["connection"] == "close"  # the server closes it: clients must not reuse it


def test_every_error_answer_names_its_request(client: TestClient) -> None:
    for response in (client.get("/limited"), client.get("/nope"), client.post("/typed", json={})):
        assert len(response.headers["x-request-id"]) == 32


def test_unknown_route_is_404_json_naming_the_path_not_a_model(client: TestClient) -> None:
    r = client.get("/nope")
    assert r.status_code == 404
    assert r.json()["error"] == {"message": "no such path: GET /nope", "type": "not_found_error",
                                 "code": "unknown_path"}


def test_wrong_method_is_405_json_with_the_allowed_methods(client: TestClient) -> None:
    r = client.get("/typed")
    assert r.status_code == 405
    assert r.json()["error"]["code"] == "http_405"
    assert r.headers["allow"] == "POST"
    # A GET path answers HEAD too (HeadAsGet): its Allow says so.
    r = client.delete("/limited")
    assert r.status_code == 405 and r.headers["allow"] == "GET, HEAD"


def test_validation_error_is_422_and_bad_json_is_400(client: TestClient) -> None:
    assert client.post("/typed", json={"n": "x"}).status_code == 422
    r = client.post("/typed", content=b"{", headers={"content-type": "application/json"})
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "invalid_json"


def test_body_over_the_limit_is_413(client: TestClient) -> None:
    assert client.post("/raw", content=b"x" * 10).json() == {"size": 10}
    r = client.post("/raw", content=b"x" * 11)
    assert r.status_code == 413
    assert r.json()["error"]["code"] == "payload_too_large"


def test_streamed_body_over_the_limit_is_413(client: TestClient) -> None:
    r = client.post("/raw", content=iter([b"x" * 6, b"x" * 6]))
    assert r.status_code == 413
