"""uvicorn that drains before it stops, so a rolling update loses no request (the gateway and
the runtime both serve with it).

When a pod is deleted, the EndpointSlice update and the SIGTERM race: kube-proxy, Ingress
controllers and the gateway keep sending new connections for a moment after the signal, and a
plain uvicorn refuses them at once (nginx does not retry a refused POST: the client sees a 502).
On the first SIGTERM this server keeps accepting for ``drain_seconds`` while readiness fails
(``draining`` is set) and every answer closes its connection, those of requests in flight
included (a kept connection would otherwise be cut at the end of the drain, under the request
its client sends then), and only then shuts down as uvicorn does (finishing requests in flight, for
up to its ``timeout_graceful_shutdown``). A second SIGTERM skips the rest of the drain; a second
Ctrl-C stops it at once.

Connections are served by ``BoundedProtocol`` (connection.py): uvicorn's own bounds none of a
client's stalls or header sizes.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

import uvicorn
from kuberank.protocol.connection import BoundedProtocol

log = logging.getLogger(__name__)


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, drain_seconds: float,
                 draining: threading.Event, stop: threading.Event | None = None) -> None:
        super().__init__(config)
        self._drain_seconds = drain_seconds
        self.draining = draining
        self._stop = stop
        self._kept_ended = False

    async def on_tick(self, counter: int) -> bool:
        # `stop` ends the server from another thread without a signal: uvicorn re-raises a
        # signal it caught once it has stopped, which would kill the process before its caller
        # could say why it stopped (and exit 143, as if Kubernetes had killed it).
        if self._stop is not None and self._stop.is_set():
            return True
        if self.draining.is_set() and not self._kept_ended:  # on the loop, not in the signal
            self._kept_ended = True                          # handler that set it
            for connection in list(self.server_state.connections):
                if isinstance(connection, BoundedProtocol):
                    connection.end_keep_alive()
        return await super().on_tick(counter)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        first = not self.draining.is_set()
        self.draining.set()  # stopping, with a drain or without: readiness fails from now on
        if sig != signal.SIGTERM or self._drain_seconds <= 0 or not first:
            self._stop_for(sig, frame)
            return
        log.info("SIGTERM: still serving for %.1fs while load balancers stop sending, then "
                 "finishing requests in flight", self._drain_seconds)
        stop = threading.Timer(self._drain_seconds, self._stop_for, (sig, frame))
        stop.daemon = True
        stop.start()

    def _stop_for(self, sig: int, frame: FrameType | None) -> None:
        """uvicorn's stop, without re-raising a SIGTERM once stopped: a pod that drained and
        finished its requests exits 0, as llama-server and TEI do, not 143 as if killed."""
        super().handle_exit(sig, frame)
        captured = getattr(self, "_captured_signals", None)
        if sig == signal.SIGTERM and isinstance(captured, list) and sig in captured:
            captured.remove(sig)


def serve(app: Any, drain_seconds: float, draining: threading.Event,
          stop: threading.Event | None = None, read_timeout: float = 60.0,
          on_closed: Callable[[str], None] | None = None, **config: Any) -> None:
    """Run ``app`` like ``uvicorn.run(app, **config)``, draining on SIGTERM; setting ``stop``
    ends it at once (requests in flight still finish); a client may stall ``read_timeout``
    seconds at most (BoundedProtocol, which tells ``on_closed`` why it closed a connection
    the app never saw). The port is bound before the app starts: a port already taken
    exits (3, uvicorn's startup failure) at once, not after the app's startup has loaded a
    model for minutes."""
    bounds: dict[str, Any] = {"read_seconds": read_timeout, "draining": draining}
    if on_closed is not None:
        bounds["on_closed"] = staticmethod(on_closed)
    protocol = type("Bounded", (BoundedProtocol,), bounds)
    settings = uvicorn.Config(app, http=protocol, **config)
    listening = settings.bind_socket()
    DrainingServer(settings, drain_seconds, draining, stop).run(sockets=[listening])
