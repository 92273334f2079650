"""Build the streamer's grpc.aio server, run it until told to stop, then shut down in order."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import sys
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import grpc

from logstream.node import run as node
from logstream.node import tls
from logstream.node.health import NodeHealth
from logstream.node.httpservers import start_http
from logstream.node.auth import call_metadata
from logstream.node.token_file import guard_for
from logstream.node.tasks import TaskSupervisor
from logstream.node.run import Built
from logstream._proto import logstream_pb2 as pb
from logstream._proto import logstream_pb2_grpc as pb_grpc
from logstream.config.settings import StreamerSettings
from logstream.config.units import format_size
from logstream.node.address import parse_host_port
from logstream.node.net import listen_address
from logstream.streamer.lease import Lease
from logstream.streamer.control import PingerServicer, StreamerControlServicer
from logstream.streamer.service import LogStreamerServicer, StreamerCore
from logstream.streamer.timings import StreamerTimings
from logstream.streamer.errors import RootUnusable
from logstream.streamer.writer import Writer

if TYPE_CHECKING:
    from logstream.coord.etcd import Etcd
    from logstream.coord.ownership import StreamerSession
    from logstream.node.debug import DebugServer

logger = logging.getLogger(__name__)

SERVICES = tuple(pb.DESCRIPTOR.services_by_name[name].full_name
                 for name in ("LogStreamer", "Pinger", "StreamerControl"))
MAINTENANCE_TICK_S = 1.0


def build_server(core: StreamerCore, host: str, port: int,
                 creds: grpc.ServerCredentials | None = None) -> Built:
    """A server with every streamer service, health and reflection, bound to host:port (0: any)."""

    def add_servicers(server: grpc.aio.Server) -> None:
        pb_grpc.add_LogStreamerServicer_to_server(LogStreamerServicer(core), server)  # type: ignore[no-untyped-call]
        pb_grpc.add_PingerServicer_to_server(PingerServicer(core), server)  # type: ignore[no-untyped-call]
        pb_grpc.add_StreamerControlServicer_to_server(StreamerControlServicer(core), server)  # type: ignore[no-untyped-call]

    return node.build_server(add_servicers, SERVICES, host, port, creds)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def advertised_address(settings: StreamerSettings, port: int) -> str:
    """host:port the mediator reaches this streamer at (see -advertise)."""
    if settings.advertise:
        return settings.advertise
    host = settings.host.strip("[]")
    if host in ("0.0.0.0", "::", ""):
        # Reached over loopback when what it dials (its mediator, its etcd) is on loopback.
        dialed = settings.mediator or (settings.etcd[0] if settings.etcd else "")
        dialed_host = parse_host_port(dialed).host if dialed else ""
        host = "127.0.0.1" if _is_loopback(dialed_host) else socket.gethostname()
    return listen_address(host, port)


def make_writer(settings: StreamerSettings, on_fsync: Callable[[float], None] | None = None) -> Writer:
    echo: Callable[[bytes], object] | None = None
    if settings.console:
        out = sys.stdout.buffer
        broken = False

        def echo(data: bytes) -> None:
            # The lines are on disk already: a closed or broken stdout must not fail the request.
            nonlocal broken
            if broken:
                return
            try:
                out.write(data)
                out.flush()
            except (OSError, ValueError) as exc:
                broken = True
                logger.error("-console: stdout failed (%s); no more echo", exc)

    return Writer(settings.path, limit=settings.size, max_line=settings.max_line,
                  max_open_files=settings.max_open_files, fsync=settings.fsync, keep=settings.keep, echo=echo,
                  on_fsync=on_fsync)


async def _maintain(writer: Writer, idle_close_s: float, fsync_interval_s: float | None,
                    on_root_change: Callable[[], Awaitable[None]]) -> None:
    """Close idle files; with -fsync interval, fsync written files every interval; re-create a
    deleted root, calling `on_root_change` when it becomes unusable or usable again (health)."""
    tick = min(MAINTENANCE_TICK_S, idle_close_s / 4, fsync_interval_s or MAINTENANCE_TICK_S)
    next_sync = time.monotonic() + (fsync_interval_s or 0)
    root_ok = writer.root_ok
    while True:
        await asyncio.sleep(tick)
        try:
            writer.check_root()
        except RootUnusable:
            pass
        if writer.root_ok != root_ok:
            root_ok = writer.root_ok
            await on_root_change()
            if root_ok:
                logger.info("root %s is back: serving again", writer.root)
        closed = writer.close_idle(idle_close_s)
        if closed:
            logger.debug("closed %d idle files", closed)
        if fsync_interval_s is not None and time.monotonic() >= next_sync:
            writer.sync_dirty()
            next_sync = time.monotonic() + fsync_interval_s


def readiness(core: StreamerCore, mediator: str | None, session: StreamerSession | None = None) -> str | None:
    """Why the streamer cannot take writes now (None: it can): shutting down, root unusable, (with
    -mediator) no lease: never granted yet, or lapsed since the mediator stopped pinging, or (with
    -etcd) its etcd lease not proven by an answered keep-alive."""
    if core.closing:
        return "shutting down"
    if not core.writer.root_ok:
        return f"root {core.writer.root} is gone or not writable"
    if session is not None:
        return None if session.provable else "etcd lease not proven: writes are refused until a keep-alive is answered"
    lease = core.lease
    if lease.may_write():
        return None
    if lease.until == float("-inf"):
        return f"no lease yet from the mediator at {mediator}"
    return f"lease from the mediator at {mediator} lapsed {-lease.remaining_s():.1f}s ago"


def _etcd_session(settings: StreamerSettings, writer: Writer, core: StreamerCore, address: str,
                  on_change: Callable[[], object]) -> tuple[Etcd, StreamerSession]:
    """etcd mode: the etcd client and this streamer's session (lease, membership, key claims); the
    write gate goes into `core`. A lapse closes the lapsed keys' files; `on_change` reports health."""
    from logstream.coord.etcd import Etcd
    from logstream.coord.gate import EtcdGate
    from logstream.coord.ownership import StreamerSession

    assert settings.etcd is not None
    etcd = Etcd(settings.etcd, tls.node_channel_credentials(settings))
    cluster = settings.cluster

    def on_lapse(keys: list[str]) -> None:
        closed = writer.release(EtcdGate.files_of(keys, cluster))
        logger.warning("etcd: %d keys lapsed, %d files closed and unlocked", len(keys), closed)

    def on_provable(_provable: bool) -> None:
        on_change()

    session = StreamerSession(etcd, cluster, core.node_id, address, on_lapse=on_lapse,
                              ttl_s=int(settings.etcd_ttl), on_provable=on_provable)
    core.etcd = EtcdGate(session)
    return etcd, session


