"""Which waiting pairs the engine decodes next (pure; the engine's tests run it for real)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from kuberank.runtime.schedule import PairScheduler

pytestmark = pytest.mark.unit


@dataclass(eq=False)
class Job:
    name: str
    pairs: list[list[int]]
    gone: bool = field(default=False)


def job(name: str, n: int, tokens: int = 10) -> Job:
    return Job(name, [[0] * tokens for _ in range(n)])


def drain(s: PairScheduler[Job], max_pairs: int = 1, max_tokens: int = 512) -> list[str]:
    order = []
    while len(s):
        order += [f"{j.name}{i}" for j, i in s.next_batch(max_pairs, max_tokens,
                                                          lambda j: j.gone).pairs]
    return order


def test_a_small_request_is_not_stuck_behind_a_large_one() -> None:
    s: PairScheduler[Job] = PairScheduler()
    big, small = job("big", 5), job("small", 1)
    s.add(big)
    s.add(small)
    assert drain(s) == ["small0", "big0", "big1", "big2", "big3", "big4"]


def test_fifo_keeps_arrival_order() -> None:
    s: PairScheduler[Job] = PairScheduler("fifo")
    s.add(job("big", 3))
    s.add(job("small", 1))
    assert drain(s) == ["big0", "big1", "big2", "small0"]


def test_equal_requests_finish_one_after_another_in_arrival_order() -> None:
    """Not interleaved: round-robin would make every one of them wait for all the others."""
    s: PairScheduler[Job] = PairScheduler()
    for name in "abc":
        s.add(job(name, 2))
    assert drain(s) == ["a0", "a1", "b0", "b1", "c0", "c1"]


def test_a_started_job_keeps_its_turn_against_a_later_job_of_its_remaining_size() -> None:
    s: PairScheduler[Job] = PairScheduler()
    first = job("a", 3)
    s.add(first)
    assert [i for _, i in s.next_batch(1, 512, lambda j: False).pairs] == [0]
    s.add(job("b", 2))  # a has 2 left too: a arrived first
    assert drain(s) == ["a1", "a2", "b0", "b1"]


def test_batches_respect_pair_and_token_budgets_and_always_make_progress() -> None:
    s: PairScheduler[Job] = PairScheduler()
    s.add(job("a", 2, tokens=100))
    s.add(job("b", 3, tokens=100))
    batch = s.next_batch(max_pairs=4, max_tokens=250, dropped=lambda j: False)
    assert [(j.name, i) for j, i in batch.pairs] == [("a", 0), ("a", 1)]
    # A pair over the token budget on its own is still handed out (pair sizes are checked
    # before they queue): the engine never stalls.
    s2: PairScheduler[Job] = PairScheduler()
    s2.add(job("huge", 1, tokens=900))
    assert len(s2.next_batch(4, 512, lambda j: False).pairs) == 1


def test_a_job_whose_client_left_is_dropped_whole_and_counted() -> None:
    s: PairScheduler[Job] = PairScheduler()
    small, big = job("small", 2), job("big", 4)
    s.add(small)
    s.add(big)
    first = s.next_batch(1, 512, lambda j: j.gone)
    assert [(j.name, i) for j, i in first.pairs] == [("small", 0)] and first.skipped == 0
    small.gone = True
    second = s.next_batch(1, 512, lambda j: j.gone)
    assert [(j.name, i) for j, i in second.pairs] == [("big", 0)] and second.skipped == 1
    assert len(s) == 1


def test_a_job_without_pairs_is_never_scheduled() -> None:
    s: PairScheduler[Job] = PairScheduler()
    s.add(job("empty", 0))
    assert len(s) == 0 and s.next_batch(1, 512, lambda j: False).pairs == []


def served_over_time(s: PairScheduler[Job], big: Job, steps: int) -> list[str]:
    """A one-pair request arrives every second while the engine scores one pair per second."""
    served = []
    for t in range(steps):
        s.add(job(f"s{t}-", 1), now=float(t))
        served += [f"{j.name}{i}" for j, i in
                   s.next_batch(1, 512, lambda j: False, now=float(t)).pairs]
    return served


def test_a_large_request_is_not_starved_by_a_stream_of_small_ones() -> None:
    s: PairScheduler[Job] = PairScheduler(max_wait=5)
    big = job("big", 3)
    s.add(big, now=0.0)
    served = served_over_time(s, big, 12)
    # Small ones first while big waits; once it has waited over 5 s it is served to the end.
    assert served[:6] == [f"s{t}-0" for t in range(6)]
    assert served[6:9] == ["big0", "big1", "big2"]


def test_without_a_wait_bound_shortest_first_would_starve_it() -> None:
    s: PairScheduler[Job] = PairScheduler()
    big = job("big", 3)
    s.add(big, now=0.0)
    assert not any(name.startswith("big") for name in served_over_time(s, big, 12))


def test_overdue_requests_go_first_in_arrival_order() -> None:
    s: PairScheduler[Job] = PairScheduler(max_wait=1)
    s.add(job("old", 3), now=0.0)
    s.add(job("second", 2), now=0.5)  # arrived later: after "old"
    s.add(job("fresh", 1), now=9.0)
    order = [f"{j.name}{i}" for j, i in s.next_batch(9, 512, lambda j: False, now=9.0).pairs]
    assert order == ["old0", "old1", "old2", "second0", "second1", "fresh0"]
