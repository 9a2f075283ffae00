"""Token buckets per key: requests/minute up front, tokens/minute charged after the fact."""

from __future__ import annotations

import pytest
from kuberank.gateway.ratelimit import (
    Allowance,
    InFlight,
    Limits,
    Quota,
    RateLimiter,
    TokenBucket,
    estimated_tokens,
    quota_headers,
    retry_after_seconds,
)

pytestmark = pytest.mark.unit


class FakeClock:
    """A hand-advanced monotonic clock (the limiter is pure; time is an input)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_bucket_starts_full_and_refills_continuously() -> None:
    clock = FakeClock()
    bucket = TokenBucket(60, 60.0, clock)
    for _ in range(60):
        assert bucket.try_take() == 0.0
    assert bucket.try_take() == pytest.approx(1.0)
    clock.now += 0.5
    assert bucket.try_take() == pytest.approx(0.5)
    clock.now += 0.5
    assert bucket.try_take() == 0.0


def test_bucket_never_holds_more_than_its_capacity() -> None:
    clock = FakeClock()
    bucket = TokenBucket(10, 60.0, clock)
    clock.now += 3600
    assert bucket.level == 10


def test_debit_can_push_a_bucket_into_debt_and_a_credit_fills_it_back_to_full() -> None:
    clock = FakeClock()
    bucket = TokenBucket(100, 60.0, clock)
    bucket.debit(250)
    assert bucket.level == pytest.approx(-150)
    assert bucket.wait_for(1) == pytest.approx(151 * 60 / 100)
    bucket.debit(-200)  # a reservation larger than the use, given back
    assert bucket.level == pytest.approx(50)
    bucket.debit(-500)
    assert bucket.level == pytest.approx(100)  # never past full


def test_bucket_rejects_nonpositive_capacity() -> None:
    with pytest.raises(ValueError):
        TokenBucket(0, 60.0, FakeClock())


def test_requests_per_minute_limit_refuses_with_wait_time() -> None:
    clock = FakeClock()
    limiter = RateLimiter(clock)
    limits = Limits(requests_per_minute=2)
    assert limiter.admit("k1", limits) == 0.0
    assert limiter.admit("k1", limits) == 0.0
    assert limiter.admit("k1", limits) == pytest.approx(30.0)
    clock.now += 30
    assert limiter.admit("k1", limits) == 0.0


def test_keys_have_separate_buckets() -> None:
    limiter = RateLimiter(FakeClock())
    limits = Limits(requests_per_minute=1)
    assert limiter.admit("k1", limits) == 0.0
    assert limiter.admit("k1", limits) > 0
    assert limiter.admit("k2", limits) == 0.0


def test_unlimited_key_is_always_admitted() -> None:
    limiter = RateLimiter(FakeClock())
    for _ in range(10_000):
        assert limiter.admit("k", Limits()) == 0.0


def test_token_debt_blocks_the_next_request_until_repaid() -> None:
    clock = FakeClock()
    limiter = RateLimiter(clock)
    limits = Limits(tokens_per_minute=600)
    assert limiter.admit("k", limits) == 0.0
    limiter.charge_tokens("k", 1200, limits)  # 600 tokens of debt at 10 tokens/s
    assert limiter.admit("k", limits) == pytest.approx(60.1)
    clock.now += 61
    assert limiter.admit("k", limits) == 0.0


def test_token_refusal_does_not_spend_a_request_token() -> None:
    clock = FakeClock()
    limiter = RateLimiter(clock)
    limits = Limits(requests_per_minute=1, tokens_per_minute=60)
    assert limiter.admit("k", limits) == 0.0
    limiter.charge_tokens("k", 120, limits)
    assert limiter.admit("k", limits) > 0
    clock.now += 61  # debt repaid and the request bucket refilled exactly once
    assert limiter.admit("k", limits) == 0.0


def test_changed_limits_take_effect_immediately() -> None:
    limiter = RateLimiter(FakeClock())
    assert limiter.admit("k", Limits(requests_per_minute=1)) == 0.0
    assert limiter.admit("k", Limits(requests_per_minute=1)) > 0
    assert limiter.admit("k", Limits(requests_per_minute=100)) == 0.0


def test_keys_whose_buckets_refilled_are_swept_and_come_back_fresh() -> None:
    clock = FakeClock()
    limiter = RateLimiter(clock)
    limits = Limits(requests_per_minute=2, tokens_per_minute=100)
    for key_id in ("rotated-away", "busy", "in-debt"):
        assert limiter.admit(key_id, limits) == 0.0
    clock.now += 30
    limiter.charge_tokens("in-debt", 400, limits)  # a minute of tokens owed, the most there is
    clock.now += 31
    assert limiter.admit("busy", limits) == 0.0  # the sweep runs on this call
    assert len(limiter) == 2  # "rotated-away" refilled and was dropped; debt is kept
    assert limiter.admit("in-debt", limits) > 0
    assert limiter.admit("busy", limits) == 0.0
    assert limiter.admit("busy", limits) > 0  # its limit of 2 holds across the sweep


def test_sweeping_never_changes_what_a_key_is_allowed() -> None:
    clock = FakeClock()
    swept, kept = RateLimiter(clock), RateLimiter(clock)
    limits = Limits(requests_per_minute=3)
    for limiter in (swept, kept):
        limiter.admit("k", limits)
    clock.now += 120
    swept.admit("other", limits)  # sweeps "k" from one limiter only
    assert len(swept) == 1
    assert [swept.admit("k", limits) for _ in range(4)] == [kept.admit("k", limits)
                                                            for _ in range(4)]


@pytest.mark.parametrize(("wait", "header"), [(0.01, 1), (1.0, 1), (1.2, 2), (59.5, 60)])
def test_retry_after_is_whole_seconds_rounded_up(wait: float, header: int) -> None:
    assert retry_after_seconds(wait) == header


def test_quota_reports_what_is_left_and_when_it_is_full_again() -> None:
    clock = FakeClock()
    limiter = RateLimiter(clock)
    limits = Limits(requests_per_minute=3, tokens_per_minute=600)
    assert limiter.quota("k", limits) == Quota(Allowance(3, 3, 0.0), Allowance(600, 600, 0.0))
    assert limiter.admit("k", limits) == 0.0
    limiter.charge_tokens("k", 150, limits)
    quota = limiter.quota("k", limits)
    assert quota.requests == Allowance(3, 2, pytest.approx(20.0))  # one request per 20 s
    assert quota.tokens == Allowance(600, 450, pytest.approx(15.0))  # 10 tokens per second
    assert quota_headers(quota) == {
        "x-ratelimit-limit-requests": "3", "x-ratelimit-remaining-requests": "2",
        "x-ratelimit-reset-requests": "20s", "x-ratelimit-limit-tokens": "600",
        "x-ratelimit-remaining-tokens": "450", "x-ratelimit-reset-tokens": "15s",
    }


def test_quota_in_token_debt_shows_nothing_remaining() -> None:
    clock = FakeClock()
    limiter = RateLimiter(clock)
    limits = Limits(tokens_per_minute=60)
    limiter.admit("k", limits)
    limiter.charge_tokens("k", 90, limits)
    quota = limiter.quota("k", limits)
    assert quota.requests is None
    assert quota.tokens == Allowance(60, 0, pytest.approx(90.0))
    assert "x-ratelimit-limit-requests" not in quota_headers(quota)
    assert quota_headers(Quota()) == {}


def test_each_of_two_gateway_replicas_enforces_half_a_keys_limit() -> None:
    clock = FakeClock()
    limiter = RateLimiter(clock)
    limits = Limits(requests_per_minute=10).shared(2)
    assert [limiter.admit("k", limits) for _ in range(5)] == [0.0] * 5
    assert limiter.admit("k", limits) == pytest.approx(12.0)  # 5 a minute here: one per 12 s
    # the headers speak for the key's whole limit, as the other replica is about as far
    assert limiter.quota("k", limits).requests == Allowance(10, 0, pytest.approx(60.0))
    clock.now += 24
    assert limiter.quota("k", limits).requests == Allowance(10, 4, pytest.approx(36.0))


def test_a_share_below_one_request_a_minute_still_admits_at_its_rate() -> None:
    clock = FakeClock()
    limiter = RateLimiter(clock)
    limits = Limits(requests_per_minute=1).shared(3)
    assert limiter.admit("k", limits) == 0.0
    assert limiter.admit("k", limits) == pytest.approx(180.0)
    assert limiter.quota("k", limits).requests == Allowance(1, 0, pytest.approx(180.0))


def test_a_change_in_gateway_replicas_takes_effect_at_once_and_keeps_what_was_used() -> None:
    limiter = RateLimiter(FakeClock())
    base = Limits(requests_per_minute=4)
    assert [limiter.admit("k", base.shared(4)) for _ in range(2)] == [0.0, pytest.approx(60.0)]
    # Alone now, this replica holds the whole limit, of which the key has used it all (its
    # share here was spent): one request per 15 s from now on, not a fresh minute's worth.
    assert limiter.admit("k", base.shared(1)) == pytest.approx(15.0)
    assert Limits().shared(0).share == 1.0


def test_token_debt_survives_a_change_in_gateway_replicas() -> None:
    clock = FakeClock()
    limiter = RateLimiter(clock)
    alone = Limits(tokens_per_minute=1000)
    assert limiter.admit("k", alone) == 0.0
    limiter.charge_tokens("k", 1900, alone)  # 900 tokens owed: 54 s at 1000 a minute
    assert limiter.admit("k", alone) == pytest.approx(54.06)
    # A second replica joins: half the limit here, half the debt, the same time to repay.
    assert limiter.admit("k", alone.shared(2)) == pytest.approx(54.12)
    assert limiter.quota("k", alone.shared(2)).tokens == Allowance(1000, 0, pytest.approx(
        114.0))


def test_a_raised_limit_gives_room_at_once_and_a_lowered_one_takes_it_away() -> None:
    limiter = RateLimiter(FakeClock())
    assert limiter.admit("k", Limits(requests_per_minute=2)) == 0.0
    assert limiter.admit("k", Limits(requests_per_minute=2)) == 0.0
    assert limiter.admit("k", Limits(requests_per_minute=2)) > 0
    assert limiter.admit("k", Limits(requests_per_minute=3)) == 0.0  # 2 of 3 used: one left
    assert limiter.admit("k", Limits(requests_per_minute=3)) > 0
    # Lowered, what was used counts up to a minute of the new limit: one a minute from now.
    assert limiter.admit("k", Limits(requests_per_minute=1)) == pytest.approx(60.0)


def test_lowering_a_busy_keys_limit_refuses_it_for_a_minute_at_most() -> None:
    """It was refused for what it had used under the old limit: 10 used, lowered to 2, 283 s
    (on the demo, with two gateway replicas)."""
    clock = FakeClock()
    limiter = RateLimiter(clock)
    busy = Limits(requests_per_minute=10).shared(2)
    assert [limiter.admit("k", busy) for _ in range(5)] == [0.0] * 5
    lowered = Limits(requests_per_minute=2).shared(2)
    assert limiter.admit("k", lowered) == pytest.approx(60.0)
    assert limiter.quota("k", lowered).requests == Allowance(2, 0, pytest.approx(60.0))
    clock.now += 60
    assert limiter.admit("k", lowered) == 0.0


def test_a_refused_request_is_told_nothing_remains_here() -> None:
    """Two replicas sharing 3 a minute hold 1.5 each: after one request, half a request is
    left here, which admits nothing, and a 429 said 1 remaining."""
    limiter = RateLimiter(FakeClock())
    limits = Limits(requests_per_minute=3).shared(2)
    assert limiter.admit("k", limits) == 0.0
    assert limiter.admit("k", limits) > 0
    assert limiter.quota("k", limits).requests.remaining == 0  # type: ignore[union-attr]


def test_tokens_of_a_request_whose_buckets_were_swept_are_still_charged() -> None:
    """A tokens-only key leaves its bucket full while its request runs; the minute's sweep may
    drop it meanwhile, and the charge then lands on fresh buckets instead of nowhere."""
    clock = FakeClock()
    limiter = RateLimiter(clock)
    limits = Limits(tokens_per_minute=1000)
    assert limiter.admit("slow", limits) == 0.0
    clock.now += 61
    assert limiter.admit("other", limits) == 0.0  # the sweep drops the full "slow" entry
    limiter.charge_tokens("slow", 1900, limits)
    assert limiter.admit("slow", limits) == pytest.approx(54.06)


def test_requests_in_flight_are_capped_per_key_and_freed_on_leaving() -> None:
    flight = InFlight()
    assert flight.enter("k", 2) and flight.enter("k", 2)
    assert not flight.enter("k", 2)  # at the cap: refused, nothing counted
    assert flight.enter("other", 1) and flight.enter("free", None) and flight.enter("free", None)
    flight.leave("k")
    assert flight.enter("k", 2)
    for key in ("k", "k", "other", "free", "free"):
        flight.leave(key)
    assert len(flight) == 0


def test_each_gateway_replica_admits_its_share_of_the_cap_rounded_up() -> None:
    assert Limits(concurrent_requests=10).shared(3).concurrent_here == 4
    assert Limits(concurrent_requests=10).shared(2).concurrent_here == 5
    assert Limits(concurrent_requests=1).shared(4).concurrent_here == 1
    assert Limits().shared(2).concurrent_here is None


def test_a_burst_of_concurrent_requests_is_not_admitted_against_the_same_tokens() -> None:
    """Tokens are reserved at admission: 200 requests at once of 8,000 estimated tokens each on
    a 10,000-a-minute key admit one, not 200 (whose debt would lock the key out for hours)."""
    limiter = RateLimiter(FakeClock())
    limits = Limits(tokens_per_minute=10_000)
    admitted = [limiter.admit("k", limits, tokens=8000) == 0.0 for _ in range(200)]
    assert admitted.count(True) == 1
    # It used 6,000: the rest of its reservation comes back, and one more fits now.
    limiter.charge_tokens("k", 6000, limits, reserved=8000)
    assert limiter.admit("k", limits, tokens=4000) == 0.0
    assert limiter.admit("k", limits, tokens=1) > 0


def test_a_request_larger_than_the_budget_waits_for_a_full_bucket_and_its_debt_holds() -> None:
    """A budget holds over time: 100k-token requests on a 1,000-a-minute key run once every
    100 minutes, however they are spaced."""
    clock = FakeClock()
    limiter = RateLimiter(clock)
    limits = Limits(tokens_per_minute=1000)
    assert limiter.admit("k", limits, tokens=100_000) == 0.0  # a full bucket admits it
    limiter.charge_tokens("k", 100_000, limits, reserved=100_000)
    wait = limiter.admit("k", limits, tokens=100_000)
    assert wait == pytest.approx(100 * 60.0)  # 99,000 owed, then a full 1,000 again
    clock.now += wait
    assert limiter.admit("k", limits, tokens=100_000) == 0.0


def test_a_failed_request_gives_its_reservation_back() -> None:
    limiter = RateLimiter(FakeClock())
    limits = Limits(tokens_per_minute=1000)
    assert limiter.admit("k", limits, tokens=900) == 0.0
    assert limiter.admit("k", limits, tokens=900) > 0
    limiter.charge_tokens("k", 0, limits, reserved=900)  # the upstream failed: nothing used
    assert limiter.admit("k", limits, tokens=900) == 0.0


def test_tokens_are_estimated_from_the_query_paired_with_each_document() -> None:
    assert estimated_tokens("q" * 40, ["d" * 400, "d" * 40]) == (10 + 4 + 100) + (10 + 4 + 10)
    assert estimated_tokens("q", []) == 0
