"""A full queue's Retry-After: the time until the request fits, at the pace decodes go now."""

from __future__ import annotations

from kuberank.runtime.backlog import WINDOW, DecodePace, seconds_until_it_fits


def test_the_wait_is_for_the_excess_not_the_whole_queue() -> None:
    # 7,813 pairs waiting in a queue of 8,000, 700 more arriving, 8 ms a pair: 513 pairs to go.
    assert seconds_until_it_fits(7813, 700, 8000, 0.008, 1) == 5
    assert seconds_until_it_fits(7813, 700, 8000, 0.008, 2) == 3  # two contexts drain it
    assert seconds_until_it_fits(8000, 1, 8000, 0.008, 1) == 1  # never less than a second


def test_one_slow_decode_does_not_stretch_the_pace() -> None:
    pace = DecodePace()
    for _ in range(WINDOW - 1):
        pace.observe(0.008, 1)
    pace.observe(1.0, 1)  # a page fault, a neighbour's burst
    assert pace.per_pair() == 0.008
    pace.observe(0.064, 8)  # per pair, whatever the batch
    assert pace.per_pair() == 0.008


def test_the_pace_follows_a_lasting_change() -> None:
    pace = DecodePace(initial=0.1)
    for _ in range(WINDOW):
        pace.observe(0.02, 1)
    assert pace.per_pair() == 0.02
    pace.observe(0.0, 0)  # nothing decoded: nothing learnt
    assert pace.per_pair() == 0.02
