"""How long a streamer's writes and fsyncs take: histograms its service and writer report to.

`observe_write(seconds)`: one write request (Log, LogBatch, or one request of a LogStream) from
admission to its last byte handed to the OS, measured in `service.py`. `observe_fsync(seconds)`:
one fdatasync/fsync call of the writer (its `-fsync always|interval` policy). Rendered by
`metrics.StreamerCollector` as `logstream_streamer_write_seconds` and `..._fsync_seconds`.
"""

from __future__ import annotations

from logstream.node.histogram import Histogram


class StreamerTimings:
    def __init__(self) -> None:
        self.write = Histogram()
        self.fsync = Histogram()

    def observe_write(self, seconds: float) -> None:
        self.write.observe(seconds)

    def observe_fsync(self, seconds: float) -> None:
        self.fsync.observe(seconds)
