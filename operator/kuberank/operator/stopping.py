"""SIGTERM and SIGINT, taken by a thread of their own instead of asyncio's handlers.

kopf stops on the signal through ``loop.add_signal_handler``, and asyncio learns of a signal from
a byte the C handler writes into the loop's self-pipe. That pipe also carries one byte per
``call_soon_threadsafe``, which every sync handler's return makes: when the loop is busy and the
executor's threads return by the hundred, the pipe is full, the signal's byte is dropped
("Exception ignored when trying to write to the signal wakeup fd") and the signal with it. An
operator stopped while 3,000 ApiKeys were being written never stopped (measured): no graceful
Lease hand-over, a SIGKILL at the end of the grace period.

``StopOnSignal`` blocks both signals in every thread (create it before any thread starts: a
thread inherits the mask of its creator) and waits for them with ``sigwait`` in one thread, which
cannot miss one. Before kopf runs (a standby waiting for the Lease, start-up) a signal ends the
process at once, as the default action did. Once kopf runs, the first signal sets the
``asyncio.Event`` that ``attach`` gave kopf as its ``stop_flag`` (``call_soon_threadsafe`` queues
the call even when the self-pipe is full), and a second one, or a graceful stop that has not
ended in ``GRACE_SECONDS``, ends the process at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import threading
from typing import Any

import kopf

log = logging.getLogger(__name__)

STOP_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT})
GRACE_SECONDS = 600.0  # kopf's own last resort for a stop that hangs (it skips it for a flag)


class StopOnSignal:
    def __init__(self, grace_seconds: float = GRACE_SECONDS) -> None:
        self._grace_seconds = grace_seconds
        self._lock = threading.Lock()
        self._attached: tuple[asyncio.AbstractEventLoop, asyncio.Event] | None = None
        signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        threading.Thread(target=self._wait, name="stop-signals", daemon=True).start()

    def attach(self, loop: asyncio.AbstractEventLoop) -> asyncio.Event:
        """The event that the next signal sets on ``loop``: kopf's ``stop_flag``. Call it on the
        loop kopf runs in, right before kopf starts."""
        stop = asyncio.Event()
        with self._lock:
            self._attached = loop, stop
        return stop

    def _wait(self) -> None:
        received = signal.sigwait(STOP_SIGNALS)
        with self._lock:
            attached = self._attached
        if attached is None:
            os._exit(128 + received)  # nothing runs yet that could stop gracefully
        loop, stop = attached
        log.info("%s received: stopping (a second signal ends the process at once)",
                 signal.Signals(received).name)
        try:
            loop.call_soon_threadsafe(stop.set)
        except RuntimeError:  # the loop is closed: kopf has ended already
            os._exit(128 + received)
        last_resort = threading.Timer(self._grace_seconds, self._give_up, (received,))
        last_resort.daemon = True  # a graceful stop ends the process without waiting for it
        last_resort.start()
        os._exit(128 + signal.sigwait(STOP_SIGNALS))

    def _give_up(self, received: int) -> None:
        log.error("still not stopped %.0f s after the signal: exiting", self._grace_seconds)
        os._exit(128 + received)


def run_kopf(stopping: StopOnSignal, **operator_kwargs: Any) -> None:
    """``kopf.run`` with the stop flag the signal thread sets. The flag is an ``asyncio.Event``:
    a ``threading.Event`` is waited for in a thread of the loop's executor, which ``asyncio.run``
    waits for at its end, so a kopf that ended by itself (a failed login, a crashed task) never
    returned and its Lease was never handed over."""

    async def operate() -> None:
        await kopf.operator(stop_flag=stopping.attach(asyncio.get_running_loop()),
                            **operator_kwargs)

    with contextlib.suppress(asyncio.CancelledError):  # as kopf.run: cancelled is stopped
        asyncio.run(operate())
