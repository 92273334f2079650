"""Sizes and durations: formatting round-trips through parsing, and garbage is rejected."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from logstream.config.units import (
    SIZE_UNITS,
    UNLIMITED,
    UnitError,
    format_duration,
    format_size,
    parse_duration,
    parse_size,
)

sizes = st.integers(min_value=1, max_value=10**15) | st.just(UNLIMITED)


@given(sizes)
def test_size_round_trips(n: int) -> None:
    assert parse_size(format_size(n)) == n


@given(st.integers(min_value=1, max_value=10**6), st.sampled_from(sorted(SIZE_UNITS)))
def test_size_units_multiply(n: int, unit: str) -> None:
    assert parse_size(f"{n}{unit}") == n * SIZE_UNITS[unit]
    assert parse_size(f"{n}{unit.lower()}") == n * SIZE_UNITS[unit]


@given(st.text())
def test_size_parsing_accepts_only_valid_sizes(text: str) -> None:
    try:
        value = parse_size(text)
    except UnitError:
        return
    assert value == UNLIMITED or value >= 1


@pytest.mark.parametrize("text", ["", "abc", "1XB", "-2", "-1KB", "0", "5.5B", "1.0001KB", "MB", "1 M B", "nan", "inf"])
def test_bad_sizes_are_rejected(text: str) -> None:
    with pytest.raises(UnitError):
        parse_size(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("1MB", 1_000_000), ("1KB", 1000), ("1KiB", 1024), ("1.5MB", 1_500_000), ("-1B", -1), ("-1", -1), ("5", 5), ("2 GiB", 2 * 1024**3)],
)
def test_known_sizes(text: str, expected: int) -> None:
    assert parse_size(text) == expected


@given(st.integers(min_value=1, max_value=10**7).map(lambda ms: ms / 1000))
def test_duration_round_trips(seconds: float) -> None:
    assert parse_duration(format_duration(seconds)) == pytest.approx(seconds)


@pytest.mark.parametrize(("text", "seconds"), [("5s", 5.0), ("250ms", 0.25), ("1m30s", 90.0), ("1h", 3600.0), ("2", 2.0), ("1.5s", 1.5)])
def test_known_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "s", "-5s", "0s", "5 parsecs", "1s2", "nan", "inf", "-1"])
def test_bad_durations_are_rejected(text: str) -> None:
    with pytest.raises(UnitError):
        parse_duration(text)
