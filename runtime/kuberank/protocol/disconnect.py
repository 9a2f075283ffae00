"""Stop working for a client that has gone away.

Uvicorn does not cancel a handler when its client disconnects; it only answers the next
``receive()`` with ``http.disconnect``. Without a watch on that, a runtime scores every pair of
a request whose client gave up (a timeout, the gateway's 504, Ctrl-C) and the gateway keeps a
runtime busy for nobody, while the clients' retries queue up behind the dead work.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from typing import TypeVar

from kuberank.protocol.errors import ClientClosedRequest
from starlette.requests import Request

T = TypeVar("T")


async def unless_client_leaves(request: Request, work: Awaitable[T]) -> T:
    """The result of ``work``, which is cancelled as soon as the client closes its connection.

    Call it once the body has been read: from then on ``receive()`` only returns on disconnect.
    Raises ClientClosedRequest when the client left first.
    """
    working = asyncio.ensure_future(work)
    watching = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait((working, watching), return_when=asyncio.FIRST_COMPLETED)
    finally:
        watching.cancel()
        if not working.done():
            working.cancel()
    if working.done() and not working.cancelled():
        return working.result()
    with contextlib.suppress(asyncio.CancelledError):
        await working  # let the work finish unwinding (the engine drops its queued pairs)
    raise ClientClosedRequest("the client closed the connection before the answer was ready")


async def _disconnected(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass
