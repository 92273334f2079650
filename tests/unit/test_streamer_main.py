"""The streamer's start-up check of -max-open-files against the open-files limit (a pure decision)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from logstream.streamer.main import DESCRIPTOR_MARGIN, descriptor_shortfall


@given(cap=st.integers(min_value=1, max_value=65_536), limit=st.integers(min_value=-1, max_value=200_000))
def test_a_cap_is_refused_exactly_when_it_and_the_margin_exceed_the_limit(cap: int, limit: int) -> None:
    problem = descriptor_shortfall(cap, limit)
    assert (problem is not None) == (0 <= limit < cap + DESCRIPTOR_MARGIN)
    if problem is not None:
        assert f"-max-open-files {cap} " in problem and f"is {limit}:" in problem


def test_the_default_cap_fits_a_common_limit_of_1024() -> None:
    assert descriptor_shortfall(256, 1024) is None
    assert descriptor_shortfall(1024, 1024) is not None
