"""What both node roles share: a gRPC server with health and reflection, and running until a signal."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from logstream.node import reflection, tls
from logstream.node.health import HealthServicer, NodeHealth
from logstream.node.rpcmetrics import RpcCounts, RpcMetricsInterceptor
from logstream.node.decoding import CheckedServer
from logstream.node.channel import with_options
from logstream.node.net import SERVER_OPTIONS, listen_address

logger = logging.getLogger(__name__)

HEALTH_SERVICE = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name


@dataclass
class Built:
    server: grpc.aio.Server
    port: int
    health: HealthServicer
    services: tuple[str, ...]
    rpc_counts: RpcCounts


def build_server(add_servicers: Callable[[grpc.aio.Server], None], services: Sequence[str], host: str,
                 port: int, creds: grpc.ServerCredentials | None = None, reuse_port: bool = False) -> Built:
    """A grpc.aio server with the role's servicers, grpc health (with List) and reflection (v1 and
    v1alpha), every RPC counted by method and status code (`Built.rpc_counts`), bound to host:port.
    `reuse_port`: SO_REUSEPORT, so that other processes may bind the same port (stateless mediators)."""
    rpc_counts = RpcCounts()
    options = with_options(SERVER_OPTIONS, so_reuseport=1) if reuse_port else SERVER_OPTIONS
    server = grpc.aio.server(options=options, interceptors=[RpcMetricsInterceptor(rpc_counts)])
    # Undecodable bodies get INVALID_ARGUMENT and a rate-limited line (decoding.py).
    checked = CheckedServer(server)
    add_servicers(checked)
    health = HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, checked)
    reflection.enable(server, (*services, HEALTH_SERVICE))
    bound = tls.add_port(server, listen_address(host, port), creds)
    return Built(server, bound, health, tuple(services), rpc_counts)


def attach_health(built: Built, health: NodeHealth) -> None:
    """Let `health` publish liveness and readiness to the server's health service."""
    health.attach(built.health, built.services)


async def set_serving(built: Built, serving: bool = True) -> None:
    """Every service SERVING or NOT_SERVING alike (tests; nodes publish through NodeHealth)."""
    status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
    for name in ("", *built.services):
        await built.health.set(name, status)


async def stop_serving(built: Built, grace_s: float) -> None:
    """Tell health checkers first, then refuse new RPCs and let in-flight ones finish."""
    await built.health.enter_graceful_shutdown()
    # Calls still open when the grace ends are cancelled, and grpc warns about each ("Aborting
    # method ... due to server stop"): a stop we asked for is not worth a warning; its errors stay.
    logging.getLogger("grpc._cython.cygrpc").setLevel(logging.ERROR)
    await built.server.stop(grace_s)


# serve(stop): runs the node until `stop` is set, then returns after its ordered shutdown.
Serve = Callable[[asyncio.Event], Awaitable[None]]


def run_until_signalled(serve: Serve, loop: str = "uvloop") -> int:
    """Run `serve` on an event loop (uvloop when asked and installed) until SIGTERM or SIGINT.

    The handlers only set the stop event (uvicorn's should_exit); `serve` does the ordered shutdown.
    The exit code: 0, or 1 when the node's background work could not be kept running
    (`tasks.NodeFailed`), so that a process supervisor restarts it.
    """
    from logstream.node.tasks import NodeFailed

    try:
        _run(serve, loop)
    except NodeFailed as exc:
        logger.error("exiting with code 1: %s", exc)
        return 1
    return 0


def _run(serve: Serve, loop: str) -> None:

    async def main() -> None:
        stop = asyncio.Event()
        running = asyncio.get_running_loop()
        received: list[str] = []

        def on_signal(sig: signal.Signals) -> None:
            received.append(sig.name)
            stop.set()

        for sig in (signal.SIGTERM, signal.SIGINT):
            running.add_signal_handler(sig, on_signal, sig)
        from logstream.node.parent import die_with_parent_if_asked

        die_with_parent_if_asked()  # under `logstream run`: SIGTERM when supervisord dies
        try:
            await serve(stop)
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                running.remove_signal_handler(sig)
        if received:
            logger.info("exiting after %s", received[0])

    if loop == "uvloop":
        try:
            import uvloop
        except ImportError:  # optional: the default loop works, a little slower
            pass
        else:
            uvloop.run(main())
            return
    asyncio.run(main())
