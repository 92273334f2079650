"""The bench's latency histogram: a percentile is never below the exact nearest-rank value and above it
by less than 1/128 of it (+1 µs); merging equals recording everything in one."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from logstream.commands.bench_histogram import Histogram, bucket_of, bucket_top


@given(st.lists(st.integers(0, 10**9), min_size=1, max_size=300), st.sampled_from([0.0, 0.5, 0.9, 0.99, 0.999, 1.0]))
def test_percentiles_are_within_the_stated_precision(values: list[int], q: float) -> None:
    histogram = Histogram()
    for value in values:
        histogram.record(value)
    exact = sorted(values)[max(1, math.ceil(q * len(values))) - 1]
    reported = histogram.percentile(q)
    assert exact <= reported <= exact + exact / 128 + 1


@given(st.lists(st.integers(0, 10**7)), st.lists(st.integers(0, 10**7)))
def test_merge_is_recording_both(first: list[int], second: list[int]) -> None:
    a, b, both = Histogram(), Histogram(), Histogram()
    for value in first:
        a.record(value)
        both.record(value)
    for value in second:
        b.record(value)
        both.record(value)
    a.merge(b)
    assert a.counts == both.counts


@given(st.integers(0, 10**12))
def test_a_value_lies_in_its_bucket(value: int) -> None:
    assert bucket_of(value) <= value <= bucket_top(bucket_of(value))
