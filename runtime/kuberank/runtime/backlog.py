"""How long a request refused for a full queue should wait: until enough of the queue has been
decoded for it to fit, at the pace decodes take now (pure; the engine feeds it)."""

from __future__ import annotations

import math
import statistics
from collections import deque

WINDOW = 64  # recent decodes the pace is taken from


class DecodePace:
    """Seconds per pair, the median of the last ``WINDOW`` decodes: one decode slowed by a
    page fault or a neighbour's burst (1 s among 8 ms ones) must not multiply every
    Retry-After sent for minutes, as a running mean of it did."""

    def __init__(self, initial: float = 0.1) -> None:
        self._recent: deque[float] = deque([initial], maxlen=WINDOW)

    def observe(self, seconds: float, pairs: int) -> None:
        if pairs > 0:
            self._recent.append(seconds / pairs)

    def per_pair(self) -> float:
        return statistics.median(self._recent)


def seconds_until_it_fits(queued: int, incoming: int, capacity: int, per_pair: float,
                          contexts: int) -> int:
    """Whole seconds (at least 1) until ``incoming`` pairs fit beside ``queued`` in a queue of
    ``capacity``: the time to decode the excess, not the whole queue."""
    excess = max(queued + incoming - capacity, 1)
    return max(1, math.ceil(excess * per_pair / max(contexts, 1)))
