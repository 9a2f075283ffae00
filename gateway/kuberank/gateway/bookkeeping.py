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
    def __init__(self) -> None:
        self._written: dict[Hashable, float] = {}  # subject → loop time of its last write
        self._prune_at = FORGET_AFTER
        self._background: set[asyncio.Task[None]] = set()

    def submit(self, subject: Hashable, interval: float, write: Callable[[], None],
               what: str) -> None:
        """Run ``write`` in a thread unless ``subject`` was written less than ``interval``
        seconds ago; ``what`` names it in the warning logged if the write fails."""
        now = asyncio.get_running_loop().time()
        last = self._written.get(subject)
        if last is not None and now - last < interval:
            return
        if len(self._written) >= self._prune_at:  # amortized: never a scan per request
            self._written = {s: t for s, t in self._written.items() if now - t < interval}
            self._prune_at = max(FORGET_AFTER, 2 * len(self._written))
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
