"""Which waiting pairs the engine decodes next: pure bookkeeping, no llama.cpp, no threads.

Every request is a job of pairs. In arrival order ("fifo") a one-document request that lands
behind a 500-document one waits for all 500 decodes. "shortest" (the default) weighs each job's
wait against its size: the job that has waited longest *per pair it brought* goes next, the one
with fewer pairs left when that is equal (all new: shortest first), then the earlier one. A
small request overtakes a large one after waiting a sliver of the large one's wait, so it is not
stuck behind it; a large one is not held back by a stream of small ones beyond a wait in
proportion to its size (highest response ratio next, with the request's pairs as its service
time). Pure shortest-first held requests only a little larger than the rest until a fixed bound
(10 s) under steady load. A job that has waited ``max_wait`` seconds goes to the front whatever
its size (the overdue ones in arrival order). A job, once begun, keeps its turn against later
ones of its size. A job whose client left is dropped whole when its turn comes.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, Literal, Protocol, TypeVar

Policy = Literal["shortest", "fifo"]


class HasPairs(Protocol):
    @property
    def pairs(self) -> Sequence[Sequence[int]]: ...


J = TypeVar("J", bound=HasPairs)


@dataclass
class _Entry(Generic[J]):
    job: J
    arrived: float
    order: int  # arrival number
    size: int  # the job's pairs, as it arrived
    next: int = 0  # the first pair not handed out yet
    finished: bool = False

    @property
    def left(self) -> int:
        return self.size - self.next


@dataclass(frozen=True)
class Batch(Generic[J]):
    pairs: list[tuple[J, int]]  # (job, index of the pair in job.pairs)
    skipped: int  # pairs of dropped jobs removed on the way


class PairScheduler(Generic[J]):
    """Jobs waiting for the engine, handed out as batches of (job, pair index).

    Jobs are kept by size, each size in arrival order: among jobs of one size the oldest has
    waited longest per pair, so choosing the next job compares one job per size present, not
    every waiting job (thousands under overload)."""

    def __init__(self, policy: Policy = "shortest", max_wait: float | None = None) -> None:
        self.policy = policy
        self.max_wait = max_wait
        self._by_size: dict[int, deque[_Entry[J]]] = {}
        self._arrivals: deque[_Entry[J]] = deque()  # every job in arrival order (finished
        self._waiting = 0                           # ones leave when they reach the front)
        self._arrival = itertools.count()

    def __len__(self) -> int:
        """Jobs with pairs left."""
        return self._waiting

    def add(self, job: J, now: float = 0.0) -> None:
        if not job.pairs:
            return
        entry = _Entry(job, now, next(self._arrival), len(job.pairs))
        self._by_size.setdefault(entry.size, deque()).append(entry)
        self._arrivals.append(entry)
        self._waiting += 1

    def next_batch(self, max_pairs: int, max_tokens: int, dropped: Callable[[J], bool],
                   now: float = 0.0) -> Batch[J]:
        """Up to ``max_pairs`` pairs within ``max_tokens`` tokens (always at least one pair when
        any is left), taken from the job first in line, then the next; a dropped job's pairs are
        removed and counted instead."""
        pairs: list[tuple[J, int]] = []
        tokens = skipped = 0
        entry: _Entry[J] | None = None
        while len(pairs) < max_pairs:
            if entry is None:
                entry = self._first(now)
                if entry is None:
                    break
                if dropped(entry.job):
                    skipped += entry.left
                    self._remove(entry)
                    entry = None
                    continue
            size = len(entry.job.pairs[entry.next])
            if pairs and tokens + size > max_tokens:
                break
            pairs.append((entry.job, entry.next))
            tokens += size
            entry.next += 1
            if entry.left == 0:  # done: the next pair comes from whoever is first now
                self._remove(entry)
                entry = None
        return Batch(pairs, skipped)

    def _oldest(self) -> _Entry[J] | None:
        while self._arrivals and self._arrivals[0].finished:
            self._arrivals.popleft()
        return self._arrivals[0] if self._arrivals else None

    def _first(self, now: float) -> _Entry[J] | None:
        """The job whose turn it is: always the oldest of its size."""
        oldest = self._oldest()
        if oldest is None or self.policy == "fifo":
            return oldest
        if self.max_wait is not None and now - oldest.arrived > self.max_wait:
            return oldest  # overdue: the oldest job goes first, whatever its size
        return min((jobs[0] for jobs in self._by_size.values()),
                   key=lambda e: (-(now - e.arrived) / e.size, e.left, e.order))

    def _remove(self, entry: _Entry[J]) -> None:
        """Take out a job that ``_first`` chose (so the oldest of its size)."""
        jobs = self._by_size[entry.size]
        assert jobs[0] is entry, "only the oldest job of a size is ever chosen"
        jobs.popleft()
        if not jobs:
            del self._by_size[entry.size]
        entry.finished = True
        self._waiting -= 1
