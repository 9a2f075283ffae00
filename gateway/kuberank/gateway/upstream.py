"""Forwarding one request to a runtime replica: pick, send, and try another replica when the
first did no work.

A request is tried elsewhere (up to ``ATTEMPTS`` replicas) only when no answer can have come of
it: the connection failed, or the runtime said 429 (its queue is full, before scoring) or 503
(its model is not loaded, e.g. a pod still in the endpoints while it shuts down or after its
model failed; or it stopped at the end of its shutdown grace before finishing the request, whose
scoring then starts again elsewhere). If every replica tried refused, the last refusal is passed
on as the runtime wrote it (with its ``Retry-After``). A runtime that takes too long becomes
504; a replica that cannot be reached at all, or breaks the connection mid-answer, becomes 503.

The client is aiohttp rather than httpx: on this path (benchmarks/bench_gateway.py) switching
halved the gateway's CPU per forwarded request (0.98 -> 0.46 ms) and its added p50 latency.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import aiohttp
from kuberank.gateway.balancer import Balancer
from kuberank.gateway.metrics import GatewayMetrics
from kuberank.gateway.routing import ModelRoute
from kuberank.protocol.errors import Unavailable, UpstreamTimeout
from kuberank.protocol.requestid import HEADER as REQUEST_ID_HEADER
from kuberank.protocol.shaping import ANOTHER_REPLICA_HEADER, PROMPT_TOKENS_HEADER

# Response headers a runtime sets that the client should see; hop-by-hop ones are dropped
# (x-request-id is the gateway's own, set on every answer by RequestIdMiddleware).
PASSED_HEADERS = ("content-type", "retry-after")
ATTEMPTS = 3  # replicas tried per request, at most
ANSWER_CHUNK_BYTES = 64 * 1024
BUSY, NOT_LOADED = 429, 503  # a runtime's refusals, answered before any pair is scored


@dataclass(frozen=True)
class UpstreamResponse:
    status: int
    body: bytes
    headers: dict[str, str]
    endpoint: str
    usage_header: str | None = None


def new_client(upstream_timeout: float, connect_timeout: float) -> aiohttp.ClientSession:
    """One pooled session for every replica; keep-alive saves a handshake per request.

    Must be called with the event loop running (the app's lifespan).
    """
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=1000, limit_per_host=0, keepalive_timeout=30.0),
        timeout=aiohttp.ClientTimeout(total=upstream_timeout, sock_connect=connect_timeout),
        auto_decompress=False,
        trust_env=False,
    )


class Upstream:
    def __init__(
        self,
        http: aiohttp.ClientSession,
        balancer: Balancer,
        metrics: GatewayMetrics,
        retry_after: int,
        max_answer_bytes: int,
    ) -> None:
        self._http = http
        self._balancer = balancer
        self._metrics = metrics
        self._retry_after = retry_after
        # A runtime pod runs its model owner's image: what it answers is read up to a bound,
        # so one tenant's replica cannot fill the shared gateway's memory.
        self._max_answer_bytes = max_answer_bytes

    async def forward(
        self,
        route: ModelRoute,
        endpoints: list[str],
        path: str,
        body: bytes,
        request_id: str,
    ) -> UpstreamResponse:
        """Send ``body`` to ``path`` on the least busy replica; on to another one while the
        connection cannot be made or the replica refuses the work."""
        tried: frozenset[str] = frozenset()
        refused: UpstreamResponse | None = None
        headers = {"content-type": "application/json", REQUEST_ID_HEADER: request_id}
        timeout = self._http.timeout
        if route.timeout is not None:  # the model's own spec.limits.timeoutSeconds
            timeout = aiohttp.ClientTimeout(total=route.timeout, sock_connect=timeout.sock_connect)
        for attempt in range(ATTEMPTS):
            endpoint = self._balancer.pick(endpoints, exclude=tried)
            if endpoint is None:
                break
            tried |= {endpoint}
            another = attempt < ATTEMPTS - 1 and not tried.issuperset(endpoints)
            sent = {**headers, ANOTHER_REPLICA_HEADER: "1"} if another else headers
            try:
                with self._balancer.track(endpoint):
                    async with self._http.post(
                        f"http://{endpoint}{path}", data=body, headers=sent, timeout=timeout
                    ) as response:
                        content = await self._read_answer(route, response)
            except (aiohttp.ConnectionTimeoutError, aiohttp.ClientConnectorError):
                self._metrics.upstream_error(route, "connect")
                self._balancer.mark_failed(endpoint)
                continue
            except TimeoutError:
                self._metrics.upstream_error(route, "timeout")
                raise UpstreamTimeout(
                    f"model {route.served_name!r} did not answer within {timeout.total:g} s"
                ) from None
            except aiohttp.ClientError:
                self._metrics.upstream_error(route, "protocol")
                raise Unavailable(
                    f"model {route.served_name!r} replica failed mid-request",
                    retry_after=self._retry_after,
                ) from None
            passed = {k: v for k in PASSED_HEADERS if (v := response.headers.get(k)) is not None}
            answer = UpstreamResponse(response.status, content, passed, endpoint,
                                      response.headers.get(PROMPT_TOKENS_HEADER))
            if answer.status not in (BUSY, NOT_LOADED):
                return answer
            self._metrics.upstream_error(route, "refused")
            if answer.status == NOT_LOADED:
                self._balancer.mark_failed(endpoint)  # rests like an unreachable one
            refused = answer
        if refused is not None:
            return refused
        raise Unavailable(
            f"no replica of model {route.served_name!r} could be reached",
            retry_after=self._retry_after,
        )


    async def _read_answer(self, route: ModelRoute, response: aiohttp.ClientResponse) -> bytes:
        limit = self._max_answer_bytes
        if (response.content_length or 0) <= limit:
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.content.iter_chunked(ANSWER_CHUNK_BYTES):
                size += len(chunk)
                if size > limit:
                    break
                chunks.append(chunk)
            else:
                return b"".join(chunks)
        self._metrics.upstream_error(route, "protocol")
        raise Unavailable(f"model {route.served_name!r} replica answered more than {limit} bytes",
                          retry_after=self._retry_after)


def max_answer_bytes(max_body_bytes: int) -> int:
    """The largest answer a runtime may send: every document of the largest body echoed back,
    each character JSON-escaped at worst to six, plus room for scores and indexes."""
    return 6 * max_body_bytes + (1 << 20)


MAX_COUNT_DIGITS = 18  # a token count fits in far fewer; int() refuses past 4300 (a 500)


def header_tokens(header: str | None) -> int | None:
    """The tokens an ``x-prompt-tokens`` header reports, if it is a count (ASCII digits, a
    sane number of them: whatever a runtime sends must not fail the request)."""
    count = (header or "").strip()
    ok = count.isascii() and count.isdigit() and len(count) <= MAX_COUNT_DIGITS
    return int(count) if ok else None


def usage_tokens(body: bytes) -> int:
    """Tokens a runtime's answer body reports (0 when it reports none), for a runtime that
    sends no ``x-prompt-tokens`` header (``header_tokens``, read first): Jina/GPUStack bodies
    carry ``usage.total_tokens``, Cohere v2 ``meta.tokens.input_tokens``; TEI's bare list none.
    """
    try:
        payload: Any = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return 0
    if not isinstance(payload, dict):
        return 0
    usage = payload.get("usage")
    if isinstance(usage, dict):
        return _as_int(usage.get("total_tokens", usage.get("prompt_tokens")))
    meta = payload.get("meta")
    if isinstance(meta, dict):
        tokens = meta.get("tokens")
        if isinstance(tokens, dict):
            return _as_int(tokens.get("input_tokens"))
    return 0


def _as_int(value: Any) -> int:
    return value if isinstance(value, int) and value > 0 else 0
