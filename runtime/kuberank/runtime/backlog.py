"""How long a request refused for a full queue should wait: until enough of the queue has been
decoded for it to fit, at the pace decodes take now (pure; the engine feeds it)."""

from __future__ import annotations

import heapq
import math
import statistics
from collections import deque

WINDOW = 64  # recent decodes the pace is taken from
KNOWN_AFTER = 8  # decodes before the pace is trusted to refuse anything


class DecodePace:
    """Seconds per pair, the median of the last ``WINDOW`` decodes: one decode slowed by a
    page fault or a neighbour's burst (1 s among 8 ms ones) must not multiply every
    Retry-After sent for minutes, as a running mean of it did."""

    def __init__(self, initial: float = 0.1) -> None:
        self._recent: deque[float] = deque([initial], maxlen=WINDOW)
        self._observed = 0

    def observe(self, seconds: float, pairs: int) -> None:
        if pairs > 0:
            if not self._observed:
                self._recent.clear()  # the guess goes once there is a measure
            self._recent.append(seconds / pairs)
            self._observed += 1

    def per_pair(self) -> float:
        return statistics.median(self._recent)

    def known(self) -> bool:
        """Enough decodes were measured to refuse work on the pace (not the first guess)."""
        return self._observed >= KNOWN_AFTER


def queue_room(max_pairs: int, max_seconds: float, pace: DecodePace, contexts: int) -> int:
    """Pairs the queue takes: ``max_pairs``, and no more than decode in ``max_seconds`` at the
    measured pace (0: no time bound; none either before the pace is known)."""
    if not max_seconds or not pace.known():
        return max_pairs
    return min(max_pairs, max(1, int(max_seconds * max(contexts, 1) / pace.per_pair())))


def seconds_until_it_fits(queued: int, incoming: int, capacity: int, per_pair: float,
                          contexts: int) -> int:
    """Whole seconds (at least 1) until ``incoming`` pairs fit beside ``queued`` in a queue of
    ``capacity``: the time to decode the excess, not the whole queue; at most the time to
    empty it (a request taller than the room is taken alone)."""
    excess = min(max(queued + incoming - capacity, 1), max(queued, 1))
    return max(1, math.ceil(excess * per_pair / max(contexts, 1)))


LEDGER_SIZE = 4096  # promises remembered at once; past it Retry-After stops growing


class Promises:
    """Pairs told by a 429 to come back, each until the time it was told. A refused request
    is counted behind those told before it: without this, every client refused while the queue
    was full got the same 1-2 s, came back together, and all but one were refused again
    (12 polite clients on 2 cores: 280 refusals for 27 answers, waits up to 48 s)."""

    def __init__(self) -> None:
        self._due: list[tuple[float, int]] = []  # (when it comes back, its pairs), a heap

    def pending(self, now: float) -> int:
        """Pairs promised room at a time still to come."""
        while self._due and self._due[0][0] <= now:
            heapq.heappop(self._due)
        return sum(pairs for _, pairs in self._due)

    def promise(self, now: float, seconds: int, pairs: int) -> None:
        if len(self._due) < LEDGER_SIZE:
            heapq.heappush(self._due, (now + seconds, pairs))
