"""Prometheus metrics of a streamer, read from the writer's counters at scrape time (no cost per write)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import REGISTRY, Collector, CollectorRegistry

from logstream.node.metrics import histogram_family
from logstream.streamer.lease import Lease
from logstream.streamer.timings import StreamerTimings
from logstream.streamer.writer import Writer


class StreamerCollector(Collector):
    """`logstream_streamer_*` counters and gauges for one writer and its lease."""

    def __init__(self, writer: Writer, lease: Lease, node: Callable[[], str],
                 timings: StreamerTimings | None = None) -> None:
        self._writer = writer
        self._lease = lease
        self._node = node
        self._timings = timings

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily | HistogramMetricFamily]:
        stats = self._writer.stats
        labels = ["node"]
        node = [self._node()]

        def counter(name: str, text: str, value: int) -> CounterMetricFamily:
            family = CounterMetricFamily(f"logstream_streamer_{name}", text, labels=labels)
            family.add_metric(node, value)
            return family

        def gauge(name: str, text: str, value: float) -> GaugeMetricFamily:
            family = GaugeMetricFamily(f"logstream_streamer_{name}", text, labels=labels)
            family.add_metric(node, value)
            return family

        yield counter("lines", "lines written to log files", stats.lines)
        yield counter("bytes", "bytes written to log files", stats.bytes)
        yield counter("rotations", "log files rotated", stats.rotations)
        yield counter("files_opened", "log files opened (and locked)", stats.opened)
        yield counter("write_errors", "failed writes, rotations and fsyncs (undone)", stats.write_errors)
        yield counter("locked_refusals", "requests refused because another process held a file's lock",
                      stats.locked)
        yield counter("rejected", "requests refused as bad input", stats.rejected)
        yield gauge("open_files", "log files held open (and locked) now", self._writer.open_files)
        yield gauge("descriptors", "descriptors held for log files and their folders now (bounded by "
                    "-max-open-files)", self._writer.descriptors)
        try:
            disk = os.statvfs(self._writer.root)
        except OSError:  # the root is gone: /readyz says so; no figure beats a wrong one
            pass
        else:
            yield gauge("root_free_bytes", "bytes free for this streamer (not root) on the root's filesystem",
                        disk.f_bavail * disk.f_frsize)
            yield gauge("root_size_bytes", "size of the root's filesystem in bytes", disk.f_blocks * disk.f_frsize)
        if self._timings is not None:
            yield histogram_family("logstream_streamer_write_seconds",
                                   "time to write one request (Log, LogBatch, a LogStream message), from "
                                   "admission to its last byte handed to the OS", labels, [(node, self._timings.write)])
            yield histogram_family("logstream_streamer_fsync_seconds",
                                   "time of one fsync of a log file or folder (-fsync always|interval)",
                                   labels, [(node, self._timings.fsync)])
        if self._lease.required:
            yield gauge("legacy_mode", "1: registered with a mediator that grants no leases (the original's); "
                        "file locks are the only guard and writes are taken from anyone", int(self._lease.legacy))
            yield gauge("lease_remaining_seconds", "time left on the mediator's lease (negative: lapsed)",
                        max(self._lease.remaining_s(), -1.0))


def register(collector: StreamerCollector, registry: CollectorRegistry = REGISTRY) -> Callable[[], None]:
    """Register `collector`; returns the function that unregisters it."""
    registry.register(collector)
    return lambda: registry.unregister(collector)
