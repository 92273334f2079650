"""A fixed-bucket histogram of seconds: a few integer additions per observation, read at scrape time."""

from __future__ import annotations

import bisect
from collections.abc import Sequence

# Seconds: from a buffered write (tens of µs) to a slow disk or a stalled peer (seconds).
LATENCY_BUCKETS_S = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                     1.0, 2.5, 5.0, 10.0)


class Histogram:
    """Observations counted into fixed buckets (upper bounds, seconds); `family` renders them."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: Sequence[float] = LATENCY_BUCKETS_S) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)  # the last: above every bound (+Inf)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value

    def buckets(self) -> list[tuple[str, float]]:
        """Cumulative (le, count) pairs as Prometheus wants them, ending with +Inf."""
        counts = list(self.counts)  # a copy: the loop may observe meanwhile
        pairs: list[tuple[str, float]] = []
        cumulative = 0
        for bound, count in zip((*self.bounds, float("inf")), counts, strict=True):
            cumulative += count
            pairs.append(("+Inf" if bound == float("inf") else repr(bound), cumulative))
        return pairs
