"""Who is asking and for which model: the presented key, and the model it names (a served
name or an alias) within the key's namespace, refused in the order that leaks nothing."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import Request
from kuberank.gateway.context import Gateway
from kuberank.gateway.keytable import AuthError, KeyRecord, presented_key
from kuberank.gateway.routing import ModelRoute, RoutingTable
from kuberank.protocol.errors import (
    Forbidden,
    ModelNotFound,
    Unauthorized,
    Unavailable,
    Unprocessable,
    quoted,
)


def authenticate(gateway: Gateway, request: Request) -> KeyRecord:
    """The presented key's record, or 401. Its use goes to the ApiKey's status.lastUsedTime
    (in the background, at most once per ``key_use_seconds``)."""
    now = datetime.now(UTC)
    presented: str | None = None
    try:
        presented = presented_key(
            request.headers.getlist("authorization"), request.headers.getlist("x-api-key")
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


def may_use(key: KeyRecord, route: ModelRoute, routes: RoutingTable) -> bool:
    """A key may use a model it lists by its served name or by an alias that reaches it, and
    then by every name that reaches it: answers carry the served name, which a client may send
    back (refused, it read as a permission the key lacked for the model it had just used)."""
    return key.allows(route.served_name) or any(
        key.allows(alias) and _same(routes.resolve(route.namespace, alias), route)
        for alias in route.aliases)


def _same(found: ModelRoute | None, route: ModelRoute) -> bool:
    return found is not None and (found.namespace, found.name) == (route.namespace, route.name)


def choose_model(gateway: Gateway, key: KeyRecord, requested: str | None) -> ModelRoute:
    """The route for the requested model (a served name or an alias); 403 before 404 so a key
    learns nothing about models it may not use. Without a model (TEI clients send none) the
    key's only model is used."""
    if not requested:
        # as /v1/models lists them: a key may reach a model through an alias it names
        usable = list({(r.namespace, r.name): r for name, r in gateway.routes.names_in(
            key.namespace) if may_use(key, r, gateway.routes)}.values())
        if not usable:
            raise ModelNotFound(f"no model is served to this key in namespace {key.namespace!r}")
        if len(usable) != 1:
            raise Unprocessable(
                "model: required (this key may use more than one model)", code="model_required"
            )
        return usable[0]
    route = gateway.routes.resolve(key.namespace, requested)
    if route is None or not may_use(key, route, gateway.routes):
        if not key.allows(requested):
            raise Forbidden(f"this API key may not use model {quoted(requested)}; "
                            f"it may use {_listed(key.models)}")
        _unless_starting(gateway, requested)
        raise ModelNotFound(f"model {quoted(requested)} is not served here")
    return route


def _listed(names: frozenset[str], most: int = 10) -> str:
    """The key's own spec.models, for a holder who mistyped one (nothing it could not read
    from /v1/models), cut short for a key listing many."""
    shown = sorted(names)[:most]
    more = f" and {len(names) - most} more" if len(names) > most else ""
    return ", ".join(quoted(n) for n in shown) + more


def _unless_starting(gateway: Gateway, asked: str | None) -> None:
    """Before its first lists of keys and models a gateway knows none: what it cannot find
    yet is a 503 to retry, not a 401 or 404 that clients take as final."""
    if asked and not gateway.source.synced():
        raise Unavailable("the gateway is starting: its keys and models are not loaded yet",
                          code="gateway_starting", retry_after=1)
