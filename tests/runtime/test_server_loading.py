"""/health and /v1/rerank while the model is still loading, with the real engine held back."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from kuberank.runtime.app import create_app
from kuberank.runtime.engine import Engine
from kuberank.runtime.model import RankContext, RankModel
from kuberank.runtime.settings import RuntimeSettings

pytestmark = pytest.mark.runtime


class HeldEngine(Engine):
    """The real engine, whose model load waits until the test releases it."""

    release = threading.Event()

    def _load(self) -> tuple[RankModel, list[RankContext]]:
        assert self.release.wait(60)
        return super()._load()


@pytest.fixture
def held_server(tiny_model: Path) -> Iterator[tuple[str, HeldEngine]]:
    settings = RuntimeSettings(model=tiny_model, threads=1, host="127.0.0.1", port=0)
    engine = HeldEngine(settings)
    server = uvicorn.Server(uvicorn.Config(create_app(settings, engine), host="127.0.0.1",
                                           port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", engine
    finally:
        engine.release.set()
        server.should_exit = True
        thread.join(30)


def test_health_is_503_json_while_loading_then_200(
    held_server: tuple[str, HeldEngine],
) -> None:
    url, engine = held_server
    with httpx.Client(base_url=url, timeout=30) as client:
        loading = client.get("/health")
        assert loading.status_code == 503
        assert loading.json()["error"]["code"] == "model_loading"
        r = client.post("/v1/rerank", json={"query": "q", "documents": ["a"]})
        assert r.status_code == 503
        assert r.headers["retry-after"] == "5"
        engine.release.set()
        deadline = time.monotonic() + 30
        while client.get("/health").status_code != 200:
            assert time.monotonic() < deadline, "model never became ready"
            time.sleep(0.02)
        assert client.post("/v1/rerank", json={"query": "q", "documents": ["a"]}).status_code == 200
