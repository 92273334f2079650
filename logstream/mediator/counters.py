"""The mediator's counters (status and /metrics read them): requests, lines, forwards, failures."""

from __future__ import annotations

import bisect
from collections import Counter
from dataclasses import dataclass, field

from logstream.mediator.forwards import ForwardStats
from logstream.node.status_schema import snake_case

LATENCY_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass
class Counters:
    requests: Counter[str] = field(default_factory=Counter)  # by RPC
    lines: int = 0
    bytes: int = 0
    forwards: int = 0
    forwarded_lines: int = 0
    forward_failures: int = 0
    retries: int = 0
    unavailable: int = 0
    invalid: int = 0
    handoffs: int = 0
    removals: int = 0
    keys_forgotten: int = 0
    latency_buckets: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS_S) + 1))
    latency_sum_s: float = 0.0
    # Per streamer and status code: the time from sending each forward to its reply.
    forward_latency: ForwardStats = field(default_factory=ForwardStats)

    def observe(self, seconds: float) -> None:
        self.latency_buckets[bisect.bisect_left(LATENCY_BUCKETS_S, seconds)] += 1
        self.latency_sum_s += seconds

    def as_map(self) -> dict[str, int]:
        values = {
            "requests": sum(self.requests.values()),
            "lines": self.lines,
            "bytes": self.bytes,
            "forwards": self.forwards,
            "forwarded_lines": self.forwarded_lines,
            "forward_failures": self.forward_failures,
            "retries": self.retries,
            "unavailable": self.unavailable,
            "invalid": self.invalid,
            "handoffs": self.handoffs,
            "removals": self.removals,
            "keys_forgotten": self.keys_forgotten,
        }
        # by RPC, snake_case as `status --json` promises (node/status_schema.py): requests_log_batch
        values.update({f"requests_{snake_case(name)}": count for name, count in self.requests.items()})
        return values
