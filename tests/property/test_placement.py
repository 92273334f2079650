"""Rendezvous placement: deterministic, order-free, balanced, and minimal movement on changes."""

from __future__ import annotations

import math
from collections import Counter

from hypothesis import given
from hypothesis import strategies as st

from logstream.keys.paths import FileKey
from logstream.keys.placement import place

KEYS = [FileKey(f"svc{i % 7}", f"file-{i}") for i in range(1000)]
ids = st.lists(st.text(min_size=1, max_size=12), min_size=2, max_size=10, unique=True)


def five_sigma(n_keys: int, p: float) -> float:
    """Each streamer's count is Binomial(n_keys, p) when the hash behaves as random: the chance a
    given count strays past 5 standard deviations is below 6e-7, so across <=10 streamers and a few
    hundred examples a false failure stays below ~1e-3, while a skew (the Go original sent 75-87%
    of traffic to one of two streamers) is far outside it."""
    return 5 * math.sqrt(n_keys * p * (1 - p)) + 1


@given(ids, st.randoms(use_true_random=False))
def test_placement_ignores_the_order_of_streamers(streamers: list[str], rnd: object) -> None:
    shuffled = list(streamers)
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    for key in KEYS[:50]:
        assert place(key, streamers) == place(key, shuffled) in streamers


def test_no_streamers_means_no_owner() -> None:
    assert place(FileKey("", "a"), []) is None


@given(ids)
def test_balance_of_1000_keys(streamers: list[str]) -> None:
    counts = Counter(place(key, streamers) for key in KEYS)
    p = 1 / len(streamers)
    for streamer in streamers:
        assert abs(counts[streamer] - len(KEYS) * p) <= five_sigma(len(KEYS), p), counts


@given(ids, st.text(min_size=1, max_size=12))
def test_adding_one_moves_about_one_share_and_only_to_the_newcomer(streamers: list[str], new: str) -> None:
    if new in streamers:
        return
    before = {key: place(key, streamers) for key in KEYS}
    after = {key: place(key, [*streamers, new]) for key in KEYS}
    moved = [key for key in KEYS if before[key] != after[key]]
    assert all(after[key] == new for key in moved)
    p = 1 / (len(streamers) + 1)
    assert abs(len(moved) - len(KEYS) * p) <= five_sigma(len(KEYS), p)


@given(ids, st.data())
def test_removing_one_moves_only_its_keys(streamers: list[str], data: st.DataObject) -> None:
    gone = data.draw(st.sampled_from(streamers))
    rest = [s for s in streamers if s != gone]
    for key in KEYS:
        before = place(key, streamers)
        after = place(key, rest)
        assert after == before or before == gone
