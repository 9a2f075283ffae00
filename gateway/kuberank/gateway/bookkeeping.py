"""Status writes the gateway makes as a side effect of traffic (a model's last request, a key's
last use): off the request path, at most once per interval and subject, and never a reason to
fail a request, so traffic costs the API server next to nothing and an API outage costs clients
nothing."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Hashable

from kuberank.gateway.scaler import WriteError

log = logging.getLogger(__name__)

FORGET_AFTER = 10_000  # subjects remembered before those not written lately are dropped


class ThrottledWrites:
    """At most one write per interval and subject, and the last one is never dropped: a write
    submitted inside the interval is held and made when the interval ends (only the newest held
    one: it supersedes the others). Without that trailing write a model's recorded last request
    could lag the real one by a whole interval, and scale to zero that much too early."""

    def __init__(self) -> None:
        self._written: dict[Hashable, float] = {}  # subject → loop time of its last write
        self._prune_at = FORGET_AFTER
        self._held: dict[Hashable, tuple[Callable[[], None], str]] = {}
        self._background: set[asyncio.Task[None]] = set()

    def submit(self, subject: Hashable, interval: float, write: Callable[[], None],
               what: str) -> None:
        """Run ``write`` in a thread now, or when ``interval`` seconds have passed since this
        subject's last write; ``what`` names it in the warning logged if the write fails."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        last = self._written.get(subject)
        if last is not None and now - last < interval:
            if subject not in self._held:
                loop.call_later(interval - (now - last), self._flush, subject)
            self._held[subject] = (write, what)
            return
        if len(self._written) >= self._prune_at:  # amortized: never a scan per request
            self._written = {s: t for s, t in self._written.items()
                             if now - t < interval or s in self._held}
            self._prune_at = max(FORGET_AFTER, 2 * len(self._written))
        self._start(subject, write, what, now)

    def _flush(self, subject: Hashable) -> None:
        held = self._held.pop(subject, None)
        if held is not None:
            self._start(subject, *held, asyncio.get_running_loop().time())

    def _start(self, subject: Hashable, write: Callable[[], None], what: str,
               now: float) -> None:
        self._written[subject] = now
        task = asyncio.create_task(self._run(write, what))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    @staticmethod
    async def _run(write: Callable[[], None], what: str) -> None:
        try:
            await asyncio.to_thread(write)
        except WriteError as err:
            log.warning("could not record %s: %s", what, err)
