"""OpenAI's model list and retrieve: the names a key may send, each with the state its next
request meets."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from kuberank.gateway.access import authenticate, may_use
from kuberank.gateway.context import Gateway
from kuberank.gateway.routing import ModelRoute
from kuberank.protocol.errors import ModelNotFound, quoted
from kuberank.protocol.openapi import ERROR_DESCRIPTIONS
from kuberank.protocol.schemas import ErrorResponse


def catalog_router(gateway: Gateway) -> APIRouter:
    router = APIRouter()
    keyed: dict[int | str, dict[str, Any]] = {
        401: {"model": ErrorResponse, "description": ERROR_DESCRIPTIONS[401]}}

    @router.get("/v1/models", responses=keyed)
    async def models(request: Request) -> dict[str, Any]:
        key = authenticate(gateway, request)
        cards = [_model_card(gateway, name, route)
                 for name, route in gateway.routes.names_in(key.namespace)
                 if may_use(key, route, gateway.routes)]
        return {"object": "list", "data": cards}

    @router.get("/v1/models/{model_id:path}", responses={
        **keyed, 404: {"model": ErrorResponse, "description": "No such model for this key."}})
    async def model(model_id: str, request: Request) -> dict[str, Any]:
        """OpenAI's retrieve: one card of the list above, 404 for any other name."""
        key = authenticate(gateway, request)
        for name, route in gateway.routes.names_in(key.namespace):
            if name == model_id and may_use(key, route, gateway.routes):
                return _model_card(gateway, name, route)
        raise ModelNotFound(f"model {quoted(model_id)} is not served to this key")

    return router


def _model_card(gateway: Gateway, name: str, route: ModelRoute) -> dict[str, Any]:
    """An OpenAI-style model object; an alias names its model in ``root`` (as vLLM does), and
    ``state`` tells a client what its next request meets."""
    ready = bool(gateway.routes.endpoints(route))
    return {
        "id": name,
        "object": "model",
        "created": route.created,
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
