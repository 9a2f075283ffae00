"""Which waiting pairs the engine decodes next: pure bookkeeping, no llama.cpp, no threads.

Every request is a job of pairs. In arrival order ("fifo") a one-document request that lands
behind a 500-document one waits for all 500 decodes. "shortest" (the default) serves the job with
the fewest pairs left first, arrival order breaking ties: that minimizes the mean time requests
wait (shortest remaining processing time) and keeps arrival order among equal requests. A large
job would wait as long as smaller ones keep arriving, so a job that has waited ``max_wait``
seconds goes to the front (the overdue ones in arrival order): nothing starves. A job whose
client left is dropped whole when its turn comes.
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, Literal, Protocol, TypeVar

Policy = Literal["shortest", "fifo"]


class HasPairs(Protocol):
    @property
    def pairs(self) -> Sequence[Sequence[int]]: ...


J = TypeVar("J", bound=HasPairs)


OVERDUE = -1  # the first part of an overdue job's key: before every job still in its turn


@dataclass(order=True)
class _Entry(Generic[J]):
    key: tuple[int, int]  # (pairs left, or 0 in fifo, or OVERDUE; arrival number)
    job: J = field(compare=False)
    arrived: float = field(default=0.0, compare=False)
    next: int = field(default=0, compare=False)
    finished: bool = field(default=False, compare=False)


@dataclass(frozen=True)
class Batch(Generic[J]):
    pairs: list[tuple[J, int]]  # (job, index of the pair in job.pairs)
    skipped: int  # pairs of dropped jobs removed on the way


class PairScheduler(Generic[J]):
    """Jobs waiting for the engine, handed out as batches of (job, pair index)."""

    def __init__(self, policy: Policy = "shortest", max_wait: float | None = None) -> None:
        self.policy = policy
        self.max_wait = max_wait
        self._heap: list[_Entry[J]] = []
        self._by_arrival: deque[_Entry[J]] = deque()  # for finding overdue jobs
        self._arrival = itertools.count()

    def __len__(self) -> int:
        """Jobs with pairs left."""
        return len(self._heap)

    def add(self, job: J, now: float = 0.0) -> None:
        if not job.pairs:
            return
        arrival = next(self._arrival)
        entry = _Entry((len(job.pairs) if self.policy == "shortest" else 0, arrival), job, now)
        heapq.heappush(self._heap, entry)
        self._by_arrival.append(entry)

    def next_batch(self, max_pairs: int, max_tokens: int, dropped: Callable[[J], bool],
                   now: float = 0.0) -> Batch[J]:
        """Up to ``max_pairs`` pairs within ``max_tokens`` tokens (always at least one pair when
        any is left), taken from the job first in line, then the next; a dropped job's pairs are
        removed and counted instead."""
        self._promote_overdue(now)
        pairs: list[tuple[J, int]] = []
        tokens = skipped = 0
        while self._heap and len(pairs) < max_pairs:
            entry = self._heap[0]
            left = len(entry.job.pairs) - entry.next
            if dropped(entry.job):
                self._pop()
                skipped += left
                continue
            size = len(entry.job.pairs[entry.next])
            if pairs and tokens + size > max_tokens:
                break
            pairs.append((entry.job, entry.next))
            tokens += size
            entry.next += 1
            if left == 1:
                self._pop()
            elif self.policy == "shortest" and entry.key[0] != OVERDUE:
                # The first job with one pair fewer is still first: the heap stays valid.
                entry.key = (left - 1, entry.key[1])
        return Batch(pairs, skipped)

    def _pop(self) -> None:
        heapq.heappop(self._heap).finished = True

    def _promote_overdue(self, now: float) -> None:
        if self.max_wait is None or self.policy == "fifo":
            return  # fifo serves the oldest first anyway
        promoted = False
        while self._by_arrival:
            entry = self._by_arrival[0]
            if not entry.finished and now - entry.arrived <= self.max_wait:
                break
            self._by_arrival.popleft()
            if not entry.finished:
                entry.key = (OVERDUE, entry.key[1])
                promoted = True
        if promoted:
            heapq.heapify(self._heap)  # rare: at most once per job
