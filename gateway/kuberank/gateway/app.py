"""The gateway's app factory: its state, lifespan and middleware, the rerank routes of every
dialect (``rerank.py``), the model catalog (``catalog.py``), health probes and metrics."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from kuberank.gateway.catalog import catalog_router
from kuberank.gateway.context import Gateway
from kuberank.gateway.modelpath import ModelInPath, document_model_paths
from kuberank.gateway.reporting import LoadReporter
from kuberank.gateway.rerank import ERRORS, rerank_endpoint
from kuberank.gateway.settings import GatewaySettings
from kuberank.gateway.sources import KubeSource, Source, StaticSource
from kuberank.gateway.upstream import Upstream, max_answer_bytes, new_client
from kuberank.gateway.waking import Waker
from kuberank.protocol.budget import BodyBudget, BodyBudgetMiddleware
from kuberank.protocol.dialects import Dialect
from kuberank.protocol.errors import Unavailable, error_response, install_error_handlers
from kuberank.protocol.openapi import (
    document_request_bodies,
    require_api_keys,
    rerank_responses,
)
from kuberank.protocol.paths import HeadAsGet, PathNormalizer, is_head
from kuberank.protocol.requestid import RequestIdMiddleware
from kuberank.protocol.schemas import ErrorResponse
from prometheus_client import CONTENT_TYPE_LATEST


def default_source(settings: GatewaySettings) -> Source:
    if settings.objects_file:
        return StaticSource.from_file(settings.objects_file)
    return KubeSource(settings.kubeconfig, settings.namespaces, _peers(settings))


def _peers(settings: GatewaySettings) -> tuple[str, str] | None:
    if not settings.peers:
        return None
    namespace, _, service = settings.peers.partition("/")
    return namespace, service


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
    app.add_middleware(ModelInPath)  # inside PathNormalizer: sees the path it routes
    app.add_middleware(PathNormalizer, prefix=settings.path_prefix)
    app.add_middleware(HeadAsGet)

    for dialect in Dialect:
        app.add_api_route(
            dialect.value,
            rerank_endpoint(gateway, dialect),
            methods=["POST"],
            name=f"rerank_{dialect.name.lower()}",
            responses=rerank_responses(dialect, ERRORS),
        )
    app.include_router(catalog_router(gateway))

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


    @app.get("/metrics", response_class=PlainTextResponse,
             responses={200: {"content": {"text/plain": {}}}})
    async def metrics(request: Request) -> Response:
        gateway.metrics.keys.set(len(gateway.keys))
        # Empty tables before the first list mean nothing yet; a HEAD is no scrape (the series
        # of a deleted key are dropped at the scrape after the one that read their last counts).
        if gateway.source.synced() and not is_head(request.scope):
            gateway.metrics.forget_gone(gateway.routes.served_names(), gateway.keys.key_ids())
        return Response(gateway.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    document_request_bodies(app)
    document_model_paths(app)
    require_api_keys(app, open_paths=("/healthz", "/readyz", "/metrics"))
    return app
