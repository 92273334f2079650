"""Per-streamer forward latency and outcome on the mediator: the API its forwarding code reports to.

`observe_forward(streamer_id, seconds, code)` is called once per forward (a LogBatch sent to a
streamer, on a stream or unary) with the time from sending to its reply and the grpc status name
(`OK`, `UNAVAILABLE`, ...); `metrics.MediatorCollector` renders
`logstream_mediator_forward_seconds{node,streamer,code}` from it at scrape time.
"""

from __future__ import annotations

from logstream.node.histogram import Histogram


class ForwardStats:
    """Forward latency histograms, one per (streamer id, status code)."""

    def __init__(self) -> None:
        self.by_streamer: dict[tuple[str, str], Histogram] = {}

    def observe_forward(self, streamer_id: str, seconds: float, code: str = "OK") -> None:
        histogram = self.by_streamer.get((streamer_id, code))
        if histogram is None:
            histogram = self.by_streamer[(streamer_id, code)] = Histogram()
        histogram.observe(seconds)

    def snapshot(self) -> list[tuple[tuple[str, str], Histogram]]:
        """For a scraping thread: the series now (dict.copy holds the GIL throughout)."""
        return sorted(self.by_streamer.copy().items(), key=lambda item: item[0])
