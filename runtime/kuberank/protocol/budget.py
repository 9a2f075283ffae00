"""A bound on the request bodies a process holds at once.

Each body is capped on its own (413), but a burst of large ones is not: 48 concurrent 16 MiB
bodies took a runtime past 2.5 GB while they were read, inflated, parsed and tokenized, before
any queue limit applied. A request reserves its body's size (Content-Length, more for a
compressed body, the cap when no length is declared) for as long as it runs; one that does not
fit while others run gets 429 ``queue_full`` with Retry-After, like a full queue. One request
always fits, however large, so the cap never makes a valid request impossible.
"""

from __future__ import annotations

import threading

from kuberank.protocol.errors import RateLimited, error_response
from starlette.types import ASGIApp, Receive, Scope, Send

COMPRESSION_ALLOWANCE = 16


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


def body_size(headers: list[tuple[bytes, bytes]], cap: int) -> int:
    """What a request's body may grow to in memory: its declared length; a compressed one
    COMPRESSION_ALLOWANCE times that (JSON text rarely compresses better; the cap bounds the
    rest); ``cap`` when it declares no length (chunked)."""
    length: int | None = None
    compressed = False
    for name, value in headers:
        if name == b"content-encoding":
            compressed = value.strip().lower() not in (b"", b"identity")
        elif name == b"content-length" and value.strip().isdigit():
            length = int(value)
    if length is None:
        return cap
    return min(cap, length * COMPRESSION_ALLOWANCE if compressed else length)


class BodyBudgetMiddleware:
    """Reserves each POST's body size in ``budget`` while the request runs; 429 when full."""

    def __init__(self, app: ASGIApp, budget: BodyBudget, max_body_bytes: int,
                 retry_after: int = 1) -> None:
        self.app = app
        self.budget = budget
        self.max_body_bytes = max_body_bytes
        self.retry_after = retry_after

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        size = body_size(scope["headers"], self.max_body_bytes)
        if not self.budget.try_reserve(size):
            refused = RateLimited(
                f"the server is holding {self.budget.reserved} bytes of request bodies (its "
                f"limit is {self.budget.limit}); retry shortly",
                code="queue_full", retry_after=self.retry_after)
            await error_response(refused)(scope, receive, send)
            return
        try:
            await self.app(scope, receive, send)
        finally:
            self.budget.release(size)
