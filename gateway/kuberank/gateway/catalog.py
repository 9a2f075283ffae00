"""OpenAI's model list and retrieve: the names a key may send, each with the state its next
request meets."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Request
from kuberank.gateway.access import authenticate, may_use
from kuberank.gateway.context import Gateway
from kuberank.gateway.routing import ModelRoute
from kuberank.protocol.errors import ModelNotFound, quoted
from kuberank.protocol.openapi import ERROR_DESCRIPTIONS
from kuberank.protocol.schemas import ErrorResponse
from pydantic import BaseModel, Field

State = Literal["ready", "scaled_to_zero", "stopped", "failing", "starting"]


class ModelCard(BaseModel):
    """OpenAI's model object, with what a request for it meets now."""

    id: str = Field(description="A name the key may send as `model` (served name or alias).")
    object: Literal["model"] = "model"
    created: int = Field(description="When its RerankModel was created (Unix seconds).")
    owned_by: str = Field(description="The namespace (tenant) that serves it.")
    root: str = Field(description="The served name an alias stands for (itself otherwise).")
    ready: bool = Field(description="A replica is ready to answer now.")
    state: State = Field(description="What the next request meets: ready; starting, or "
                         "scaled_to_zero (held while the model wakes); stopped or failing (503).")


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


def catalog_router(gateway: Gateway) -> APIRouter:
    router = APIRouter()
    keyed: dict[int | str, dict[str, Any]] = {
        401: {"model": ErrorResponse, "description": ERROR_DESCRIPTIONS[401]}}

    @router.get("/v1/models", responses=keyed)
    async def models(request: Request) -> ModelList:
        key = authenticate(gateway, request)
        cards = [_model_card(gateway, name, route)
                 for name, route in gateway.routes.names_in(key.namespace)
                 if may_use(key, route, gateway.routes)]
        return ModelList(data=cards)

    @router.get("/v1/models/{model_id:path}", responses={
        **keyed, 404: {"model": ErrorResponse, "description": "No such model for this key."}})
    async def model(model_id: str, request: Request) -> ModelCard:
        """OpenAI's retrieve: one card of the list above, 404 for any other name."""
        key = authenticate(gateway, request)
        for name, route in gateway.routes.names_in(key.namespace):
            if name == model_id and may_use(key, route, gateway.routes):
                return _model_card(gateway, name, route)
        raise ModelNotFound(f"model {quoted(model_id)} is not served to this key")

    return router


def _model_card(gateway: Gateway, name: str, route: ModelRoute) -> ModelCard:
    """An OpenAI-style model object; an alias names its model in ``root`` (as vLLM does), and
    ``state`` tells a client what its next request meets."""
    ready = bool(gateway.routes.endpoints(route))
    return ModelCard(id=name, created=route.created, owned_by=route.namespace,
                     root=route.served_name, ready=ready, state=_state(route, ready))


def _state(route: ModelRoute, ready: bool) -> State:
    if ready:
        return "ready"
    if route.replicas == 0:
        return "scaled_to_zero" if route.wake is not None else "stopped"
    return "failing" if route.failing else "starting"
