"""SIGTERM and SIGINT, taken by a thread of their own instead of asyncio's handlers.

kopf stops on the signal through ``loop.add_signal_handler``, and asyncio learns of a signal from
a byte the C handler writes into the loop's self-pipe. That pipe also carries one byte per
``call_soon_threadsafe``, which every sync handler's return makes: when the loop is busy and the
executor's threads return by the hundred, the pipe is full, the signal's byte is dropped
("Exception ignored when trying to write to the signal wakeup fd") and the signal with it. An
operator stopped while 3,000 ApiKeys were being written never stopped (measured): no graceful
Lease hand-over, a SIGKILL at the end of the grace period.

``StopOnSignal`` blocks both signals in every thread (call it before any thread starts: a thread
inherits the mask of its creator) and waits for them with ``sigwait`` in one thread, which cannot
miss one. Before the process hands over to kopf (a standby waiting for the Lease, start-up) a
signal ends it at once, as the default action did; afterwards it raises ``flag``, kopf's
``stop_flag``, for kopf's graceful stop.
"""

from __future__ import annotations

import logging
import os
import signal
import threading

log = logging.getLogger(__name__)

STOP_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT})


class StopOnSignal:
    def __init__(self) -> None:
        self.flag = threading.Event()
        self._handed_over = False
        self._lock = threading.Lock()
        signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        threading.Thread(target=self._wait, name="stop-signals", daemon=True).start()

    def hand_over(self) -> None:
        """From now on a signal stops kopf gracefully (call right before ``kopf.run``)."""
        with self._lock:
            self._handed_over = True

    def _wait(self) -> None:
        received = signal.sigwait(STOP_SIGNALS)
        with self._lock:
            handed_over = self._handed_over
        if not handed_over:
            os._exit(128 + received)  # what the signal's default action reports
        log.info("%s received: stopping", signal.Signals(received).name)
        self.flag.set()
