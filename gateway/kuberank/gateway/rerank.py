"""One rerank request through the gateway: authenticate, parse with the runtime's own dialect
parser (so the gateway refuses exactly what the runtime would), choose the model, admit it under
the key's limits, wake the model if need be and forward the body unchanged, on the same path, to
one replica (only a ``model`` that named an alias is replaced by the served name, the one name
runtimes answer to)."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from fastapi import Request, Response
from kuberank.gateway.access import authenticate, choose_model
from kuberank.gateway.context import Gateway
from kuberank.gateway.keytable import KeyRecord
from kuberank.gateway.modelpath import path_model
from kuberank.gateway.ratelimit import (
    Limits,
    estimated_tokens,
    quota_headers,
    retry_after_seconds,
)
from kuberank.gateway.routing import ModelRoute, with_model
from kuberank.gateway.upstream import header_tokens, usage_tokens
from kuberank.protocol.body import off_the_loop, read_body
from kuberank.protocol.budget import OWNER_STATE
from kuberank.protocol.dialects import Dialect, check_document_count, parse_request
from kuberank.protocol.disconnect import unless_client_leaves
from kuberank.protocol.errors import (
    ApiError,
    BadRequest,
    Forbidden,
    InternalError,
    ModelNotFound,
    PayloadTooLarge,
    RateLimited,
    RequestTimeout,
    Unauthorized,
    Unavailable,
    Unprocessable,
    UnsupportedMediaType,
    UpstreamTimeout,
    error_response,
    quoted,
)
from kuberank.protocol.requestid import request_id

log = logging.getLogger(__name__)
access_log = logging.getLogger("kuberank.gateway.access")

# Every refusal a rerank route can answer, for its OpenAPI responses.
ERRORS = (BadRequest, Unauthorized, Forbidden, ModelNotFound, RequestTimeout, PayloadTooLarge,
          UnsupportedMediaType, Unprocessable, RateLimited, InternalError, Unavailable,
          UpstreamTimeout)


@dataclass
class _Labels:
    """What a request resolved to, for its metrics and its rate-limit headers."""

    key: KeyRecord | None = None  # known from authentication on, before any model is
    model: str = ""
    limits: Limits = field(default_factory=Limits)

    @property
    def key_id(self) -> str:
        return self.key.key_id if self.key else ""

    @property
    def namespace(self) -> str:
        """The key's, which is the model's: namespaces are tenants."""
        return self.key.namespace if self.key else ""


def rerank_endpoint(gateway: Gateway, dialect: Dialect) -> Any:
    label = dialect.name.lower()

    async def rerank(request: Request) -> Response:
        started = time.perf_counter()
        labels = _Labels()
        try:
            response = await _rerank(gateway, dialect, request, labels)
        except ApiError as err:
            response = error_response(err)
            if err.status >= 500:
                log.warning(
                    "%s %s for key %s, request %s: %s",
                    dialect.value,
                    err.status,
                    labels.key_id or "-",
                    request_id(request),
                    err.message,
                )
        except Exception:
            # A fault of the gateway's own: answered here rather than by the app's last-resort
            # handler, so it is counted (the 5xx alert sees it) and keeps its request id.
            log.exception("%s: unhandled error for key %s, request %s", dialect.value,
                          labels.key_id or "-", request_id(request))
            response = error_response(InternalError("internal server error"))
            response.headers["connection"] = "close"  # what is left of the request goes unread
        else:
            if response.status_code >= 500:  # the runtime's own failure, passed on as it wrote it
                log.warning("%s %s from model %s/%s for key %s, request %s", dialect.value,
                            response.status_code, labels.namespace or "-", labels.model or "-",
                            labels.key_id or "-", request_id(request))
        if labels.key and (labels.limits.requests_per_minute or labels.limits.tokens_per_minute):
            quota = gateway.limiter.quota(labels.key.identity, labels.limits)
            response.headers.update(quota_headers(quota))
        seconds = time.perf_counter() - started
        gateway.metrics.observe_request(
            labels.key_id, labels.namespace, labels.model, label, response.status_code, seconds
        )
        if gateway.settings.access_log:
            access_log.info(json.dumps({
                "request_id": request_id(request), "key_id": labels.key_id or None,
                "namespace": labels.namespace or None, "model": labels.model or None,
                "dialect": label, "status": response.status_code,
                "ms": round(seconds * 1000, 2),
            }))
        return response

    return rerank


async def _rerank(
    gateway: Gateway, dialect: Dialect, request: Request, labels: _Labels
) -> Response:
    settings = gateway.settings
    key = authenticate(gateway, request)
    labels.key = key
    setattr(request.state, OWNER_STATE, key.namespace)  # its body counts against its tenant
    labels.limits = Limits(
        key.requests_per_minute, key.tokens_per_minute, key.concurrent_requests
    ).shared(gateway.replicas())
    body = await read_body(request, settings.max_body_bytes, settings.read_timeout)
    parsed = await off_the_loop(len(body), parse_request, dialect, body, count=False)
    in_path = path_model(request.scope)
    route = choose_model(gateway, key, in_path or parsed.model)
    same_model(gateway, key, route, parsed.model, in_path)
    requested = parsed.model or in_path
    labels.model = route.served_name
    # The model's own limit when it sets one (up to HARD_MAX_DOCUMENTS), else the gateway's.
    check_document_count(len(parsed.documents), route.max_documents or settings.max_documents)
    estimate = (estimated_tokens(parsed.query, parsed.documents)
                if labels.limits.tokens_per_minute else 0)
    del parsed  # only the body goes on: its parsed copy would double what the request holds

    cap = labels.limits.concurrent_here
    if not gateway.in_flight.enter(key.identity, cap):
        raise RateLimited(
            f"this API key already has {cap} request{'s' if cap != 1 else ''} in flight at this "
            f"gateway replica "
            f"(its limit: {key.concurrent_requests} at once)",
            code="concurrency_limited", retry_after=1,
        )
    try:
        wait = gateway.limiter.admit(key.identity, labels.limits, estimate)
        if wait > 0:
            raise RateLimited(
                "rate limit of this API key exceeded", retry_after=retry_after_seconds(wait)
            )
        used = 0
        try:
            with _in_flight(gateway, route):
                response, used = await _forward(gateway, dialect, request, key, route,
                                                requested, body)
                return response
        finally:  # what the runtime counted, against what admission reserved
            gateway.limiter.charge_tokens(key.identity, used, labels.limits, reserved=estimate)
    finally:
        gateway.in_flight.leave(key.identity)


@contextmanager
def _in_flight(gateway: Gateway, route: ModelRoute) -> Iterator[None]:
    """Count the request as in flight for its model (the autoscaler's load, the gauge)."""
    loop, key = asyncio.get_running_loop(), (route.namespace, route.name)
    gauge = gateway.metrics.requests_in_flight(route)
    metered = route.autoscaled  # only autoscaled models' load is ever reported
    if metered:
        gateway.load.enter(key, loop.time())
    gauge.inc()
    try:
        yield
    finally:
        if metered:
            gateway.load.leave(key, loop.time())
        gauge.dec()


def same_model(gateway: Gateway, key: KeyRecord, route: ModelRoute, in_body: str | None,
               in_path: str | None) -> None:
    """A body naming a model other than the path's (/models/<name>/...) is refused, not one
    of the two picked; two names of one model (its served name and an alias) are one model."""
    if not in_body or in_path is None or in_body == in_path:
        return
    other = gateway.routes.resolve(key.namespace, in_body)
    if other is None or (other.namespace, other.name) != (route.namespace, route.name):
        raise Unprocessable(f"model: {quoted(in_body)} is not the model the path names "
                            f"({quoted(in_path)}); name one, or the same in both",
                            code="model_mismatch")


async def _forward(gateway: Gateway, dialect: Dialect, request: Request, key: KeyRecord,
                   route: ModelRoute, requested: str | None, body: bytes,
                   ) -> tuple[Response, int]:
    """Wake the model if need be, send the request to one of its replicas; the answer and the
    tokens the runtime counted for it."""
    assert gateway.upstream is not None and gateway.waker is not None, "made in the lifespan"
    settings = gateway.settings
    endpoints = gateway.routes.endpoints(route)
    gateway.waker.note_request(route)
    if route.wake is not None and not endpoints:
        # asleep or starting: wake it and hold the request until it is ready
        endpoints = await unless_client_leaves(request, gateway.waker.ready_endpoints(route))
    if not endpoints:
        why = f": {route.failing}" if route.failing else ""
        stopped = route.replicas == 0 and not why
        if stopped:
            why = (f": spec.replicas is 0 (kubectl scale rrm {route.name} -n {route.namespace} "
                   "--replicas=1 serves it)")
        elif route.waiting and not why:
            why = f": {route.waiting}"
        elif route.starting and not why:
            why = ": its replicas are still fetching or loading the model"
        # Stopped, or failing until someone changes something, it will not come back by
        # itself: no Retry-After to wait for.
        raise Unavailable(
            f"model {route.served_name!r} has no ready replica{why}",
            code="no_ready_replica",
            retry_after=(None if stopped or route.failing_until_changed
                         else settings.retry_after),
        )

    if requested and requested != route.served_name:  # an alias
        body = await off_the_loop(len(body), with_model, body, route.served_name)
    # A client that leaves closes the upstream connection too, so the runtime stops scoring.
    forwarding = gateway.upstream.forward(
        route, endpoints, dialect.value, body, request_id(request)
    )
    answer = await unless_client_leaves(request, forwarding)
    tokens = 0
    if answer.status == 200:
        # Runtimes report the count in a header; only other servers' bodies need parsing.
        reported = header_tokens(answer.usage_header)
        tokens = (reported if reported is not None
                  else await off_the_loop(len(answer.body), usage_tokens, answer.body))
        if tokens:
            gateway.metrics.used_tokens(key.key_id, route, tokens)
    return Response(answer.body, status_code=answer.status, headers=answer.headers), tokens
