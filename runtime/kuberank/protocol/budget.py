"""A bound on the request bodies a process works on at once.

Each body is capped on its own (413), but a burst of large ones is not: 48 concurrent 16 MiB
bodies took a runtime past 2.5 GB while they were inflated, parsed and tokenized, before any
queue limit applied. A request reserves its body's size once the body has arrived (more for a
compressed one, which inflates) and holds it until it is answered; one that does not fit while
others hold theirs gets 429 ``queue_full`` with Retry-After, like a full queue. Reserving on
arrival, not on the declared length, means a slow or stalled upload holds nothing (it holds a
connection, as before), and a request answered before its body is read (a 401) never counts.
One request always fits, however large, so the bound never makes a valid request impossible.
"""

from __future__ import annotations

import threading

from kuberank.protocol.errors import RateLimited
from starlette.types import ASGIApp, Message, Receive, Scope, Send

COMPRESSION_ALLOWANCE = 16  # JSON text rarely compresses better; the cap bounds the rest


class BodyBudget:
    """Bytes reserved by the requests in progress, up to ``limit``. Thread-safe, no I/O."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.reserved = 0
        self._holders = 0
        self._lock = threading.Lock()

    def try_reserve(self, size: int) -> bool:
        with self._lock:
            if self._holders and self.reserved + size > self.limit:
                return False
            self.reserved += size
            self._holders += 1
            return True

    def release(self, size: int) -> None:
        with self._lock:
            self.reserved -= size
            self._holders -= 1


def reserved_size(received: int, compressed: bool, cap: int) -> int:
    """What a body of ``received`` bytes may grow to in memory: itself, or up to
    COMPRESSION_ALLOWANCE times that when it is inflated; never past ``cap``, where inflating
    stops (413)."""
    return min(cap, received * COMPRESSION_ALLOWANCE if compressed else received)


def _compressed(headers: list[tuple[bytes, bytes]]) -> bool:
    return any(name == b"content-encoding" and value.strip().lower() not in (b"", b"identity")
               for name, value in headers)


class BodyBudgetMiddleware:
    """Reserves each request body in ``budget`` once it has arrived, until the answer is sent;
    a body that does not fit is refused from inside the app's own read (429 ``queue_full``)."""

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
        reserved = False

        async def counted() -> Message:
            nonlocal received, held, reserved
            message = await receive()
            if message["type"] != "http.request" or reserved:
                return message
            received += len(message.get("body", b""))
            if not message.get("more_body", False):
                size = reserved_size(received, compressed, self.max_body_bytes)
                if not self.budget.try_reserve(size):
                    raise RateLimited(
                        f"the server is working on {self.budget.reserved} bytes of request "
                        f"bodies (its limit is {self.budget.limit}); retry shortly",
                        code="queue_full", retry_after=self.retry_after)
                held, reserved = size, True
            return message

        try:
            await self.app(scope, counted, send)
        finally:
            if reserved:
                self.budget.release(held)
