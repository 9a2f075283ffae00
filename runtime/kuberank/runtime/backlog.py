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


LEDGER_SIZE = 4096  # requests remembered at once; past it Retry-After stops growing
# A client told "2" comes back a little after 2 s (a whole second is told, the network adds):
# its room is held that much longer, or the first request to arrive took it just before.
GRACE_SECONDS = 1.5


class Promises:
    """Requests told by a 429 when to come back, each until that time. A refused request is
    counted behind those told before it: told the same second, twelve polite clients came back
    as one herd and all but one were refused again (280 refusals for 37 answers on 2 cores,
    benchmarks/bench_overload.py).
    Keyed by the request (its query and documents), so a client that retries early is told the
    time it was given, not sent to the back, and a hundred early retries of one request hold
    its place once, not a hundred times (each would have pushed every other client's wait)."""

    def __init__(self) -> None:
        self._told: dict[int, tuple[float, int]] = {}  # request -> (when it comes back, pairs)
        self._by_time: list[tuple[float, int]] = []  # (when, request), a heap, to forget them

    def pending(self, now: float) -> int:
        """Pairs of the requests told to come back, until they do (or their time has passed)."""
        self._forget_until(now)
        return sum(pairs for _, pairs in self._told.values())

    def remaining(self, request: int, now: float) -> int | None:
        """Whole seconds until ``request`` was told to come back, if it was and that is to come."""
        self._forget_until(now)
        found = self._told.get(request)
        return None if found is None or found[0] <= now else math.ceil(found[0] - now)

    def held_for_others(self, request: int, now: float, pairs_per_second: float) -> int:
        """Room a request admitted now must leave free: the most that the requests told to
        come back (``request`` aside) will need when they do, beyond what is decoded by then.
        Without it, clients that polled every 200 ms took the room as it freed, and those that
        waited as told were refused again (14 % admitted at the first retry; 70 % with it)."""
        self._forget_until(now)
        need = total = 0.0
        for due, pairs in sorted(v for k, v in self._told.items() if k != request):
            total += pairs
            need = max(need, total - pairs_per_second * max(due - now, 0.0))
        return math.ceil(need)

    def forget(self, request: int) -> None:
        """``request`` was admitted: the place it was told is used."""
        self._told.pop(request, None)

    def promise(self, request: int, now: float, seconds: int, pairs: int) -> None:
        """``request`` was told to come back in ``seconds``: its ``pairs`` are counted till then."""
        if len(self._told) < LEDGER_SIZE or request in self._told:
            self._told[request] = (now + seconds, pairs)
            heapq.heappush(self._by_time, (now + seconds, request))

    def _forget_until(self, now: float) -> None:
        """Forget promises past their time and its grace: the client did not come back."""
        while self._by_time and self._by_time[0][0] + GRACE_SECONDS <= now:
            due, request = heapq.heappop(self._by_time)
            if self._told.get(request, (None, 0))[0] == due:
                del self._told[request]
