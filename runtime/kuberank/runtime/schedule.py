"""Which waiting pairs the engine decodes next: pure bookkeeping, no llama.cpp, no threads.

Every request is a job of pairs. In arrival order ("fifo") a one-document request that lands
behind a 500-document one waits for all 500 decodes. "shortest" (the default) serves the job with
the fewest pairs left first, arrival order breaking ties: that minimizes the mean time requests
wait (shortest remaining processing time), keeps arrival order among equal requests, and a large
job is only delayed while smaller ones keep arriving faster than the engine scores them, which
the queue limit (429) bounds. A job whose client left is dropped whole when its turn comes.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, Literal, Protocol, TypeVar

Policy = Literal["shortest", "fifo"]


class HasPairs(Protocol):
    @property
    def pairs(self) -> Sequence[Sequence[int]]: ...


J = TypeVar("J", bound=HasPairs)


@dataclass(order=True)
class _Entry(Generic[J]):
    key: tuple[int, int]
    job: J = field(compare=False)
    next: int = field(default=0, compare=False)


@dataclass(frozen=True)
class Batch(Generic[J]):
    pairs: list[tuple[J, int]]  # (job, index of the pair in job.pairs)
    skipped: int  # pairs of dropped jobs removed on the way


class PairScheduler(Generic[J]):
    """Jobs waiting for the engine, handed out as batches of (job, pair index)."""

    def __init__(self, policy: Policy = "shortest") -> None:
        self.policy = policy
        self._heap: list[_Entry[J]] = []
        self._arrival = itertools.count()

    def __len__(self) -> int:
        """Jobs with pairs left."""
        return len(self._heap)

    def add(self, job: J) -> None:
        if job.pairs:
            heapq.heappush(self._heap, _Entry(self._key(len(job.pairs), next(self._arrival)), job))

    def next_batch(self, max_pairs: int, max_tokens: int, dropped: Callable[[J], bool]) -> Batch[J]:
        """Up to ``max_pairs`` pairs within ``max_tokens`` tokens (always at least one pair when
        any is left), taken from the job first in line, then the next; a dropped job's pairs are
        removed and counted instead."""
        pairs: list[tuple[J, int]] = []
        tokens = skipped = 0
        while self._heap and len(pairs) < max_pairs:
            entry = self._heap[0]
            left = len(entry.job.pairs) - entry.next
            if dropped(entry.job):
                heapq.heappop(self._heap)
                skipped += left
                continue
            size = len(entry.job.pairs[entry.next])
            if pairs and tokens + size > max_tokens:
                break
            pairs.append((entry.job, entry.next))
            tokens += size
            entry.next += 1
            if left == 1:
                heapq.heappop(self._heap)
            else:  # the first job with one pair fewer is still first: the heap stays valid
                entry.key = self._key(left - 1, entry.key[1])
        return Batch(pairs, skipped)

    def _key(self, left: int, arrival: int) -> tuple[int, int]:
        return (left, arrival) if self.policy == "shortest" else (0, arrival)
