"""Build the mediator's grpc.aio server, run it until told to stop, then shut down in order."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING

import grpc

from logstream.node import run as node
from logstream.node import tls
from logstream.node.health import NodeHealth, OnPurpose
from logstream.node.httpservers import start_http
from logstream.node.tasks import Kept, TaskSupervisor
from logstream.node.run import Built
from logstream._proto import logstream_pb2 as pb
from logstream._proto import logstream_pb2_grpc as pb_grpc
from logstream.config.settings import MediatorSettings
from logstream.config.timings import expiry_bound_s
from logstream.node.net import listen_address
from logstream.node.auth import Guard
from logstream.node.token_file import guard_for
from logstream.mediator.health import health_loop
from logstream.mediator.ledger import LeaseFileError, LeaseLedger
from logstream.mediator.membership import Holder
from logstream.mediator.config import restart_grace_s, router_config
from logstream.mediator.router import Router
from logstream.mediator.service import ClusterStatusServicer, LogStreamerServicer, RegisterServicer, Validator

if TYPE_CHECKING:
    from logstream.node.debug import DebugServer

logger = logging.getLogger(__name__)

SERVICES = tuple(pb.DESCRIPTOR.services_by_name[name].full_name
                 for name in ("LogStreamer", "Register", "ClusterStatus"))


def open_ledger(settings: MediatorSettings) -> LeaseLedger | None:
    if settings.lease_file is None:
        return None
    assert settings.ping_timeout is not None and settings.lease is not None
    try:
        return LeaseLedger(settings.lease_file, expiry_bound_s(settings.ping_timeout, settings.lease))
    except OSError as exc:
        raise LeaseFileError(f"-lease-file {settings.lease_file}: {exc.strerror or exc}") from None


def readiness(router: Router) -> str | None:
    """Why the mediator cannot take writes now (None: it can): shutting down, or no live streamer."""
    if router.closing:
        return "shutting down"
    if not router.state.live():
        registered = len(router.state.members())
        if not registered and router.departed:
            return OnPurpose(f"no live streamer: {', '.join(sorted(router.departed))} left (a clean stop)")
        return f"no live streamer ({registered} registered, none answering pings with a lease)"
    return None


def build_server(router: Router, validator: Validator, host: str, port: int,
                 creds: grpc.ServerCredentials | None = None, guard: Guard = Guard()) -> Built:
    """A server with the mediator's services, health and reflection, bound to host:port (0: any)."""

    def add_servicers(server: grpc.aio.Server) -> None:
        pb_grpc.add_LogStreamerServicer_to_server(LogStreamerServicer(router, validator), server)  # type: ignore[no-untyped-call]
        pb_grpc.add_RegisterServicer_to_server(RegisterServicer(router, guard), server)  # type: ignore[no-untyped-call]
        pb_grpc.add_ClusterStatusServicer_to_server(ClusterStatusServicer(router), server)  # type: ignore[no-untyped-call]

    return node.build_server(add_servicers, SERVICES, host, port, creds)


async def run(settings: MediatorSettings, stop: asyncio.Event,
              on_bound: Callable[[str], None] | None = None) -> None:
    """The whole mediator; returns after a clean shutdown. Start-up problems raise UserErrors;
    background work that could not be kept running raises tasks.NodeFailed after the shutdown."""
    from logstream.mediator import metrics
    from logstream.node import metrics as node_metrics

    mediator_id = uuid.uuid4().hex[:12]
    ledger = open_ledger(settings)
    config = router_config(settings, ledger)
    if ledger is not None:
        logger.info("lease ledger %s: placing keys after %.1fs", ledger.path, config.restart_grace_s or 0.0)
    guard = guard_for(settings, "mediator")
    built: Built | None = None
    # Live: its background tasks run (/healthz, grpc health ""). Ready: a streamer is live.
    node_health = NodeHealth(lambda: tasks.problem(), lambda: readiness(router))

    async def report_health(_serving: bool) -> None:
        await node_health.publish()

    # Owns every background task; one that cannot be kept running stops the node (exit code 1).
    tasks = TaskSupervisor(stop, on_health=report_health)
    router = Router(config, tls.node_channel_credentials(settings), mediator_id, ledger=ledger, tasks=tasks,
                    token=guard.token)
    node_id = [settings.id or mediator_id]
    unregister = [metrics.register(metrics.MediatorCollector(router, lambda: node_id[0]))]
    http: list[DebugServer] = []
    health: Kept | None = None
    health_stop = asyncio.Event()  # never set: the loop is stopped by its owner
    try:
        built = build_server(router, Validator(settings.max_line), settings.host, settings.port,
                             tls.server_credentials(settings), guard)
        node.attach_health(built, node_health)
        unregister.append(node_metrics.register(
            node_metrics.NodeCollector("mediator", lambda: node_id[0], built.rpc_counts, node_health)))
        node_id[0] = settings.id or listen_address(settings.host, built.port)
        if on_bound is not None:
            on_bound(node_id[0])
        # Before "listening on": a start-up error must come before that line.
        http = start_http(settings, node_id[0], node_health)
        await built.server.start()
        await node_health.publish()
        tasks.keep("health-publisher", node_health.watch)
        logger.info("listening on %s:%d (mediator id %s, health interval %ss, lease %ss, ping timeout %ss, "
                    "tls %s)", settings.host, built.port, mediator_id, settings.health_interval, settings.lease,
                    settings.ping_timeout, settings.tls_mode)
        if ledger is not None and ledger.previous_holders:
            # Ping the previous run's streamers now rather than wait for them to register again:
            # they answer with the keys they held, which stay with them (no start-up grace for those).
            logger.info("pinging %d streamers known from the lease ledger", len(ledger.previous_holders))
            for streamer_id, addr in ledger.previous_holders:
                router.register(streamer_id, addr)
            # Once each has said how long its previous lease still runs, the grace may end sooner.
            router.state.expect(Holder(streamer_id, addr) for streamer_id, addr in ledger.previous_holders)
        # The health loop outlives the server's grace: in-flight requests need their owners' leases.
        health = tasks.keep("health-loop", lambda: health_loop(router, settings.health_interval, health_stop))
        await stop.wait()
        logger.info("stopping: refusing new requests, letting in-flight ones finish (grace %ss)", settings.grace)
    finally:
        if built is not None:
            await node.stop_serving(built, settings.grace)
        if health is not None:
            await health.stop()
        await router.close()
        await tasks.close()
        for server in http:
            server.close()
        for undo in unregister:
            undo()
        if built is not None:
            counters = router.counters
            logger.info("stopped: %d requests, %d lines acknowledged, %d forwards",
                        sum(counters.requests.values()), counters.lines, counters.forwards)
    tasks.check()
