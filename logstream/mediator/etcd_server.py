"""etcd mode's mediator (-etcd): a stateless router over etcd's view of members and owners, several per port with -reuse-port."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING

import grpc

from logstream._proto import logstream_pb2 as pb
from logstream._proto import logstream_pb2_grpc as pb_grpc
from logstream.config.settings import MediatorSettings
from logstream.coord.etcd import Etcd
from logstream.coord.ownership import ClusterView
from logstream.mediator.config import router_config
from logstream.mediator.etcd_router import EtcdRouter
from logstream.mediator.presence import Presence
from logstream.mediator.service import ClusterStatusServicer, LogStreamerServicer, Validator
from logstream.node import run as node
from logstream.node import tls
from logstream.node.health import NodeHealth
from logstream.node.httpservers import start_http
from logstream.node.net import listen_address
from logstream.node.run import Built
from logstream.node.tasks import TaskSupervisor
from logstream.node.token_file import guard_for

if TYPE_CHECKING:
    from logstream.node.debug import DebugServer

logger = logging.getLogger(__name__)

# No Register in etcd mode (streamers join through etcd): a streamer started with -mediator gets
# UNIMPLEMENTED. The streamer's own services are not the mediator's.
SERVICES = tuple(pb.DESCRIPTOR.services_by_name[name].full_name for name in ("LogStreamer", "ClusterStatus"))


def build_server(router: EtcdRouter, validator: Validator, host: str, port: int,
                 creds: grpc.ServerCredentials | None = None, reuse_port: bool = False) -> Built:
    def add_servicers(server: grpc.aio.Server) -> None:
        pb_grpc.add_LogStreamerServicer_to_server(LogStreamerServicer(router, validator), server)  # type: ignore[no-untyped-call]
        pb_grpc.add_ClusterStatusServicer_to_server(ClusterStatusServicer(router), server)  # type: ignore[no-untyped-call]

    return node.build_server(add_servicers, SERVICES, host, port, creds, reuse_port=reuse_port)


async def run(settings: MediatorSettings, stop: asyncio.Event, on_bound: Callable[[str], None] | None = None) -> None:
    """The whole etcd-mode mediator; returns after a clean shutdown (see server.run for the errors)."""
    from logstream.node import metrics as node_metrics

    assert settings.etcd is not None
    mediator_id = uuid.uuid4().hex[:12]
    guard = guard_for(settings, "mediator")
    creds = tls.node_channel_credentials(settings)
    etcd = Etcd(settings.etcd, creds)
    view = ClusterView(etcd, settings.cluster)
    node_health = NodeHealth(lambda: tasks.problem(), lambda: router.readiness())

    async def report_health(_serving: bool) -> None:
        await node_health.publish()

    tasks = TaskSupervisor(stop, on_health=report_health)
    router = EtcdRouter(router_config(settings), view, tasks, creds, mediator_id, guard.token)
    node_id = [settings.id or mediator_id]
    from logstream.mediator import metrics
    from logstream.mediator.etcd_metrics import EtcdMediatorCollector

    unregister = [metrics.register(EtcdMediatorCollector(router, lambda: node_id[0]))]
    http: list[DebugServer] = []
    built: Built | None = None
    presence: Presence | None = None
    try:
        built = build_server(router, Validator(settings.max_line), settings.host, settings.port,
                             tls.server_credentials(settings), settings.reuse_port)
        node.attach_health(built, node_health)
        unregister.append(node_metrics.register(
            node_metrics.NodeCollector("mediator", lambda: node_id[0], built.rpc_counts, node_health)))
        address = listen_address(settings.host, built.port)
        node_id[0] = settings.id or address
        if on_bound is not None:
            on_bound(node_id[0])
        http = start_http(settings, node_id[0], node_health)  # before "listening on": errors come first
        # The view is kept current for the whole run; the health publisher follows its readiness.
        tasks.keep("etcd-view", view.run)
        tasks.keep("links-prune", router.prune_loop)
        presence = Presence(etcd, settings.cluster, mediator_id, _advertised(settings.host, built.port, settings))
        tasks.keep("etcd-presence", presence.run)
        await built.server.start()
        await node_health.publish()
        tasks.keep("health-publisher", node_health.watch)
        logger.info("listening on %s:%d (mediator id %s, etcd mode: cluster %s, etcd %s%s, tls %s)", settings.host,
                    built.port, mediator_id, settings.cluster, ",".join(settings.etcd),
                    ", port shared (SO_REUSEPORT)" if settings.reuse_port else "", settings.tls_mode)
        await stop.wait()
        logger.info("stopping: refusing new requests, letting in-flight ones finish (grace %ss)", settings.grace)
    finally:
        if built is not None:
            await node.stop_serving(built, settings.grace)
        await router.close()
        await tasks.close()
        if presence is not None:
            await presence.close()
        await etcd.close()
        for server in http:
            server.close()
        for undo in unregister:
            undo()
        if built is not None:
            counters = router.counters
            logger.info("stopped: %d requests, %d lines acknowledged, %d forwards, %d redirects",
                        sum(counters.requests.values()), counters.lines, counters.forwards, router.redirects)
    tasks.check()


def _advertised(host: str, port: int, settings: MediatorSettings) -> str:
    """The address status shows for this mediator: its bind host, or (bound to every address) the
    host clients reach it by when etcd is on loopback, else this host's name."""
    import socket

    bare = host.strip("[]")
    if bare in ("0.0.0.0", "::", ""):
        first = (settings.etcd or [""])[0].rpartition(":")[0].strip("[]")
        bare = "127.0.0.1" if first in ("127.0.0.1", "localhost", "::1") else socket.gethostname()
    return listen_address(bare, port)
