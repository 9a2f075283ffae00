"""A full replica's 429 is passed over for another replica; only the refusal that reaches the
client may hold the client a place in a runtime's queue (runtime/backlog.Promises): the gateway
says so on every try but the last. Real HTTP on loopback, aiohttp on both ends."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web
from kuberank.gateway.balancer import Balancer
from kuberank.gateway.metrics import GatewayMetrics
from kuberank.gateway.routing import ModelRoute
from kuberank.gateway.upstream import ATTEMPTS, Upstream, new_client
from kuberank.protocol.shaping import ANOTHER_REPLICA_HEADER

pytestmark = pytest.mark.unit

ROUTE = ModelRoute(namespace="ns", name="m", served_name="m")


async def _ask_full_replicas(count: int) -> tuple[int, list[str | None], str]:
    """Forward one request over ``count`` replicas that all refuse it: the status passed on,
    the header each replica was sent (in the order tried) and the Retry-After passed on."""
    seen: list[str | None] = []
    runners = []
    for i in range(count):
        async def full(request: web.Request, retry_after: str = str(10 + i)) -> web.Response:
            seen.append(request.headers.get(ANOTHER_REPLICA_HEADER))
            return web.json_response({"error": {"code": "queue_full"}}, status=429,
                                     headers={"retry-after": retry_after})

        app = web.Application()
        app.router.add_post("/v1/rerank", full)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        runners.append(runner)
    endpoints = [f"127.0.0.1:{runner.addresses[0][1]}" for runner in runners]
    http = new_client(10.0, 2.0)
    try:
        upstream = Upstream(http, Balancer(), GatewayMetrics(), 1, 1 << 20)
        answer = await upstream.forward(ROUTE, endpoints, "/v1/rerank", b"{}", "rid")
        return answer.status, seen, answer.headers["retry-after"]
    finally:
        await http.close()
        for runner in runners:
            await runner.cleanup()


def test_only_the_last_replica_tried_is_told_its_refusal_reaches_the_client() -> None:
    status, seen, retry_after = asyncio.run(_ask_full_replicas(2))
    assert status == 429 and seen == ["1", None]
    assert retry_after in ("10", "11")  # the last one's, whichever was tried last


def test_past_the_attempts_the_last_one_tried_is_the_last() -> None:
    status, seen, _ = asyncio.run(_ask_full_replicas(ATTEMPTS + 1))
    assert status == 429 and seen == ["1"] * (ATTEMPTS - 1) + [None]


def test_a_lone_replica_is_the_last_one() -> None:
    status, seen, retry_after = asyncio.run(_ask_full_replicas(1))
    assert status == 429 and seen == [None] and retry_after == "10"
