"""``/v1/rerank/`` is ``/v1/rerank``: one trailing slash is dropped before routing.

Starlette's own answer is a 307 to an absolute URL built from the Host header. Behind an Ingress
that terminates TLS that URL says ``http://``, and clients that do not follow redirects for a
POST (httpx's default) get a 307 they cannot use. Serving both spellings costs nothing.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send


def without_trailing_slash(path: str) -> str:
    """``path`` without one trailing ``/`` (the root stays ``/``)."""
    return path[:-1] if len(path) > 1 and path.endswith("/") else path


class TrailingSlashTolerant:
    """Routes ``/x/`` as ``/x``. Pair it with ``FastAPI(redirect_slashes=False)``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and without_trailing_slash(scope["path"]) != scope["path"]:
            scope = {**scope, "path": scope["path"][:-1]}
            raw = scope.get("raw_path")
            if isinstance(raw, bytes) and raw.endswith(b"/"):
                scope["raw_path"] = raw[:-1]
        await self.app(scope, receive, send)
