"""Least-outstanding-requests choice among a model's ready replicas.

Reranking cost varies a lot with the number and length of documents, so counting requests in
flight per replica spreads load better than round-robin. Ties go round-robin, so an idle pool
still uses every replica. Used only from the event loop; no locking.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager


class Balancer:
    def __init__(self) -> None:
        self._outstanding: dict[str, int] = {}
        self._turn = 0

    def outstanding(self, endpoint: str) -> int:
        return self._outstanding.get(endpoint, 0)

    def pick(self, endpoints: Sequence[str], exclude: frozenset[str] = frozenset()) -> str | None:
        """The candidate with the fewest requests in flight; None when none is left."""
        candidates = [e for e in endpoints if e not in exclude]
        if not candidates:
            return None
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
