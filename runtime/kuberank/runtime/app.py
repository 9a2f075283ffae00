"""FastAPI app of the runtime: the three rerank dialects, models, health and metrics."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from kuberank.protocol.body import off_the_loop, read_body
from kuberank.protocol.budget import BodyBudget, BodyBudgetMiddleware
from kuberank.protocol.dialects import Dialect, RerankRequest, parse_request
from kuberank.protocol.disconnect import unless_client_leaves
from kuberank.protocol.errors import (
    ApiError,
    BadRequest,
    InternalError,
    ModelNotFound,
    PayloadTooLarge,
    RateLimited,
    RequestTimeout,
    Unavailable,
    Unprocessable,
    UnsupportedMediaType,
    error_body,
    error_response,
    install_error_handlers,
    quoted,
)
from kuberank.protocol.openapi import document_request_bodies, rerank_responses
from kuberank.protocol.paths import HeadAsGet, PathNormalizer
from kuberank.protocol.requestid import RequestIdMiddleware, request_id
from kuberank.protocol.schemas import ErrorResponse
from kuberank.protocol.shaping import ANOTHER_REPLICA_HEADER, PROMPT_TOKENS_HEADER, shape_response
from kuberank.runtime.engine import Engine
from kuberank.runtime.settings import RuntimeSettings
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

USAGE = {PROMPT_TOKENS_HEADER: {"description": "Tokens evaluated (after truncation), in every "
                                "dialect; the gateway meters token limits by it.",
                                "schema": {"type": "integer"}}}


def _engine(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


async def _rerank(request: Request, dialect: Dialect) -> Response:
    engine = _engine(request)
    settings = engine.settings
    metrics = engine.metrics
    started = time.perf_counter()
    status = 500
    try:
        raw = await read_body(request, settings.max_body_bytes, settings.read_timeout)
        started = time.perf_counter()  # from the whole body on: an upload is the client's time
        parsed: RerankRequest = await off_the_loop(len(raw), parse_request, dialect, raw,
                                                   max_documents=settings.max_documents)
        if parsed.model is not None and parsed.model != settings.effective_served_name:
            raise ModelNotFound(f"model {quoted(parsed.model)} is not served here; this runtime "
                                f"serves {settings.effective_served_name!r}")
        metrics.documents.observe(len(parsed.documents))
        hold_place = ANOTHER_REPLICA_HEADER not in request.headers
        scored = await unless_client_leaves(request, engine.rerank(parsed, hold_place))
        metrics.tokens.inc(scored.prompt_tokens)
        metrics.truncations.inc(scored.truncated)
        body = shape_response(parsed, scored.scores, model=settings.effective_served_name,
                              prompt_tokens=scored.prompt_tokens,
                              normalize_default=settings.normalize,
                              response_id=request_id(request))
        # Every dialect reports the evaluated tokens here too: TEI's bare-list body has no
        # usage field, and the gateway charges tokens/minute limits from this header.
        answer = JSONResponse(body, headers={PROMPT_TOKENS_HEADER: str(scored.prompt_tokens)})
        status = 200  # once encoded: an answer that fails to encode is counted as the 500 it is
        return answer
    except ApiError as err:
        status = err.status
        return error_response(err)
    except asyncio.CancelledError:
        if not request.app.state.draining.is_set():
            raise
        # The server is stopping and gave up waiting for this one: answer it in the contract's
        # shape (uvicorn's own answer would be a bare-text 500).
        status = 503
        return error_response(Unavailable("the server stopped before this request finished; "
                                          "retry it", code="draining", retry_after=1))
    finally:
        metrics.requests.labels(dialect.value, str(status)).inc()
        metrics.latency.labels(dialect.value).observe(time.perf_counter() - started)


ERRORS = (BadRequest, ModelNotFound, RequestTimeout, PayloadTooLarge, UnsupportedMediaType,
          Unprocessable, RateLimited, InternalError, Unavailable)


def _rerank_router() -> APIRouter:
    router = APIRouter(tags=["rerank"])

    @router.post(Dialect.JINA.value, summary="Rerank (Jina / GPUStack shape)",
                 responses=rerank_responses(Dialect.JINA, ERRORS, USAGE))
    async def rerank_jina(request: Request) -> Response:
        return await _rerank(request, Dialect.JINA)

    @router.post(Dialect.TEI.value, summary="Rerank (text-embeddings-inference shape)",
                 responses=rerank_responses(Dialect.TEI, ERRORS, USAGE))
    async def rerank_tei(request: Request) -> Response:
        return await _rerank(request, Dialect.TEI)

    @router.post(Dialect.COHERE.value, summary="Rerank (Cohere v2 shape)",
                 responses=rerank_responses(Dialect.COHERE, ERRORS, USAGE))
    async def rerank_cohere(request: Request) -> Response:
        return await _rerank(request, Dialect.COHERE)

    return router


def _ops_router() -> APIRouter:
    router = APIRouter(tags=["operations"])

    @router.get("/health", responses={503: {
        "model": ErrorResponse, "description": "Loading (model_loading), failed to load "
        "(model_unavailable) or shutting down (draining)."}})
    async def health(request: Request) -> Response:
        engine = _engine(request)
        if request.app.state.draining.is_set():
            err = Unavailable("shutting down: draining", code="draining")
            return JSONResponse(error_body(err), status_code=503)
        if engine.state == "ready":
            return JSONResponse({"status": "ok"})
        message = ("model is loading" if engine.state == "loading"
                   else f"model is not available: {engine.error or engine.state}")
        err = Unavailable(message, code="model_loading" if engine.state == "loading"
                          else "model_unavailable")
        return JSONResponse(error_body(err), status_code=503)


    def card(request: Request) -> dict[str, Any]:
        return {"id": _engine(request).settings.effective_served_name, "object": "model",
                "owned_by": "kuberank", "created": int(request.app.state.started)}

    @router.get("/v1/models")
    async def models(request: Request) -> dict[str, Any]:
        return {"object": "list", "data": [card(request)]}

    @router.get("/v1/models/{model_id:path}", responses={
        404: {"model": ErrorResponse, "description": "Not the model this runtime serves."}})
    async def model(model_id: str, request: Request) -> dict[str, Any]:
        """OpenAI's retrieve: the served model's card, 404 for any other name."""
        served = card(request)
        if model_id != served["id"]:
            raise ModelNotFound(f"model {quoted(model_id)} is not served here (this runtime serves "
                                f"{served['id']!r})")
        return served

    @router.get("/metrics", response_class=PlainTextResponse,
                responses={200: {"content": {"text/plain": {}}}})
    async def metrics(request: Request) -> Response:
        return Response(generate_latest(_engine(request).metrics.registry),
                        media_type=CONTENT_TYPE_LATEST)

    return router


def create_app(settings: RuntimeSettings, engine: Engine | None = None,
               draining: threading.Event | None = None) -> FastAPI:
    """The runtime app; the engine starts loading the model when the app starts. ``draining``
    (set on SIGTERM by the server) turns /health into 503 while requests are still served."""
    the_engine = engine or Engine(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        the_engine.start()
        yield
        await anyio.to_thread.run_sync(the_engine.stop)

    app = FastAPI(title="kuberank runtime", lifespan=lifespan, redirect_slashes=False)
    app.state.engine = the_engine
    app.state.draining = draining or threading.Event()
    app.state.started = time.time()
    install_error_handlers(app)
    app.add_middleware(BodyBudgetMiddleware, budget=BodyBudget(settings.max_inflight_body_bytes),
                       max_body_bytes=settings.max_body_bytes)
    app.add_middleware(RequestIdMiddleware)
    app.add_middleware(PathNormalizer)
    app.add_middleware(HeadAsGet)
    app.include_router(_rerank_router())
    app.include_router(_ops_router())
    document_request_bodies(app)
    return app
