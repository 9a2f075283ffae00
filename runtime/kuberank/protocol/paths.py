"""Paths as clients spell them, routed as the app declares them.

``/v1/rerank/`` is ``/v1/rerank``: Starlette's own answer to a trailing slash is a 307 to an
absolute URL built from the Host header. Behind an Ingress that terminates TLS that URL says
``http://``, and clients that do not follow redirects for a POST (httpx's default) get a 307
they cannot use. An Ingress that forwards a path prefix unstripped (``/search/v1/rerank``) is
served too, when the app is told the prefix. llama-server's ``/reranking`` and
``/v1/reranking`` are its ``/rerank`` and ``/v1/rerank``, here as there. Every GET route
answers HEAD as well.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

SENT_PATH = "sent_path"  # in scope["state"]
# llama-server's other spellings of its rerank routes, which its clients may be set up with.
SPELLINGS = {"/reranking": "/rerank", "/v1/reranking": "/v1/rerank"}


def without_trailing_slash(path: str) -> str:
    """``path`` without one trailing ``/`` (the root stays ``/``)."""
    return path[:-1] if len(path) > 1 and path.endswith("/") else path


def routed_path(path: str, prefix: str = "") -> str:
    """The path to route: ``prefix`` (``/search``, no trailing slash) and one trailing slash
    taken off, llama-server's spellings (SPELLINGS) as the routes they name. Paths outside the
    prefix are routed as they are (in-cluster clients)."""
    if prefix and (path == prefix or path.startswith(prefix + "/")):
        path = path[len(prefix):] or "/"
    path = without_trailing_slash(path)
    return SPELLINGS.get(path, path)


class PathNormalizer:
    """Routes ``routed_path(path)``. Pair it with ``FastAPI(redirect_slashes=False)``."""

    def __init__(self, app: ASGIApp, prefix: str = "") -> None:
        self.app = app
        self.prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = routed_path(scope["path"], self.prefix)
            if path != scope["path"]:
                state = scope.setdefault("state", {})
                state[SENT_PATH] = scope["path"]  # what a 404 names: what the client sent
                scope = {**scope, "path": path, "raw_path": path.encode("latin-1", "replace")}
        await self.app(scope, receive, send)


def sent_path(scope: Scope) -> str:
    """The path as the client sent it, before PathNormalizer."""
    return str((scope.get("state") or {}).get(SENT_PATH, scope["path"]))



HEAD_STATE = "head"  # in scope["state"]: the GET being run answers a HEAD


def is_head(scope: Scope) -> bool:
    """Whether the GET being run answers a HEAD (a route with side effects may skip them)."""
    return bool((scope.get("state") or {}).get(HEAD_STATE))


class HeadAsGet:
    """HEAD is answered as GET without the body: a server that answers GET answers HEAD
    (RFC 9110), load balancers probe with it, and FastAPI routes declare GET alone."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        async def headers_only(message: Message) -> None:
            if message["type"] == "http.response.body":
                if message.get("more_body", False):
                    return
                message = {"type": "http.response.body", "body": b"", "more_body": False}
            await send(message)

        scope.setdefault("state", {})[HEAD_STATE] = True
        await self.app({**scope, "method": "GET"}, receive, headers_only)
