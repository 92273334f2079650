"""Metrics both roles export: RPCs by status code, build info, liveness and readiness; a cheap histogram.

Like the roles' collectors, everything is read at scrape time from plain counters the event loop
updates, so a request pays for a few integer additions, never a prometheus_client lock.
"""

from __future__ import annotations

import platform
from collections.abc import Callable, Iterator, Sequence

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import REGISTRY, Collector, CollectorRegistry

import logstream
from logstream.node.health import NodeHealth
from logstream.node.histogram import Histogram
from logstream.node.rpcmetrics import RpcCounts

def histogram_family(name: str, text: str, labels: Sequence[str],
                     series: Sequence[tuple[Sequence[str], Histogram]]) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, text, labels=list(labels))
    for values, histogram in series:
        family.add_metric(list(values), histogram.buckets(), histogram.sum)
    return family


class NodeCollector(Collector):
    """`logstream_build_info`, `logstream_<role>_grpc_requests_total{rpc,code}`,
    `logstream_<role>_live` and `logstream_<role>_ready`."""

    def __init__(self, role: str, node: Callable[[], str], rpc_counts: RpcCounts | None,
                 health: NodeHealth | None) -> None:
        self._role = role
        self._node = node
        self._rpc_counts = rpc_counts
        self._health = health

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        node = self._node()
        info = GaugeMetricFamily("logstream_build_info", "always 1; the labels say what runs",
                                 labels=["node", "role", "version", "python"])
        info.add_metric([node, self._role, logstream.__version__, platform.python_version()], 1)
        yield info
        if self._rpc_counts is not None:
            requests = CounterMetricFamily(f"logstream_{self._role}_grpc_requests",
                                           "RPCs served (all services), by method and final status code",
                                           labels=["node", "rpc", "code"])
            for (rpc, code), count in sorted(self._rpc_counts.snapshot().items()):
                requests.add_metric([node, rpc, code], count)
            yield requests
        if self._health is not None:
            live = GaugeMetricFamily(f"logstream_{self._role}_live",
                                     "1 while the node and its background tasks are well (/healthz)",
                                     labels=["node"])
            live.add_metric([node], int(self._health.live() is None))
            yield live
            ready = GaugeMetricFamily(f"logstream_{self._role}_ready",
                                      "1 while the node can take writes now (/readyz)", labels=["node"])
            ready.add_metric([node], int(self._health.ready() is None))
            yield ready


def register(collector: Collector, registry: CollectorRegistry = REGISTRY) -> Callable[[], None]:
    """Register `collector`; returns the function that unregisters it."""
    registry.register(collector)
    return lambda: registry.unregister(collector)
