"""The bound on request bodies worked on at once: what each is counted at, and who fits."""

from __future__ import annotations

import asyncio
import gzip
from typing import Any

import pytest
from kuberank.protocol.body import read_body
from kuberank.protocol.budget import (
    COMPRESSION_ALLOWANCE,
    OWNER_STATE,
    BodyBudget,
    BodyBudgetMiddleware,
    reserved_size,
)
from kuberank.protocol.errors import ApiError, RateLimited, error_response
from starlette.requests import Request

pytestmark = pytest.mark.unit

CAP = 1 << 20


@pytest.mark.parametrize(("received", "compressed", "size"), [
    (1234, False, 1234),
    (1000, True, 1000 * COMPRESSION_ALLOWANCE),  # it inflates
    (900_000, True, CAP),  # inflating stops at the cap (413)
    (0, False, 0),
])
def test_a_body_is_counted_at_what_it_may_grow_to(received: int, compressed: bool,
                                                  size: int) -> None:
    assert reserved_size(received, compressed, CAP) == size


def test_bodies_fit_until_the_budget_is_spent_and_a_lone_one_always_fits() -> None:
    budget = BodyBudget(100)
    assert budget.try_reserve(500)  # alone: larger than the budget, still served
    assert not budget.try_reserve(1)
    budget.release(500)
    assert budget.try_reserve(60) and budget.try_reserve(40)
    assert not budget.try_reserve(1)
    budget.release(60)
    assert budget.try_reserve(60) and budget.reserved == 100


def test_a_request_grows_its_reservation_and_only_others_can_make_it_not_fit() -> None:
    budget = BodyBudget(100)
    assert budget.try_reserve(80)  # a body arriving: its first chunk
    assert budget.try_reserve(500, holding=True)  # its own later chunks: it is alone
    assert not budget.try_reserve(1)  # another request's first chunk
    budget.release(580)
    assert budget.try_reserve(50) and budget.try_reserve(30)  # two requests
    assert not budget.try_reserve(21, holding=True)  # the second grows past: the first holds
    assert budget.try_reserve(20, holding=True) and budget.reserved == 100


def test_one_tenant_holds_at_most_its_share_while_another_of_its_requests_is_in() -> None:
    budget = BodyBudget(100)  # half of it for one owner
    assert budget.try_reserve(40, "greedy")
    assert budget.try_reserve(10, "greedy")
    assert not budget.try_reserve(1, "greedy")  # 51 of its 50
    assert budget.try_reserve(45, "other")  # the rest stays for everyone else
    budget.release(40, "greedy")
    budget.release(10, "greedy")
    budget.release(45, "other")
    assert budget.reserved == 0
    assert budget.try_reserve(90, "lone")  # alone, a tenant may use all of it


def _post(app: Any, owner: str, body: bytes, stall: asyncio.Event | None = None,
          headers: list[tuple[bytes, bytes]] | None = None) -> Any:
    """One POST through ``app`` over real ASGI messages; its status, once answered."""
    async def run() -> int:
        chunks = [body[: len(body) // 2], body[len(body) // 2:]]
        sent: list[int] = []

        async def receive() -> dict[str, Any]:
            chunk = chunks.pop(0)
            if not chunks and stall is not None:
                await stall.wait()  # an upload that stops halfway, until released
            return {"type": "http.request", "body": chunk, "more_body": bool(chunks)}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                sent.append(message["status"])

        scope = {"type": "http", "method": "POST", "path": "/", "headers": headers or [],
                 "state": {OWNER_STATE: owner}}
        await app(scope, receive, send)
        return sent[0]
    return run()


def test_the_middleware_charges_each_tenant_and_refuses_past_its_share() -> None:
    async def reads_the_body(scope: Any, receive: Any, send: Any) -> None:
        try:
            while (await receive()).get("more_body"):
                pass
        except RateLimited as refused:
            await error_response(refused)(scope, receive, send)
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    budget = BodyBudget(1000)
    app = BodyBudgetMiddleware(reads_the_body, budget, max_body_bytes=800)

    async def scenario() -> list[int]:
        stall = asyncio.Event()
        stalled = [asyncio.create_task(_post(app, "greedy", b"x" * 400, stall))
                   for _ in range(3)]  # each holds half of its 400 bytes while stalled
        await asyncio.sleep(0.01)
        answers = [await _post(app, "greedy", b"y" * 300),  # 200 + 200 + 200 + 150 > 500
                   await _post(app, "other", b"z" * 300)]  # another tenant: served
        stall.set()
        answers += [await t for t in stalled]
        return answers

    greedy_refused, other, *stalled = asyncio.run(scenario())
    assert greedy_refused == 429 and other == 200
    # Of its three stalled uploads (200 bytes each so far) the third did not fit its share; of
    # the other two, finishing (400 each) fits one at a time: one is served, one refused.
    assert sorted(stalled) == [200, 429, 429]
    assert budget.reserved == 0  # every request gave back what it held


def test_a_body_that_inflates_past_its_allowance_is_held_to_what_it_inflates_to() -> None:
    """A compressed body was reserved at 16 times its size: 40 bodies of 8 KB that inflate to
    8 MB each took a gateway from 72 MiB to 824 MiB with 5 MiB reserved. It is now held to
    what it inflates to as it inflates, and refused once that no longer fits."""
    async def reads_the_body(scope: Any, receive: Any, send: Any) -> None:
        try:
            await read_body(Request(scope, receive), limit=8 << 20)
        except ApiError as refused:
            await error_response(refused)(scope, receive, send)
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    bomb = gzip.compress(b" " * (4 << 20))  # ~4 KB that inflates to 4 MiB
    gzipped = [(b"content-encoding", b"gzip")]
    budget = BodyBudget(1 << 20)
    app = BodyBudgetMiddleware(reads_the_body, budget, max_body_bytes=8 << 20)

    async def scenario() -> list[int]:
        stall = asyncio.Event()
        holding = asyncio.create_task(_post(app, "a", b"x" * 1000, stall))
        await asyncio.sleep(0.01)
        refused = await _post(app, "b", bomb, headers=gzipped)
        stall.set()
        return [refused, await holding, await _post(app, "b", bomb, headers=gzipped)]

    refused, held, alone = asyncio.run(scenario())
    assert refused == 429 and held == 200
    assert alone == 200  # a request alone always fits, however large
    assert budget.reserved == 0
