"""A runtime's answer is read up to a bound: a replica running a tenant's own image cannot make
the shared gateway buffer gigabytes. Real HTTP on loopback, aiohttp on both ends."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web
from kuberank.gateway.balancer import Balancer
from kuberank.gateway.metrics import GatewayMetrics
from kuberank.gateway.routing import ModelRoute
from kuberank.gateway.upstream import Upstream, max_answer_bytes, new_client
from kuberank.protocol.errors import Unavailable

pytestmark = pytest.mark.unit

LIMIT = 64 * 1024
ROUTE = ModelRoute(namespace="ns", name="m", served_name="m")


async def _sized(request: web.Request) -> web.Response:
    return web.Response(body=b"x" * int(request.query["n"]))


async def _streamed(request: web.Request) -> web.StreamResponse:
    """Chunked, no Content-Length: only counting what arrives can stop it."""
    response = web.StreamResponse()
    await response.prepare(request)
    for _ in range(int(request.query["chunks"])):
        await response.write(b"y" * 16384)
    await response.write_eof()
    return response


async def _forward(path: str, metrics: GatewayMetrics) -> bytes:
    app = web.Application()
    app.router.add_post("/sized", _sized)
    app.router.add_post("/streamed", _streamed)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    http = new_client(10.0, 2.0)
    try:
        upstream = Upstream(http, Balancer(), metrics, 1, LIMIT)
        answer = await upstream.forward(ROUTE, [f"127.0.0.1:{port}"], path, b"{}", "rid")
        return answer.body
    finally:
        await http.close()
        await runner.cleanup()


def test_an_answer_within_the_bound_is_passed_whole() -> None:
    assert asyncio.run(_forward(f"/sized?n={LIMIT}", GatewayMetrics())) == b"x" * LIMIT
    assert asyncio.run(_forward("/streamed?chunks=2", GatewayMetrics())) == b"y" * 32768


@pytest.mark.parametrize("path", [f"/sized?n={LIMIT + 1}", "/streamed?chunks=1000"])
def test_an_answer_past_the_bound_is_a_503_and_counted(path: str) -> None:
    metrics = GatewayMetrics()
    with pytest.raises(Unavailable, match=f"answered more than {LIMIT} bytes"):
        asyncio.run(_forward(path, metrics))
    labels = {"namespace": "ns", "model": "m", "kind": "protocol"}
    assert metrics.registry.get_sample_value("kuberank_gateway_upstream_errors_total", labels) == 1


def test_the_bound_leaves_room_for_every_document_echoed_back_escaped() -> None:
    assert max_answer_bytes(8 << 20) >= 6 * (8 << 20)
