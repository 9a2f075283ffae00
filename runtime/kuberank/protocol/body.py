"""Read a request body with a size cap, so a huge upload is a 413 and not a memory spike, and a
client that hangs up mid-upload a 499 in the metrics rather than a logged server error."""

from __future__ import annotations

from kuberank.protocol.errors import BadRequest, ClientClosedRequest, PayloadTooLarge
from starlette.requests import ClientDisconnect, Request


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, or PayloadTooLarge as soon as it is known to exceed `limit` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise BadRequest("invalid Content-Length header") from None
        if size > limit:
            raise PayloadTooLarge(f"request body of {size} bytes exceeds the limit of {limit}")
    chunks: list[bytes] = []
    received = 0
    try:
        async for chunk in request.stream():
            received += len(chunk)
            if received > limit:
                raise PayloadTooLarge(f"request body exceeds the limit of {limit} bytes")
            chunks.append(chunk)
    except ClientDisconnect:  # not a server error: nobody is left to answer
        raise ClientClosedRequest(
            f"the client closed the connection after {received} bytes of the body") from None
    return b"".join(chunks)
