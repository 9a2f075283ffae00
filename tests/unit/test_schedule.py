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


@pytest.mark.parametrize("max_wait", [None, 60.0])
def test_a_large_request_waits_in_proportion_to_its_size_not_for_a_fixed_bound(
    max_wait: float | None,
) -> None:
    """A stream of one-pair requests at full load: the three-pair one is served in between, as
    soon as it has waited as long per pair as they have (pure shortest-first would hold it until
    a fixed bound, 10 s by default), and no small one waits over a step for it."""
    s: PairScheduler[Job] = PairScheduler(max_wait=max_wait)
    big = job("big", 3)
    s.add(big, now=0.0)
    served = served_over_time(s, big, 10)
    assert served == ["s0-0", "big0", "s1-0", "s2-0", "big1", "s3-0", "big2",
                      "s4-0", "s5-0", "s6-0"]  # each small one served within two steps


def test_a_small_request_overtakes_a_large_one_that_has_waited_a_while() -> None:
    s: PairScheduler[Job] = PairScheduler()
    s.add(job("big", 100), now=0.0)
    s.add(job("small", 1), now=0.5)
    # At 0.5 s the big one has waited 5 ms a pair: the small one, 0 (both fresh would be a tie).
    first = s.next_batch(1, 512, lambda j: False, now=0.5).pairs
    assert [j.name for j, _ in first] == ["big"]  # the small one has not waited yet
    second = s.next_batch(1, 512, lambda j: False, now=0.51).pairs
    assert [j.name for j, _ in second] == ["small"]  # 10 ms on one pair beats 5.1 ms a pair


def test_overdue_requests_go_first_in_arrival_order() -> None:
    s: PairScheduler[Job] = PairScheduler(max_wait=1)
    s.add(job("old", 3), now=0.0)
    s.add(job("second", 2), now=0.5)  # arrived later: after "old"
    s.add(job("fresh", 1), now=9.0)
    order = [f"{j.name}{i}" for j, i in s.next_batch(9, 512, lambda j: False, now=9.0).pairs]
    assert order == ["old0", "old1", "old2", "second0", "second1", "fresh0"]


def test_thousands_of_waiting_jobs_each_hand_out_every_pair_once_and_equal_ones_in_order() -> None:
    s: PairScheduler[Job] = PairScheduler(max_wait=5)
    sizes = [1, 1, 2, 3, 8, 1, 32, 2] * 250
    jobs = [job(f"j{i}-", n) for i, n in enumerate(sizes)]
    for i, j in enumerate(jobs):
        s.add(j, now=i * 0.001)
    handed: list[tuple[str, int]] = []
    t = 2.0
    while len(s):
        handed += [(j.name, i) for j, i in s.next_batch(8, 512, lambda j: False, now=t).pairs]
        t += 0.01
    assert sorted(handed) == sorted((j.name, i) for j in jobs for i in range(len(j.pairs)))
    finished = [name for name, i in handed if i == len(jobs[int(name[1:-1])].pairs) - 1]
    for n in set(sizes):  # jobs of one size end in the order they came
        same = [name for name in finished if len(jobs[int(name[1:-1])].pairs) == n]
        assert same == sorted(same, key=lambda name: int(name[1:-1]))
