"""One exception type per documented error status, mapped once to the JSON error body.

Both the runtime and the gateway raise these and install the same handlers, so a client sees
`{"error": {"message", "type", "code"}}` (and the message again as ``detail``, for Jina's
clients) with the same statuses whichever process answered.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from kuberank.protocol.paths import sent_path
from kuberank.protocol.requestid import HEADER as REQUEST_ID_HEADER
from kuberank.protocol.requestid import chosen_request_id
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger(__name__)


class ApiError(Exception):
    """Base of every error a client may see; subclasses fix status, type and default code."""

    status: int = 500
    type: str = "server_error"
    default_code: str = "internal_error"
    closes: bool = False  # the answer ends the connection (what is left of the request is unread)

    def __init__(
        self, message: str, *, code: str | None = None, retry_after: int | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.retry_after = retry_after


class BadRequest(ApiError):  # noqa: N818 - names read as HTTP statuses
    status = 400
    type = "invalid_request_error"
    default_code = "bad_request"


class Unauthorized(ApiError):  # noqa: N818 - names read as HTTP statuses
    status = 401
    type = "authentication_error"
    default_code = "invalid_api_key"


class Forbidden(ApiError):  # noqa: N818 - names read as HTTP statuses
    status = 403
    type = "permission_error"
    default_code = "model_not_allowed"


class ModelNotFound(ApiError):  # noqa: N818 - names read as HTTP statuses
    status = 404
    type = "not_found_error"
    default_code = "model_not_found"


class PathNotFound(ApiError):  # noqa: N818 - names read as HTTP statuses
    """No route matched: a wrong URL, not a missing model."""

    status = 404
    type = "not_found_error"
    default_code = "unknown_path"


class PayloadTooLarge(ApiError):  # noqa: N818 - names read as HTTP statuses
    status = 413
    type = "invalid_request_error"
    default_code = "payload_too_large"


class RequestTimeout(ApiError):  # noqa: N818 - names read as HTTP statuses
    """The client stalled while sending its request; the rest of it is never read."""

    status = 408
    type = "invalid_request_error"
    default_code = "request_timeout"
    closes = True


class HeadersTooLarge(ApiError):  # noqa: N818 - names read as HTTP statuses
    status = 431
    type = "invalid_request_error"
    default_code = "headers_too_large"
    closes = True


class TransferCodingNotImplemented(ApiError):  # noqa: N818 - names read as HTTP statuses
    """A transfer coding the server cannot undo (RFC 9112: 501); the body's framing is then
    unknown, so the connection ends."""

    status = 501
    type = "invalid_request_error"
    default_code = "unsupported_transfer_coding"
    closes = True


class UnsupportedMediaType(ApiError):  # noqa: N818 - names read as HTTP statuses
    status = 415
    type = "invalid_request_error"
    default_code = "unsupported_encoding"


class Unprocessable(ApiError):  # noqa: N818 - names read as HTTP statuses
    status = 422
    type = "invalid_request_error"
    default_code = "invalid_schema"


class RateLimited(ApiError):  # noqa: N818 - names read as HTTP statuses
    status = 429
    type = "rate_limit_error"
    default_code = "rate_limited"


class ClientClosedRequest(ApiError):  # noqa: N818 - names read as HTTP statuses
    """The client closed its connection before the answer was ready.

    Nobody receives this response; the status (nginx's 499) is for metrics and logs.
    """

    status = 499
    type = "invalid_request_error"
    default_code = "client_closed_request"


class InternalError(ApiError):
    """A bug or engine failure; the process keeps serving."""


class Unavailable(ApiError):  # noqa: N818 - names read as HTTP statuses
    status = 503
    type = "unavailable_error"
    default_code = "unavailable"


class UpstreamTimeout(ApiError):  # noqa: N818 - names read as HTTP statuses
    status = 504
    type = "timeout_error"
    default_code = "upstream_timeout"


def quoted(value: str, limit: int = 100) -> str:
    """A client's value for an error message, cut short: a 100 kB model name must not come back
    as a 100 kB error (or a log line)."""
    return repr(value if len(value) <= limit else value[:limit] + "...")


def error_body(err: ApiError) -> dict[str, Any]:
    """The error object, plus its message as ``detail``: Jina's API answers errors as
    ``{"detail": ...}``, and its clients (LangChain's and LlamaIndex's ``JinaRerank``) read
    that key, failing with ``KeyError: 'detail'`` without it."""
    return {"error": {"message": err.message, "type": err.type, "code": err.code},
            "detail": err.message}


def error_response(err: ApiError, headers: Mapping[str, str] | None = None) -> JSONResponse:
    merged = dict(headers or {})
    if err.retry_after is not None:
        merged["Retry-After"] = str(err.retry_after)
    if err.closes:
        merged["Connection"] = "close"
    if err.status == 401:  # RFC 6750: say which scheme the key goes in
        merged.setdefault("WWW-Authenticate", 'Bearer realm="kuberank"')
    return JSONResponse(error_body(err), status_code=err.status, headers=merged or None)


_HTTP_STATUS_ERRORS: dict[int, type[ApiError]] = {
    cls.status: cls
    for cls in (BadRequest, Unauthorized, Forbidden, PayloadTooLarge, UnsupportedMediaType,
                Unprocessable, RateLimited, Unavailable, UpstreamTimeout)
}


def _from_http_exception(exc: StarletteHTTPException, request: Request) -> ApiError:
    if exc.status_code == 404:  # Starlette's 404: no route matched
        return PathNotFound(f"no such path: {request.method} {sent_path(request.scope)}")
    cls = _HTTP_STATUS_ERRORS.get(exc.status_code)
    message = str(exc.detail)
    if cls is not None:
        return cls(message)
    err = ApiError(message, code=f"http_{exc.status_code}")
    err.status = exc.status_code  # statuses outside the documented set (405, ...)
    err.type = "invalid_request_error" if exc.status_code < 500 else "server_error"
    return err


def _from_validation_error(exc: RequestValidationError) -> ApiError:
    errors = exc.errors()
    if any(e.get("type") == "json_invalid" for e in errors):
        return BadRequest("request body is not valid JSON", code="invalid_json")
    first = errors[0] if errors else {}
    where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
    return Unprocessable(f"{where or 'body'}: {first.get('msg', 'invalid request')}")


def _with_head(headers: Mapping[str, str] | None) -> dict[str, str] | None:
    """A 405's ``Allow`` with HEAD wherever it has GET: ``HeadAsGet`` answers HEAD on every
    GET path, and FastAPI's routes declare GET alone."""
    if not headers:
        return None
    kept = dict(headers)
    for name, value in headers.items():
        methods = [m.strip() for m in value.split(",")] if name.lower() == "allow" else []
        if "GET" in methods and "HEAD" not in methods:
            kept[name] = ", ".join([*methods, "HEAD"])
    return kept


def install_error_handlers(app: FastAPI) -> None:
    """Map ApiError, request validation, unknown routes and crashes to the JSON error body."""

    async def on_api_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiError)
        return error_response(exc)

    async def on_http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        # Starlette's own headers stay: a 405's Allow lists the methods the path takes.
        return error_response(_from_http_exception(exc, request), _with_head(exc.headers))

    async def on_validation_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return error_response(_from_validation_error(exc))

    async def on_crash(request: Request, exc: Exception) -> JSONResponse:
        request_id = chosen_request_id(request)
        log.exception("unhandled error on %s %s (request %s)", request.method, request.url.path,
                      request_id or "-")
        response = error_response(InternalError("internal server error"))
        if request_id:  # this answer is made outside every middleware, RequestIdMiddleware too
            response.headers[REQUEST_ID_HEADER] = request_id
        # Starlette re-raises after this answer and the server then closes the connection:
        # saying so keeps keep-alive clients from sending their next request into it.
        response.headers["connection"] = "close"
        return response

    app.add_exception_handler(ApiError, on_api_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(Exception, on_crash)
