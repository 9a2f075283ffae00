"""A bound on the request bodies a process holds at once.

Each body is capped on its own (413), but a burst of large ones is not: 48 concurrent 16 MiB
bodies took a runtime past 2.5 GB while they were inflated, parsed and tokenized, and 70 stalled
7 MiB uploads took the gateway past its 512 MiB limit. A request reserves its body's bytes as
they arrive (and, once a compressed body has arrived, what it may inflate to; past that, what it
really inflates to, step by step, so a body compressed 1000:1 is refused as it grows rather than
held at a sixteenth of its size) and holds them until it is answered; a chunk that does not fit
while other requests hold theirs is refused with 429 ``queue_full`` and Retry-After, like a full
queue. Counting what arrives, not the declared length, means a client holds only what it has
really sent (four connections declaring 8 MiB and sending nothing once refused everyone), and a
request answered before its body is read (a 401) never counts. One request always fits, however
large: the bound never makes a valid request impossible. Where the app names who a body is
charged to (the gateway: the key's namespace, in ``scope["state"]``, before it reads the body),
one tenant's requests hold at most half the bound while another of its requests is in: a tenant
that stalls or floods uploads cannot refuse every other tenant.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from kuberank.protocol.body import INFLATING_STATE
from kuberank.protocol.errors import RateLimited
from starlette.types import ASGIApp, Message, Receive, Scope, Send

COMPRESSION_ALLOWANCE = 16  # JSON text rarely compresses better; the cap bounds the rest


OWNER_SHARE = 0.5  # of the bound, the most one owner's requests hold while others come
OWNER_STATE = "body_owner"  # in scope["state"]: who the body is charged to, once known


@dataclass
class _Held:
    """What one owner's requests hold."""

    bytes: int = 0
    requests: int = 0


class BodyBudget:
    """Bytes reserved by the requests in progress, up to ``limit``, and at most ``share`` of it
    for one owner (the gateway's tenant, known once the key is checked). Thread-safe, no I/O."""

    def __init__(self, limit: int, share: float = OWNER_SHARE) -> None:
        self.limit = limit
        self.share = share
        self.reserved = 0
        self._holders = 0
        self._by_owner: dict[str, _Held] = {}
        self._lock = threading.Lock()

    def try_reserve(self, size: int, owner: str | None = None, *, holding: bool = False) -> bool:
        """Reserve ``size`` more bytes for a request (``holding``: one that already holds
        some). Refused past the limit while another request holds bytes, or past the owner's
        share while another of its requests does; a request alone always fits."""
        with self._lock:
            others = self._holders - (1 if holding else 0)
            if others and self.reserved + size > self.limit:
                return False
            mine = self._by_owner.get(owner, _Held()) if owner is not None else None
            if (mine is not None and mine.requests - (1 if holding else 0) > 0
                    and mine.bytes + size > self.limit * self.share):
                return False
            self.reserved += size
            self._holders += 0 if holding else 1
            if owner is not None:
                held = self._by_owner.setdefault(owner, _Held())
                held.bytes += size
                held.requests += 0 if holding else 1
            return True

    def release(self, size: int, owner: str | None = None) -> None:
        """Give back all a request held (it held some: ``try_reserve`` said yes once)."""
        with self._lock:
            self.reserved -= size
            self._holders -= 1
            if owner is not None:
                held = self._by_owner[owner]
                held.bytes -= size
                held.requests -= 1
                if not held.requests:
                    del self._by_owner[owner]


def reserved_size(received: int, compressed: bool, cap: int) -> int:
    """What a body of ``received`` bytes may grow to in memory: itself, or up to
    COMPRESSION_ALLOWANCE times that when it is inflated; never past ``cap``, where inflating
    stops (413)."""
    return min(cap, received * COMPRESSION_ALLOWANCE if compressed else received)


def _compressed(headers: list[tuple[bytes, bytes]]) -> bool:
    return any(name == b"content-encoding" and value.strip().lower() not in (b"", b"identity")
               for name, value in headers)


class BodyBudgetMiddleware:
    """Reserves each request body's bytes in ``budget`` as they arrive, until the answer is
    sent; a chunk that does not fit is refused from inside the app's own read (429)."""

    def __init__(self, app: ASGIApp, budget: BodyBudget, max_body_bytes: int,
                 retry_after: int = 1) -> None:
        self.app = app
        self.budget = budget
        self.max_body_bytes = max_body_bytes
        self.retry_after = retry_after

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        compressed = _compressed(scope["headers"])
        received = held = 0
        holding = False
        owner: str | None = None

        def reserve(size: int) -> None:
            nonlocal held, holding, owner
            if not holding:  # charged to one owner for the request's life
                owner = (scope.get("state") or {}).get(OWNER_STATE)
            if not self.budget.try_reserve(size, owner, holding=holding):
                tenant = (f", {self.budget.share:.0%} of it for one tenant"
                          if owner is not None else "")
                raise RateLimited(
                    f"the server is holding {self.budget.reserved} bytes of request bodies "
                    f"(its limit is {self.budget.limit}{tenant}); retry shortly",
                    code="queue_full", retry_after=self.retry_after)
            held, holding = held + size, True

        def inflating(size: int) -> None:  # read_body's inflation, in a worker thread
            reserve(max(0, received + size - held))  # the compressed body is still held too

        scope.setdefault("state", {})[INFLATING_STATE] = inflating

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] != "http.request":
                return message
            received += len(message.get("body", b""))
            # Past the cap the app answers 413 as it reads this chunk: nothing more to hold.
            grown = min(received, self.max_body_bytes) - held
            if grown > 0 or not holding:
                reserve(max(0, grown))
            if compressed and not message.get("more_body", False):
                reserve(max(0, reserved_size(received, True, self.max_body_bytes) - held))
            return message

        try:
            await self.app(scope, counted, send)
        finally:
            if holding:
                self.budget.release(held, owner)