async def _leave(settings: StreamerSettings, node_id: str, address: str, token: str | None,
                 files_closed: bool) -> None:
    from logstream.streamer.registration import leave

    assert settings.mediator is not None
    await leave(settings.mediator, tls.node_channel_credentials(settings), node_id, address,
                call_metadata(token=token), files_closed)


async def run(settings: StreamerSettings, stop: asyncio.Event,
              on_bound: Callable[[str], None] | None = None) -> None:
    """The whole streamer: writer, server, registration, debug server; returns after a clean shutdown.

    Start-up problems (bad certificate, port in use, debug port in use) raise UserErrors; background
    work that could not be kept running raises tasks.NodeFailed after the shutdown.
    """
    from logstream.node import metrics as node_metrics
    from logstream.streamer import metrics

    timings = StreamerTimings()
    writer = make_writer(settings, on_fsync=timings.observe_fsync)
    lease = Lease(required=settings.mediator is not None)
    clustered = settings.mediator is not None or settings.etcd is not None
    core = StreamerCore(writer, lease, guard=guard_for(settings, "streamer", warn=clustered),
                        mediator_addr=settings.mediator, timings=timings)
    etcd: Etcd | None = None
    session: StreamerSession | None = None
    http: list[DebugServer] = []
    built: Built | None = None
    started = False

    def not_ready() -> str | None:
        """Why this streamer cannot take writes now (None: it can): /readyz, grpc health of api.LogStreamer."""
        return readiness(core, settings.mediator, session)

    # Live: its background tasks run (/healthz, grpc health ""). Ready: see not_ready.
    health = NodeHealth(lambda: tasks.problem(), not_ready)

    async def report_health(_tasks_ok: bool = True) -> None:
        await health.publish()

    # Owns the background tasks; one that cannot be kept running stops the node (exit code 1).
    tasks = TaskSupervisor(stop, on_health=report_health)
    unregister = [metrics.register(metrics.StreamerCollector(writer, lease, lambda: core.node_id, core.timings))]
    try:
        built = build_server(core, settings.host, settings.port, tls.server_credentials(settings))
        node.attach_health(built, health)
        unregister.append(node_metrics.register(
            node_metrics.NodeCollector("streamer", lambda: core.node_id, built.rpc_counts, health)))
        address = advertised_address(settings, built.port)
        core.node_id = settings.id or address
        if on_bound is not None:
            on_bound(core.node_id)
        if settings.etcd is not None:
            etcd, session = _etcd_session(settings, writer, core, address,
                                          lambda: core.closing or tasks.spawn(report_health(), "report-etcd-health"))
        # Before "listening on": a start-up error must come before that line.
        http = start_http(settings, core.node_id, health)
        await built.server.start()
        started = True
        await health.publish()
        tasks.keep("health-publisher", health.watch)
        logger.info("listening on %s:%d (id %s, root %s, size %s, tls %s)", settings.host, built.port,
                    core.node_id, writer.root_real, format_size(settings.size), settings.tls_mode)
        fsync_interval = settings.fsync_interval if settings.fsync == "interval" else None
        tasks.keep("maintenance", lambda: _maintain(writer, settings.idle_close, fsync_interval,
                                                    report_health))
        if session is not None:
            # Critical: a streamer that cannot keep an etcd session writes nothing, so let its
            # process supervisor restart it rather than serve refusals for ever.
            tasks.keep("etcd-session", session.run, critical=True)
            logger.info("etcd mode: cluster %s, etcd %s, lease TTL %ds", settings.cluster,
                        ",".join(settings.etcd or ()), int(settings.etcd_ttl))
        elif settings.mediator is not None:
            from logstream.streamer import legacy
            from logstream.streamer.registration import keep_registered

            mediator = settings.mediator
            metadata = call_metadata(token=core.guard.token)
            creds = tls.node_channel_credentials(settings)

            async def learn_mode(channel: grpc.aio.Channel) -> None:
                legacy.apply(lease, await legacy.probe(channel, metadata), mediator)

            tasks.keep("registration", lambda: keep_registered(mediator, creds, core.node_id, address, lease,
                                                               metadata, learn_mode))
        await stop.wait()
        logger.info("stopping: refusing new requests, letting in-flight ones finish (grace %ss)", settings.grace)
    finally:
        # A streamer stopping on purpose leaves its mediator (LeaveRequest): first, so that nothing
        # more is routed here and the mediator's open forward stream ends (else the server's stop
        # waits the whole grace for it); after its files are closed, so its keys move at once.
        leaving = started and settings.mediator is not None
        if leaving:
            await tasks.close()  # the registration first: it must not register again meanwhile
            await _leave(settings, core.node_id, address, core.guard.token, files_closed=False)
        if built is not None:
            await node.stop_serving(built, settings.grace)
        core.closing = True
        core.cancel_timers()
        core.refusals.flush()
        await tasks.close()
        closed = writer.open_files
        writer.close()
        if session is not None:  # every file is closed: the lease (and every record on it) may go
            await session.close()
        if etcd is not None:
            await etcd.close()
        if leaving:
            await _leave(settings, core.node_id, address, core.guard.token, files_closed=True)
        for server in http:
            server.close()
        for undo in unregister:
            undo()
        if started:
            logger.info("stopped: %d files flushed and closed; %d lines, %d bytes, %d rotations written",
                        closed, writer.stats.lines, writer.stats.bytes, writer.stats.rotations)
    tasks.check()
