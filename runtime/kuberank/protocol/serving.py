"""uvicorn that drains before it stops, so a rolling update loses no request (the gateway and
the runtime both serve with it).

When a pod is deleted, the EndpointSlice update and the SIGTERM race: kube-proxy, Ingress
controllers and the gateway keep sending new connections for a moment after the signal, and a
plain uvicorn refuses them at once (nginx does not retry a refused POST: the client sees a 502).
On the first SIGTERM this server keeps accepting for ``drain_seconds`` while readiness fails
(``draining`` is set), and only then shuts down as uvicorn does (finishing requests in flight, for
up to its ``timeout_graceful_shutdown``). A second SIGTERM skips the rest of the drain; a second
Ctrl-C stops it at once.

uvicorn waits for a request's headers for ever: a client that connects and sends nothing, or half
a header, holds its connection (and its memory) as long as it likes. Here each request's headers
must be complete within ``read_timeout`` seconds of its first byte (of the connection, for the
first one), as nginx's ``client_header_timeout``; a stalled body is the app's to time out
(``read_body``), so that it can answer in JSON.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import threading
from types import FrameType
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger(__name__)


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, drain_seconds: float,
                 draining: threading.Event, stop: threading.Event | None = None) -> None:
        super().__init__(config)
        self._drain_seconds = drain_seconds
        self.draining = draining
        self._stop = stop

    async def on_tick(self, counter: int) -> bool:
        # `stop` ends the server from another thread without a signal: uvicorn re-raises a
        # signal it caught once it has stopped, which would kill the process before its caller
        # could say why it stopped (and exit 143, as if Kubernetes had killed it).
        if self._stop is not None and self._stop.is_set():
            return True
        return await super().on_tick(counter)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        first = not self.draining.is_set()
        self.draining.set()  # stopping, with a drain or without: readiness fails from now on
        if sig != signal.SIGTERM or self._drain_seconds <= 0 or not first:
            super().handle_exit(sig, frame)
            return
        log.info("SIGTERM: still serving for %.1fs while load balancers stop sending, then "
                 "finishing requests in flight", self._drain_seconds)
        stop = threading.Timer(self._drain_seconds, super().handle_exit, (sig, frame))
        stop.daemon = True
        stop.start()


class HeaderDeadlineProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, closing a connection whose request headers take longer
    than ``header_seconds`` (with a 408 saying so) instead of waiting for them for ever."""

    header_seconds = 60.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._header_deadline: asyncio.TimerHandle | None = None
        self._arm_header_deadline()  # a client that connects and says nothing

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        # Bytes between requests that begin none (a stray CRLF, the unread rest of a body
        # answered early) stop uvicorn's keep-alive timer without starting a request: without
        # a deadline such a connection would stay open for ever.
        if (self._header_deadline is None and not self._answering()
                and not self.transport.is_closing()):
            self._arm_header_deadline()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._header_deadline is None:  # the next request on a kept-alive connection
            self._arm_header_deadline()

    def on_headers_complete(self) -> None:
        self._disarm_header_deadline()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_deadline()
        super().connection_lost(exc)

    def _arm_header_deadline(self) -> None:
        self._header_deadline = self.loop.call_later(self.header_seconds, self._headers_late)

    def _disarm_header_deadline(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _answering(self) -> bool:
        """A request of this connection, whose headers came in time, is not answered yet."""
        return self.cycle is not None and not self.cycle.response_complete

    def _headers_late(self) -> None:
        self._header_deadline = None
        if self.transport.is_closing():
            return
        if self._answering():  # a pipelined request stalls behind one still being answered:
            self._arm_header_deadline()  # its answer must not be cut, so look again later
            return
        message = (f"request headers not received within {self.header_seconds:g} s; "
                   "the connection is closed")
        body = json.dumps({"error": {"message": message, "type": "invalid_request_error",
                                     "code": "request_timeout"}}).encode()
        self.transport.write(b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json"
                             b"\r\nconnection: close\r\ncontent-length: "
                             + str(len(body)).encode() + b"\r\n\r\n" + body)
        self.transport.close()


def serve(app: Any, drain_seconds: float, draining: threading.Event,
          stop: threading.Event | None = None, read_timeout: float = 60.0,
          **config: Any) -> None:
    """Run ``app`` like ``uvicorn.run(app, **config)``, draining on SIGTERM; setting ``stop``
    ends it at once (requests in flight still finish); a request's headers must arrive within
    ``read_timeout`` seconds. The port is bound before the app starts: a port already taken
    exits (3, uvicorn's startup failure) at once, not after the app's startup has loaded a
    model for minutes."""
    protocol = type("HeaderDeadline", (HeaderDeadlineProtocol,), {"header_seconds": read_timeout})
    settings = uvicorn.Config(app, http=protocol, **config)
    listening = settings.bind_socket()
    DrainingServer(settings, drain_seconds, draining, stop).run(sockets=[listening])
