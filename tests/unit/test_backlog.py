"""A full queue's Retry-After: the time until the request fits, at the pace decodes go now."""

from __future__ import annotations

from kuberank.runtime.backlog import (
    GRACE_SECONDS,
    KNOWN_AFTER,
    LEDGER_SIZE,
    WINDOW,
    DecodePace,
    Promises,
    queue_room,
    seconds_until_it_fits,
)


def test_the_wait_is_for_the_excess_not_the_whole_queue() -> None:
    # 7,813 pairs waiting in a queue of 8,000, 700 more arriving, 8 ms a pair: 513 pairs to go.
    assert seconds_until_it_fits(7813, 700, 8000, 0.008, 1) == 5
    assert seconds_until_it_fits(7813, 700, 8000, 0.008, 2) == 3  # two contexts drain it
    assert seconds_until_it_fits(8000, 1, 8000, 0.008, 1) == 1  # never less than a second
    # Taller than the room: it is taken alone, once the 100 queued are done.
    assert seconds_until_it_fits(100, 900, 500, 0.01, 1) == 1


def test_the_queue_takes_no_more_than_decodes_within_the_time_bound() -> None:
    """On 2 cores 8,192 pairs took ~90 s to drain, past the gateway's 60 s: the requests at
    the back were admitted only to time out there (504) instead of a 429 with Retry-After."""
    pace = DecodePace()
    assert queue_room(8192, 30.0, pace, 1) == 8192  # the first guess refuses nothing
    for _ in range(KNOWN_AFTER):
        pace.observe(0.011, 1)  # ~90 pairs/s
    assert queue_room(8192, 30.0, pace, 1) == 2727
    assert queue_room(8192, 30.0, pace, 2) == 5454  # two contexts drain twice as fast
    assert queue_room(8192, 0, pace, 1) == 8192  # no time bound
    assert queue_room(1000, 30.0, pace, 1) == 1000  # the pair bound, when tighter


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


def test_clients_refused_together_are_told_to_come_back_one_after_another() -> None:
    """Five 64-pair requests refused at once by a full queue (500 pairs, 100 pairs/s): each
    is counted behind those told before it, so they come back spread, not as one herd."""
    promises, told = Promises(), []
    for request in range(5):
        ahead = 500 + promises.pending(now=0.0)
        wait = seconds_until_it_fits(ahead, 64, 500, 0.01, 1)
        promises.promise(request, 0.0, wait, 64)
        told.append(wait)
    assert told == [1, 2, 2, 3, 4]  # 0.64, 1.28, 1.92, 2.56, 3.2 s to decode first, rounded up
    assert promises.pending(now=0.5) == 320
    # Those not admitted (forget) are counted until their time and GRACE_SECONDS have passed.
    assert promises.pending(now=1.0 + GRACE_SECONDS) == 256
    assert promises.pending(now=4.0 + GRACE_SECONDS) == 0


def test_a_request_retried_early_keeps_its_time_and_is_counted_once() -> None:
    """A client that ignores Retry-After and retries every 100 ms must not push every other
    client's wait back by its pairs at each try."""
    promises = Promises()
    promises.promise(7, 0.0, 5, 64)
    assert promises.remaining(7, now=0.1) == 5
    assert promises.remaining(7, now=3.5) == 2  # the time it was told, counted down
    assert promises.remaining(8, now=3.5) is None  # another request was told nothing
    assert promises.pending(now=3.5) == 64
    assert promises.remaining(7, now=5.0) is None  # its time came: told afresh if refused
    promises.promise(7, 5.0, 2, 64)
    assert promises.pending(now=6.0) == 64 and promises.remaining(7, now=6.0) == 1


def test_the_ledger_is_bounded() -> None:
    promises = Promises()
    for request in range(LEDGER_SIZE + 10):
        promises.promise(request, 0.0, 60, 1)
    assert promises.pending(now=1.0) == LEDGER_SIZE
    promises.promise(0, 1.0, 60, 5)  # one it holds is still told afresh
    assert promises.pending(now=2.0) == LEDGER_SIZE + 4


def test_room_is_held_for_requests_told_to_come_back_soon_not_for_those_due_later() -> None:
    """Clients polling every 200 ms took the room as it freed, and those that waited as told
    were refused again, every time."""
    promises = Promises()
    promises.promise(1, 0.0, 1, 64)  # back at 1 s
    promises.promise(2, 0.0, 2, 64)  # back at 2 s
    # At 100 pairs/s, 100 are decoded by 1 s: the first needs 64 - 100 < 0 of today's room,
    # both together 128 - 200 < 0; nothing held.
    assert promises.held_for_others(99, now=0.0, pairs_per_second=100) == 0
    # At 10 pairs/s: by 1 s 10 are decoded, so 54 of the room now is theirs; by 2 s 20, 108.
    assert promises.held_for_others(99, now=0.0, pairs_per_second=10) == 108
    assert promises.held_for_others(2, now=0.0, pairs_per_second=10) == 54  # its own aside
    # Past its time the first is still owed its room, all of it, for GRACE_SECONDS more.
    assert promises.held_for_others(99, now=1.5, pairs_per_second=10) == 123
    promises.forget(1)  # back, and admitted
    assert promises.held_for_others(99, now=1.5, pairs_per_second=10) == 59
    promises.forget(2)
    assert promises.held_for_others(99, now=1.5, pairs_per_second=10) == 0
    assert promises.pending(now=1.5) == 0
    promises.promise(3, 2.0, 1, 64)  # never comes back: its room is free again after grace
    assert promises.held_for_others(99, now=3.0 + GRACE_SECONDS, pairs_per_second=10) == 0
