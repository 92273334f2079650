"""What both roles share: a health Watch stream ends when graceful shutdown begins, so watchers (a
streamer watching its mediator) learn at once that the node is going and do not hold its grace."""

from __future__ import annotations

import asyncio
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from logstream.node import run as node


@pytest.mark.asyncio
async def test_watch_streams_end_when_graceful_shutdown_begins() -> None:
    built = node.build_server(lambda server: None, (), "127.0.0.1", 0)
    await built.server.start()
    await node.set_serving(built)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{built.port}") as channel:
        call = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=""))
        assert (await call.read()).status == health_pb2.HealthCheckResponse.SERVING
        await node.set_serving(built, False)  # background work down: still watching
        assert (await call.read()).status == health_pb2.HealthCheckResponse.NOT_SERVING
        started = time.monotonic()
        stopping = asyncio.create_task(node.stop_serving(built, grace_s=10.0))
        while (reply := await call.read()) is not grpc.aio.EOF:  # ends instead of holding the 10s grace
            assert reply.status == health_pb2.HealthCheckResponse.NOT_SERVING
        await stopping
        assert time.monotonic() - started < 5.0
