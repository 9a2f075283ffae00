"""The gateway's HTTP surface: authenticate, check, route and forward rerank requests.

The body is parsed with the runtime's own dialect parser (so the gateway refuses exactly what
the runtime would) and then forwarded unchanged, on the same path, to one replica (only a
``model`` that named an alias is replaced by the served name, the one name runtimes answer to).
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from kuberank.gateway.balancer import Balancer
from kuberank.gateway.bookkeeping import ThrottledWrites
from kuberank.gateway.keytable import AuthError, KeyRecord, KeyTable, presented_key
from kuberank.gateway.load import LoadMeter
from kuberank.gateway.metrics import GatewayMetrics
from kuberank.gateway.ratelimit import (
    InFlight,
    Limits,
    RateLimiter,
    estimated_tokens,
    quota_headers,
    retry_after_seconds,
)
from kuberank.gateway.reporting import LoadReporter
from kuberank.gateway.routing import ModelRoute, RoutingTable, with_model
from kuberank.gateway.scaler import Scaler
from kuberank.gateway.settings import GatewaySettings
from kuberank.gateway.sources import KubeSource, Source, StaticSource
from kuberank.gateway.upstream import (
    Upstream,
    header_tokens,
    max_answer_bytes,
    new_client,
    usage_tokens,
)
from kuberank.gateway.waking import Waker
from kuberank.protocol.body import off_the_loop, read_body
from kuberank.protocol.budget import OWNER_STATE, BodyBudget, BodyBudgetMiddleware
from kuberank.protocol.dialects import Dialect, check_document_count, parse_request
from kuberank.protocol.disconnect import unless_client_leaves
from kuberank.protocol.errors import (
    ApiError,
    BadRequest,
    Forbidden,
    ModelNotFound,
    PayloadTooLarge,
    RateLimited,
    Unauthorized,
    Unavailable,
    Unprocessable,
    UnsupportedMediaType,
    UpstreamTimeout,
    error_response,
    install_error_handlers,
    quoted,
)
from kuberank.protocol.openapi import ERRORS as ERROR_TEXT
from kuberank.protocol.openapi import document_request_bodies, rerank_responses
from kuberank.protocol.paths import PathNormalizer
from kuberank.protocol.requestid import RequestIdMiddleware, request_id
from kuberank.protocol.schemas import ErrorResponse
from prometheus_client import CONTENT_TYPE_LATEST

log = logging.getLogger(__name__)
access_log = logging.getLogger("kuberank.gateway.access")

ERRORS = (BadRequest, Unauthorized, Forbidden, ModelNotFound, PayloadTooLarge,
          UnsupportedMediaType, Unprocessable, RateLimited, Unavailable, UpstreamTimeout)


@dataclass
class Gateway:
    """Everything a request needs, created once per app in the lifespan."""

    settings: GatewaySettings
    source: Source
    keys: KeyTable = field(default_factory=KeyTable)
    routes: RoutingTable = field(default_factory=RoutingTable)
    limiter: RateLimiter = field(default_factory=RateLimiter)
    balancer: Balancer = field(default_factory=Balancer)
    metrics: GatewayMetrics = field(default_factory=GatewayMetrics)
    upstream: Upstream | None = None
    scaler: Scaler | None = None  # the API writes; None when serving a fixed file of objects
    waker: Waker | None = None
    key_uses: ThrottledWrites = field(default_factory=ThrottledWrites)  # status.lastUsedTime
    load: LoadMeter = field(default_factory=LoadMeter)
    in_flight: InFlight = field(default_factory=InFlight)  # per key, for concurrentRequests
    peers: tuple[str, str] | None = None  # the gateway's own Service (namespace, name)
    draining: threading.Event = field(default_factory=threading.Event)  # set on SIGTERM


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


def default_source(settings: GatewaySettings) -> Source:
    if settings.objects_file:
        return StaticSource.from_file(settings.objects_file)
    return KubeSource(settings.kubeconfig, settings.namespaces, _peers(settings))


def _peers(settings: GatewaySettings) -> tuple[str, str] | None:
    if not settings.peers:
        return None
    namespace, _, service = settings.peers.partition("/")
    return namespace, service


def _gateway_replicas(gateway: Gateway) -> int:
    """Ready replicas behind the gateway's Service (1 when not configured or none seen yet)."""
    peers = gateway.peers
    return max(1, len(gateway.routes.service_endpoints(*peers))) if peers else 1


