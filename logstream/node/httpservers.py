"""Start the HTTP servers a node's settings ask for: -metrics (metrics and probes) and -pprof (all)."""

from __future__ import annotations

import asyncio
from typing import Protocol

from logstream.node.debug import DebugServer, start_debug_server, start_metrics_server
from logstream.node.health import NodeHealth


class HttpSettings(Protocol):
    @property
    def metrics(self) -> str | None: ...
    @property
    def pprof(self) -> bool: ...
    @property
    def phost(self) -> str: ...
    @property
    def pport(self) -> int: ...


def start_http(settings: HttpSettings, node_id: str, health: NodeHealth) -> list[DebugServer]:
    """-metrics ADDR serves /metrics, /healthz and /readyz only (a scraper or a probe gets no
    profiling); -pprof serves those and /debug/stacks and /debug/profile. Either, both, or none."""
    servers: list[DebugServer] = []
    try:
        if settings.metrics is not None:
            servers.append(start_metrics_server(settings.metrics, node_id, health.live, health.ready))
        if settings.pprof:
            servers.append(start_debug_server(settings.phost, settings.pport, node_id, asyncio.get_running_loop(),
                                              health=health.live, ready=health.ready))
    except BaseException:
        for server in servers:
            server.close()
        raise
    return servers
