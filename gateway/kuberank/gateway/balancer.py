"""Least-outstanding-requests choice among a model's ready replicas.

Reranking cost varies a lot with the number and length of documents, so counting requests in
flight per replica spreads load better than round-robin. Ties go round-robin, so an idle pool
still uses every replica. A replica that refused a connection is passed over for a short
cool-down (EndpointSlices lag behind a dying pod), unless no other replica is left. Used only
from the event loop; no locking; the clock is injected.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager


class Balancer:
    def __init__(self, cooldown: float = 5.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._outstanding: dict[str, int] = {}
        self._failed_at: dict[str, float] = {}
        self._cooldown = cooldown
        self._clock = clock
        self._turn = 0

    def mark_failed(self, endpoint: str) -> None:
        """``endpoint`` could not be reached; avoid it for the cool-down."""
        self._failed_at[endpoint] = self._clock()

    def cooling(self, endpoint: str) -> bool:
        failed = self._failed_at.get(endpoint)
        if failed is None:
            return False
        if self._clock() - failed >= self._cooldown:
            del self._failed_at[endpoint]
            return False
        return True

    def outstanding(self, endpoint: str) -> int:
        return self._outstanding.get(endpoint, 0)

    def pick(self, endpoints: Sequence[str], exclude: frozenset[str] = frozenset()) -> str | None:
        """The candidate with the fewest requests in flight; None when none is left."""
        candidates = [e for e in endpoints if e not in exclude]
        if not candidates:
            return None
        healthy = [e for e in candidates if not self.cooling(e)]
        candidates = healthy or candidates
        fewest = min(self.outstanding(e) for e in candidates)
        tied = [e for e in candidates if self.outstanding(e) == fewest]
        self._turn += 1
        return tied[self._turn % len(tied)]

    @contextmanager
    def track(self, endpoint: str) -> Iterator[None]:
        """Count one request in flight to ``endpoint`` for the duration of the block."""
        self._outstanding[endpoint] = self.outstanding(endpoint) + 1
        try:
            yield
        finally:
            left = self._outstanding[endpoint] - 1
            if left > 0:
                self._outstanding[endpoint] = left
            else:
                del self._outstanding[endpoint]