def create_app(settings: GatewaySettings, source: Source | None = None) -> FastAPI:
    gateway = Gateway(settings=settings, source=source or default_source(settings),
                      peers=_peers(settings))

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        http = new_client(settings.upstream_timeout, settings.connect_timeout)
        gateway.upstream = Upstream(http, gateway.balancer, gateway.metrics, settings.retry_after,
                                    max_answer_bytes(settings.max_body_bytes))
        gateway.source.start(gateway.keys, gateway.routes)
        gateway.scaler = scaler = gateway.source.scaler()
        gateway.waker = Waker(scaler, gateway.routes, gateway.metrics, settings.retry_after)
        reporting = None
        if scaler is not None:
            reporter = LoadReporter(scaler, gateway.routes, gateway.load, settings.instance,
                                    settings.load_report_seconds)
            reporting = asyncio.create_task(reporter.run())
        try:
            yield
        finally:
            if reporting is not None:
                reporting.cancel()
            gateway.source.stop()
            await http.close()

    app = FastAPI(title="kuberank gateway", lifespan=lifespan, docs_url=None, redoc_url=None,
                  redirect_slashes=False)
    app.state.gateway = gateway
    install_error_handlers(app)
    app.add_middleware(BodyBudgetMiddleware, budget=BodyBudget(settings.max_inflight_body_bytes),
                       max_body_bytes=settings.max_body_bytes, retry_after=settings.retry_after)
    app.add_middleware(RequestIdMiddleware)
    app.add_middleware(PathNormalizer, prefix=settings.path_prefix)

    for dialect in Dialect:
        app.add_api_route(
            dialect.value,
            _rerank_endpoint(gateway, dialect),
            methods=["POST"],
            name=f"rerank_{dialect.name.lower()}",
            responses=rerank_responses(dialect, ERRORS),
        )

    keyed: dict[int | str, dict[str, Any]] = {
        401: {"model": ErrorResponse, "description": ERROR_TEXT[401]}}

    @app.get("/v1/models", responses=keyed)
    async def models(request: Request) -> dict[str, Any]:
        key = _authenticate(gateway, request)
        cards = [_model_card(gateway, name, route)
                 for name, route in gateway.routes.names_in(key.namespace)
                 if _may_use(key, name, route)]
        return {"object": "list", "data": cards}

    @app.get("/v1/models/{model_id:path}", responses={
        **keyed, 404: {"model": ErrorResponse, "description": "No such model for this key."}})
    async def model(model_id: str, request: Request) -> dict[str, Any]:
        """OpenAI's retrieve: one card of the list above, 404 for any other name."""
        key = _authenticate(gateway, request)
        for name, route in gateway.routes.names_in(key.namespace):
            if name == model_id and _may_use(key, name, route):
                return _model_card(gateway, name, route)
        raise ModelNotFound(f"model {quoted(model_id)} is not served to this key")

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", responses={503: {
        "model": ErrorResponse, "description": "Draining, or the caches are not synced yet."}})
    async def readyz() -> JSONResponse:
        if gateway.draining.is_set():
            return error_response(Unavailable("shutting down: draining", code="draining"))
        if not gateway.source.synced():
            return error_response(Unavailable(
                "the gateway is starting: its keys and models are not loaded yet",
                code="gateway_starting", retry_after=1))
        return JSONResponse({"status": "ready"})

    # Some load balancers probe with HEAD; kept out of the schema (one operation per path).
    for path, probe in (("/healthz", healthz), ("/readyz", readyz)):
        app.add_api_route(path, probe, methods=["HEAD"], include_in_schema=False)

    @app.get("/metrics", response_class=PlainTextResponse,
             responses={200: {"content": {"text/plain": {}}}})
    async def metrics() -> Response:
        gateway.metrics.keys.set(len(gateway.keys))
        if gateway.source.synced():  # empty tables before the first list mean nothing yet
            gateway.metrics.forget_gone(gateway.routes.served_names(), gateway.keys.key_ids())
        return Response(gateway.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    document_request_bodies(app)
    return app


def _model_card(gateway: Gateway, name: str, route: ModelRoute) -> dict[str, Any]:
    """An OpenAI-style model object; an alias names its model in ``root`` (as vLLM does), and
    ``state`` tells a client what its next request meets."""
    ready = bool(gateway.routes.endpoints(route))
    return {
        "id": name,
        "object": "model",
        "owned_by": route.namespace,
        "root": route.served_name,
        "ready": ready,
        "state": _state(route, ready),
    }


def _state(route: ModelRoute, ready: bool) -> str:
    if ready:
        return "ready"
    if route.replicas == 0:
        return "scaled_to_zero" if route.wake is not None else "stopped"
    return "failing" if route.failing else "starting"


def _may_use(key: KeyRecord, name: str, route: ModelRoute) -> bool:
    """A key listing a model's served name may use its aliases too, and one listing an alias
    may use that alias."""
    return key.allows(route.served_name) or key.allows(name)


def _rerank_endpoint(gateway: Gateway, dialect: Dialect) -> Any:
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


def _authenticate(gateway: Gateway, request: Request) -> KeyRecord:
    """The presented key's record, or 401. Its use goes to the ApiKey's status.lastUsedTime
    (in the background, at most once per ``key_use_seconds``)."""
    now = datetime.now(UTC)
    presented: str | None = None
    try:
        presented = presented_key(
            request.headers.get("authorization"), request.headers.get("x-api-key")
        )
        key = gateway.keys.authenticate(presented, now)
    except AuthError as err:
        _unless_starting(gateway, presented)
        raise Unauthorized(str(err)) from None
    if gateway.scaler is not None:
        record = gateway.scaler.record_key_use
        gateway.key_uses.submit(
            key.identity, gateway.settings.key_use_seconds,
            lambda: record(key.namespace, key.name, now),
            f"the use of ApiKey {key.namespace}/{key.name}",
        )
    return key


def _choose_model(gateway: Gateway, key: KeyRecord, requested: str | None) -> ModelRoute:
    """The route for the requested model (a served name or an alias); 403 before 404 so a key
    learns nothing about models it may not use. Without a model (TEI clients send none) the
    key's only model is used."""
    if not requested:
        # as /v1/models lists them: a key may reach a model through an alias it names
        usable = list({(r.namespace, r.name): r for name, r in gateway.routes.names_in(
            key.namespace) if _may_use(key, name, r)}.values())
        if not usable:
            raise ModelNotFound(f"no model is served to this key in namespace {key.namespace!r}")
        if len(usable) != 1:
            raise Unprocessable(
                "model: required (this key may use more than one model)", code="model_required"
            )
        return usable[0]
    route = gateway.routes.resolve(key.namespace, requested)
    if route is None or not _may_use(key, requested, route):
        if not key.allows(requested):
            raise Forbidden(f"this API key may not use model {quoted(requested)}")
        _unless_starting(gateway, requested)
        raise ModelNotFound(f"model {quoted(requested)} is not served here")
    return route


def _unless_starting(gateway: Gateway, asked: str | None) -> None:
    """Before its first lists of keys and models a gateway knows none: what it cannot find
    yet is a 503 to retry, not a 401 or 404 that clients take as final."""
    if asked and not gateway.source.synced():
        raise Unavailable("the gateway is starting: its keys and models are not loaded yet",
                          code="gateway_starting", retry_after=1)


async def _rerank(
    gateway: Gateway, dialect: Dialect, request: Request, labels: _Labels
) -> Response:
    settings = gateway.settings
    key = _authenticate(gateway, request)
    labels.key = key
    setattr(request.state, OWNER_STATE, key.namespace)  # its body counts against its tenant
    labels.limits = Limits(
        key.requests_per_minute, key.tokens_per_minute, key.concurrent_requests
    ).shared(_gateway_replicas(gateway))
    body = await read_body(request, settings.max_body_bytes, settings.read_timeout)
    parsed = await off_the_loop(len(body), parse_request, dialect, body)
    route = _choose_model(gateway, key, parsed.model)
    labels.model = route.served_name
    # The model's own limit when it sets one (up to HARD_MAX_DOCUMENTS), else the gateway's.
    check_document_count(len(parsed.documents), route.max_documents or settings.max_documents)

    cap = labels.limits.concurrent_here
    if not gateway.in_flight.enter(key.identity, cap):
        raise RateLimited(
            f"this API key already has {cap} request{'s' if cap != 1 else ''} in flight at this "
            f"gateway replica "
            f"(its limit: {key.concurrent_requests} at once)",
            code="concurrency_limited", retry_after=1,
        )
    try:
        estimate = (estimated_tokens(parsed.query, parsed.documents)
                    if labels.limits.tokens_per_minute else 0)
        wait = gateway.limiter.admit(key.identity, labels.limits, estimate)
        if wait > 0:
            raise RateLimited(
                "rate limit of this API key exceeded", retry_after=retry_after_seconds(wait)
            )
        used = 0
        try:
            with _in_flight(gateway, route):
                response, used = await _forward(gateway, dialect, request, key, route,
                                                parsed.model, body)
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
        if route.replicas == 0 and not why:  # it will not come back by itself
            why = ": spec.replicas is 0 (kubectl scale rrm --replicas=1 serves it)"
        elif route.starting and not why:
            why = ": its replicas are still fetching or loading the model"
        raise Unavailable(
            f"model {route.served_name!r} has no ready replica{why}",
            code="no_ready_replica",
            retry_after=settings.retry_after,
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
