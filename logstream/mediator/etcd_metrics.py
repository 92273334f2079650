"""Prometheus metrics of an etcd-mode mediator: the shared request counters, etcd's view (members, owned keys), redirects, latencies."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from logstream.mediator.etcd_router import EtcdRouter
from logstream.mediator.metrics import ack_latency, forward_latency, request_families


class EtcdMediatorCollector(Collector):
    """`logstream_mediator_*` as in embedded mode where it applies (no hand-offs, removals or fenced
    keys: etcd decides those), plus `redirects` and the members and owned keys of its etcd view."""

    def __init__(self, router: EtcdRouter, node: Callable[[], str]) -> None:
        self._router = router
        self._node = node

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily | HistogramMetricFamily]:
        router, node = self._router, self._node()
        view = router.view
        # Copies first: this runs in the HTTP server's thread while the loop changes the view.
        members, owned = dict(view.members), len(view.owners.copy())
        yield from request_families(router.counters, node, len(members))
        redirects = CounterMetricFamily("logstream_mediator_redirects", "forwards a streamer refused naming the "
                                        "key's owner in etcd, sent again to that owner", labels=["node"])
        redirects.add_metric([node], router.redirects)
        yield redirects
        keys = GaugeMetricFamily("logstream_mediator_keys_owned", "file keys with an owner record in etcd "
                                 "(this mediator's view)", labels=["node"])
        keys.add_metric([node], owned)
        yield keys
        up = GaugeMetricFamily("logstream_mediator_streamer_up", "1: the streamer is a member in etcd (its lease "
                               "lives)", labels=["node", "streamer", "addr"])
        for streamer, addr in sorted(members.items()):
            up.add_metric([node, streamer, addr], 1)
        yield up
        yield ack_latency(router.counters, node)
        yield forward_latency(router.counters, node)
