"""Prometheus metrics of the mediator, read from the router's counters at scrape time."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import REGISTRY, Collector, CollectorRegistry

from logstream.mediator.counters import LATENCY_BUCKETS_S, Counters
from logstream.mediator.membership import State
from logstream.mediator.router import Router
from logstream.node.metrics import histogram_family


class MediatorCollector(Collector):
    """`logstream_mediator_*`: requests, lines, forwards, failures, live streamers, ack latency."""

    def __init__(self, router: Router, node: Callable[[], str]) -> None:
        self._router = router
        self._node = node

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily | HistogramMetricFamily]:
        node = self._node()
        yield from request_families(self._router.counters, node, len(self._router.state.live()))
        yield from self._cluster(node)
        yield ack_latency(self._router.counters, node)
        yield forward_latency(self._router.counters, node)

    def _cluster(self, node: str) -> Iterator[GaugeMetricFamily]:
        """Keys owned and waiting (as in Status), each streamer up or not."""
        state = self._router.state
        # Copies first: this runs in the HTTP server's thread while the loop changes the state.
        members = state.members()
        removed = list(self._router.removed.copy().values())
        owned = GaugeMetricFamily("logstream_mediator_keys_owned", "file keys placed on a streamer now",
                                  labels=["node"])
        keys_owned, keys_waiting = state.key_counts()
        owned.add_metric([node], keys_owned)
        yield owned
        waiting = GaugeMetricFamily("logstream_mediator_keys_waiting",
                                    "file keys that cannot be written now: fenced until a failed owner's lease "
                                    "has surely lapsed, or being handed off", labels=["node"])
        waiting.add_metric([node], keys_waiting)
        yield waiting
        up = GaugeMetricFamily("logstream_mediator_streamer_up",
                               "1: the streamer is live (answers pings, holds a lease); 0: registered but not "
                               "live yet, or removed after a failed ping or forward", labels=["node", "streamer", "addr"])
        seen = set()
        for member in sorted(members, key=lambda m: m.holder.id):
            seen.add(member.holder.id)
            up.add_metric([node, member.holder.id, member.holder.addr], int(member.state is State.LIVE))
        for holder, _when in sorted(removed):
            if holder.id not in seen:
                seen.add(holder.id)
                up.add_metric([node, holder.id, holder.addr], 0)
        yield up


def forward_latency(counters: Counters, node: str) -> HistogramMetricFamily:
    """Both modes: each streamer's forward latency, by final status (the links report it)."""
    return histogram_family(
        "logstream_mediator_forward_seconds",
        "time from sending a forward (a batch of lines) to a streamer to its reply, by final status",
        ["node", "streamer", "code"],
        [((node, streamer, code), histogram) for (streamer, code), histogram in counters.forward_latency.snapshot()])


def request_families(counters: Counters, node: str, live_streamers: int) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
    """The counters both modes keep (requests, lines, forwards, failures) and the live streamers."""

    def counter(name: str, text: str, value: float) -> CounterMetricFamily:
        family = CounterMetricFamily(f"logstream_mediator_{name}", text, labels=["node"])
        family.add_metric([node], value)
        return family

    requests = CounterMetricFamily("logstream_mediator_requests", "client requests by RPC", labels=["node", "rpc"])
    for rpc, count in sorted(counters.requests.items()):
        requests.add_metric([node, rpc], count)
    yield requests
    yield counter("lines", "lines acknowledged to clients (written by their owner)", counters.lines)
    yield counter("bytes", "bytes acknowledged to clients", counters.bytes)
    yield counter("forwards", "forwards to streamers (LogStream requests; LogBatch or Log calls to older ones)",
                  counters.forwards)
    yield counter("forward_failures", "forwards that failed (any status)", counters.forward_failures)
    yield counter("retries", "times a request waited for a key's (new) owner", counters.retries)
    yield counter("unavailable", "requests answered UNAVAILABLE", counters.unavailable)
    yield counter("invalid", "requests answered INVALID_ARGUMENT", counters.invalid)
    yield counter("handoffs", "hand-offs of keys to a joining streamer", counters.handoffs)
    yield counter("removals", "streamers removed after a failed ping or forward", counters.removals)
    live = GaugeMetricFamily("logstream_mediator_streamers_live", "live streamers", labels=["node"])
    live.add_metric([node], live_streamers)
    yield live


def ack_latency(counters: Counters, node: str) -> HistogramMetricFamily:
    buckets: list[tuple[str, float]] = []
    cumulative = 0
    for bound, count in zip((*LATENCY_BUCKETS_S, float("inf")), counters.latency_buckets, strict=True):
        cumulative += count
        buckets.append(("+Inf" if bound == float("inf") else repr(bound), cumulative))
    latency = HistogramMetricFamily("logstream_mediator_ack_latency_seconds",
                                    "time from a request's arrival to its acknowledgement", labels=["node"])
    latency.add_metric([node], buckets, counters.latency_sum_s)
    return latency


def register(collector: Collector, registry: CollectorRegistry = REGISTRY) -> Callable[[], None]:
    registry.register(collector)
    return lambda: registry.unregister(collector)

