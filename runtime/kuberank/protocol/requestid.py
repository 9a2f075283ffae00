"""Every answer carries an ``x-request-id``: the caller's when it sent a usable one, else a new one.

The gateway forwards the id to the runtime, so one id names a request in the client's logs, the
gateway's and the runtime's; a Cohere v2 answer also carries it as its ``id``. An ASGI middleware
rather than a Starlette one: it only touches the scope and the response start, which keeps it
off the gateway's measured per-request cost.
"""

from __future__ import annotations

import re
import uuid

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

HEADER = "x-request-id"
_STATE_KEY = "request_id"  # in scope["state"], where error handlers outside the middleware see it
_USABLE = re.compile(r"[A-Za-z0-9._:/+=-]{1,128}")


def choose_request_id(presented: str | None) -> str:
    """``presented`` when it is a short token safe to log and echo, else a fresh UUID (hex)."""
    if presented is not None and _USABLE.fullmatch(presented):
        return presented
    return uuid.uuid4().hex


def request_id(request: Request) -> str:
    """The id RequestIdMiddleware chose for this request."""
    chosen = chosen_request_id(request)
    assert chosen is not None, "RequestIdMiddleware runs before every route"
    return chosen


def chosen_request_id(request: Request) -> str | None:
    """The chosen id, or None where the middleware has not run (a crash handler outside it)."""
    chosen = (request.scope.get("state") or {}).get(_STATE_KEY)
    return str(chosen) if chosen is not None else None


class RequestIdMiddleware:
    """Chooses the request's id, keeps it in ``scope["state"]`` and sets it on the response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        presented = next((value.decode("latin-1") for name, value in scope["headers"]
                          if name == HEADER.encode()), None)
        chosen = choose_request_id(presented)
        scope.setdefault("state", {})[_STATE_KEY] = chosen
        header = (HEADER.encode(), chosen.encode())

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                kept = [(k, v) for k, v in message.get("headers", []) if k.lower() != header[0]]
                message = {**message, "headers": [*kept, header]}
            await send(message)

        await self.app(scope, receive, send_with_id)
