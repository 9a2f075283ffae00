"""The gateway's time-averaged requests in flight (pure, clock passed in)."""

import pytest
from kuberank.gateway.load import LoadMeter

pytestmark = pytest.mark.unit


def test_average_is_the_time_integral_of_requests_in_flight() -> None:
    meter = LoadMeter()
    meter.enter("m", 0.0)
    meter.enter("m", 0.0)
    meter.leave("m", 5.0)  # two for 5 s, then one for 5 s
    assert meter.take("m", 10.0) == pytest.approx(1.5)
    # the next period starts at 10 s with the one request still open
    meter.leave("m", 12.0)
    assert meter.take("m", 20.0) == pytest.approx(0.2)
    assert meter.take("m", 30.0) == 0.0


def test_a_short_burst_counts_for_its_share_of_the_period() -> None:
    meter = LoadMeter()
    meter.take("m", 0.0)
    for _ in range(10):
        meter.enter("m", 4.0)
    for _ in range(10):
        meter.leave("m", 5.0)
    assert meter.take("m", 10.0) == pytest.approx(1.0)


def test_models_are_measured_apart_and_leaving_never_goes_negative() -> None:
    meter = LoadMeter()
    meter.enter("a", 0.0)
    meter.leave("b", 0.0)
    assert meter.take("a", 2.0) == pytest.approx(1.0)
    assert meter.take("b", 2.0) == 0.0
    assert sorted(meter.keys()) == ["a", "b"]  # type: ignore[type-var]
