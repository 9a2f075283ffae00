"""Read a request body with a size cap, so a huge upload is a 413 and not a memory spike, and a
client that hangs up mid-upload a 499 in the metrics rather than a logged server error.

A gzip- or deflate-encoded body (``Content-Encoding``; some HTTP clients compress large uploads)
is inflated under the same cap, so a small compressed body cannot expand without bound; any other
encoding is a 415 rather than a misleading "not valid UTF-8".
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ParamSpec, TypeVar

import anyio
from kuberank.protocol.errors import (
    ApiError,
    BadRequest,
    ClientClosedRequest,
    PayloadTooLarge,
    RequestTimeout,
    TransferCodingNotImplemented,
    UnsupportedMediaType,
)
from starlette.requests import ClientDisconnect, Request

INFLATED = ("gzip", "x-gzip", "deflate")
GZIP_MAGIC = b"\x1f\x8b"
MAX_GZIP_MEMBERS = 64  # concatenated gzip output has a few; thousands are an attack
_FEED_BYTES = 64 * 1024  # compressed input handed to zlib at a time
_INFLATE_STEP = 256 * 1024  # inflated output taken from zlib at a time, each step reported
# In scope["state"]: a callable told each size a body has inflated to so far (the body budget
# reserves it, and refuses a body that no longer fits before it is inflated further).
INFLATING_STATE = "body_inflating"
# Bodies above this are inflated, parsed or rewritten on a worker thread: an 8 MiB JSON body
# takes tens of milliseconds, which on the event loop would stall every other request.
OFF_LOOP_BYTES = 64 * 1024

P = ParamSpec("P")
T = TypeVar("T")


async def off_the_loop(size: int, work: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """``work(*args)`` inline for a small body, on a worker thread for one of ``size`` bytes
    above OFF_LOOP_BYTES (a thread hop costs more than parsing a few kilobytes)."""
    if size <= OFF_LOOP_BYTES:
        return work(*args, **kwargs)
    return await anyio.to_thread.run_sync(lambda: work(*args, **kwargs))


def content_coding(lines: list[str]) -> str:
    """The one coding a body carries, from every ``Content-Encoding`` line (several lines are
    one comma-separated list, RFC 9110), ``identity`` dropping out; 415 for any other coding, or
    for codings stacked on each other."""
    codings = [c.strip().lower() for line in lines for c in line.split(",")]
    codings = [c for c in codings if c not in ("", "identity")]
    if not codings:
        return "identity"
    if len(codings) == 1 and codings[0] in INFLATED:
        return codings[0]
    raise UnsupportedMediaType(
        f"Content-Encoding {', '.join(codings)!r} is not supported; send the body as is, or "
        "in one coding of gzip or deflate")


def transfer_coding_refusal(lines: list[str]) -> ApiError | None:
    """Why a request's ``Transfer-Encoding`` lines cannot be read, or None. A request's codings
    must end in ``chunked``, once (RFC 9112: else its length is unknown, a 400); only
    ``chunked`` is undone here, so a coding before it (``gzip, chunked``) is a 501, rather than
    a body read still compressed."""
    codings = [c.split(";")[0].strip().lower() for line in lines for c in line.split(",")]
    codings = [c for c in codings if c]
    if not codings:
        return None
    before = codings[:-1]
    if codings[-1] != "chunked" or "chunked" in before:
        return BadRequest("Transfer-Encoding must end in chunked, applied once: the body's "
                          "length is unknown")
    if not before:
        return None
    return TransferCodingNotImplemented(
        f"Transfer-Encoding {', '.join(before)!r} is not supported, only chunked; send a "
        "compressed body with Content-Encoding: gzip or deflate instead")


async def read_body(request: Request, limit: int, stall_seconds: float = 60.0) -> bytes:
    """The whole body, decoded, or PayloadTooLarge as soon as it is known to exceed ``limit``,
    or RequestTimeout when the client sends nothing for ``stall_seconds``."""
    encoding = content_coding(request.headers.getlist("content-encoding"))
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
    stream = request.stream()
    try:
        while True:
            with anyio.move_on_after(stall_seconds) as waited:
                chunk = await anext(stream, None)
            if waited.cancelled_caught:
                raise RequestTimeout(f"the client sent no more of the body for {stall_seconds:g}"
                                     f" s, after {received} bytes")
            if chunk is None:
                break
            received += len(chunk)
            if received > limit:
                raise PayloadTooLarge(f"request body exceeds the limit of {limit} bytes")
            chunks.append(chunk)
    except ClientDisconnect:  # not a server error: nobody is left to answer
        raise ClientClosedRequest(
            f"the client closed the connection after {received} bytes of the body") from None
    body = b"".join(chunks)
    if encoding not in INFLATED:
        return body
    grown = (request.scope.get("state") or {}).get(INFLATING_STATE)
    return await off_the_loop(len(body), inflate, body, encoding, limit, grown)


@dataclass
class _Inflated:
    """What a body has inflated to so far: at most ``limit`` bytes, each size told ``grown``."""

    encoding: str
    limit: int
    grown: Callable[[int], None] | None
    parts: list[bytes] = field(default_factory=list)
    size: int = 0

    def take(self, decoder: Any, piece: memoryview) -> None:
        """All that ``piece`` inflates to, in steps of at most _INFLATE_STEP bytes."""
        pending: bytes | memoryview = piece
        while True:
            room = min(self.limit + 1 - self.size, _INFLATE_STEP)  # at most a byte past it
            try:
                out = decoder.decompress(pending, room)
            except zlib.error as err:
                raise BadRequest(f"request body is not valid {self.encoding}: {err}",
                                 code="invalid_encoding") from None
            self.size += len(out)
            if self.size > self.limit:
                raise PayloadTooLarge(
                    f"request body inflates to more than the limit of {self.limit} bytes")
            self.parts.append(out)
            if self.grown is not None and out:
                self.grown(self.size)
            pending = decoder.unconsumed_tail
            if decoder.eof or (not pending and len(out) < room):
                return


def inflate(body: bytes, encoding: str, limit: int,
            grown: Callable[[int], None] | None = None) -> bytes:
    """Decompress a gzip or zlib (HTTP "deflate") body to at most ``limit`` bytes. A gzip body
    may be several members one after another (RFC 1952, what concatenated ``gzip`` output is),
    up to MAX_GZIP_MEMBERS; anything else after the compressed data is refused, not silently
    dropped. Input is fed in bounded slices, so the work stays linear in the body's size
    however many members it holds; output is taken in bounded steps, each size reached told to
    ``grown`` (which may refuse to go on by raising), so a body that compresses 1000:1 is held
    to account as it inflates rather than once it is whole."""
    view, pos = memoryview(body), 0
    out = _Inflated(encoding, limit, grown)
    for _member in range(MAX_GZIP_MEMBERS):
        decoder = zlib.decompressobj(zlib.MAX_WBITS | 32)  # accepts a gzip or a zlib header
        while not decoder.eof and pos < len(view):
            piece = view[pos:pos + _FEED_BYTES]
            out.take(decoder, piece)
            pos += len(piece) - (len(decoder.unused_data) if decoder.eof else 0)
        if not decoder.eof:
            raise BadRequest(f"request body is not valid {encoding}: it ends early",
                             code="invalid_encoding")
        if pos == len(view):
            return b"".join(out.parts)
        if view[pos:pos + 2] != GZIP_MAGIC or encoding == "deflate":
            raise BadRequest(f"request body is not valid {encoding}: {len(view) - pos} bytes "
                             "follow the compressed data", code="invalid_encoding")
    raise BadRequest(f"request body is not valid {encoding}: more than {MAX_GZIP_MEMBERS} "
                     "gzip members", code="invalid_encoding")
