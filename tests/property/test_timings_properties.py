"""The cluster's timings: a lease a streamer counts on its own clock (from any receipt of a ping
answered in time, at any clock rate within the margin) ends before the mediator's expiry bound; the
defaults keep a lease across a health interval; a request waiting for a failed owner outlasts its lease."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from logstream.config import timings
from logstream.config.settings import MediatorSettings

# Seconds, from 1ms to a day; the arithmetic is in floats, so compare with a relative slack far
# below any real clock's resolution.
seconds = st.floats(min_value=0.001, max_value=86_400, allow_nan=False, allow_infinity=False)
fractions = st.floats(min_value=0.0, max_value=1.0)
SLACK = 1e-9


def at_most(a: float, b: float) -> bool:
    return a <= b + SLACK * max(1.0, abs(b))


@given(seconds, seconds)
def test_the_expiry_bound_outlasts_the_lease_and_the_ping(ping_timeout_s: float, lease_s: float) -> None:
    bound = timings.expiry_bound_s(ping_timeout_s, lease_s)
    assert bound > lease_s and bound > ping_timeout_s


@given(seconds, seconds, seconds, fractions, fractions)
def test_a_streamers_lease_ends_before_the_mediator_frees_its_keys(
    sent: float, ping_timeout_s: float, lease_s: float, delay: float, rate: float
) -> None:
    # The ping arrives before its deadline (else it is never acked and grants nothing).
    receipt = sent + delay * ping_timeout_s
    # The streamer's clock runs at any rate within the margin of the mediator's; a lease of
    # `lease_s` on its clock lasts `lease_s / speed` on the mediator's.
    low = 1 / timings.CLOCK_RATE_MARGIN
    speed = low + rate * (timings.CLOCK_RATE_MARGIN - low)
    lease_ends = receipt + lease_s / speed
    assert at_most(lease_ends, sent + timings.expiry_bound_s(ping_timeout_s, lease_s))


@given(seconds, fractions)
def test_a_reported_lease_is_over_by_the_mediators_reckoning(now: float, left: float) -> None:
    # state.py: a streamer reports how long its lease still runs (its clock); the mediator waits
    # outlived_s(left) on its own, which covers the slowest streamer clock.
    left_s = left * 100
    assert at_most(now + left_s * timings.CLOCK_RATE_MARGIN, now + timings.outlived_s(left_s))
    assert timings.outlived_s(left_s) >= left_s


@given(seconds)
def test_the_defaults_keep_a_lease_across_an_interval(interval_s: float) -> None:
    ping_timeout_s = timings.default_ping_timeout_s(interval_s)
    lease_s = timings.default_lease_s(interval_s)
    assert 0 < ping_timeout_s <= interval_s and ping_timeout_s <= timings.PING_TIMEOUT_CAP_S
    assert timings.lease_outlasts_interval(lease_s, interval_s)
    wait_s = timings.default_handoff_wait_s(interval_s, ping_timeout_s, lease_s)
    assert wait_s > timings.expiry_bound_s(ping_timeout_s, lease_s)


@given(st.integers(min_value=10, max_value=600_000))
def test_the_mediators_settings_use_these_defaults(interval_ms: int) -> None:
    interval_s = interval_ms / 1000
    settings = MediatorSettings.model_validate({"health_interval": interval_s})
    assert settings.lease == timings.default_lease_s(interval_s)
    assert settings.ping_timeout == timings.default_ping_timeout_s(interval_s)
    assert settings.handoff_wait == timings.default_handoff_wait_s(interval_s, settings.ping_timeout, settings.lease)


def test_the_membership_bound_is_the_timings_bound() -> None:
    from logstream.mediator.membership import Membership

    assert Membership(lease_s=7.5, ping_timeout_s=2.0).expiry_bound_s == timings.expiry_bound_s(2.0, 7.5)
