"""Every RPC is counted once by method and final status code (node/rpcmetrics.py), on a real server:
a return (OK), an abort (its code), an unexpected exception (UNKNOWN), a streaming reply, and an
RPC of the health service the node adds itself."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from logstream.node import run as node
from logstream.node.rpcmetrics import code_name


def test_code_name() -> None:
    assert code_name(None, False, False) == "OK"
    assert code_name(None, False, True) == "UNKNOWN"
    assert code_name(None, True, True) == "CANCELLED"
    assert code_name(grpc.StatusCode.NOT_FOUND, False, False) == "NOT_FOUND"


def _ident(data: bytes) -> bytes:
    return data


def _add(server: grpc.aio.Server) -> None:
    async def ok(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        return request

    async def refuse(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "no")
        raise AssertionError("unreachable")

    async def bug(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        raise RuntimeError("bug")

    async def stream(request: bytes, context: grpc.aio.ServicerContext) -> Any:
        for _ in range(3):
            yield request

    handlers = {
        "Ok": grpc.unary_unary_rpc_method_handler(ok, _ident, _ident),
        "Refuse": grpc.unary_unary_rpc_method_handler(refuse, _ident, _ident),
        "Bug": grpc.unary_unary_rpc_method_handler(bug, _ident, _ident),
        "Stream": grpc.unary_stream_rpc_method_handler(stream, _ident, _ident),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("t.T", handlers),))


@pytest.mark.asyncio
async def test_each_call_is_counted_under_its_final_code() -> None:
    built = node.build_server(_add, (), "127.0.0.1", 0)
    await built.server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{built.port}") as channel:
            def call(name: str) -> Any:
                return channel.unary_unary(f"/t.T/{name}", request_serializer=_ident, response_deserializer=_ident)

            assert await call("Ok")(b"x", timeout=5) == b"x"
            assert await call("Ok")(b"y", timeout=5) == b"y"
            for name, code in (("Refuse", grpc.StatusCode.FAILED_PRECONDITION), ("Bug", grpc.StatusCode.UNKNOWN)):
                with pytest.raises(grpc.aio.AioRpcError) as caught:
                    await call(name)(b"x", timeout=5)
                assert caught.value.code() == code
            replies = [r async for r in channel.unary_stream("/t.T/Stream", request_serializer=_ident,
                                                             response_deserializer=_ident)(b"s", timeout=5)]
            assert replies == [b"s"] * 3
            with pytest.raises(grpc.aio.AioRpcError):
                await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service="nope"),
                                                                timeout=5)
    finally:
        await node.stop_serving(built, 1.0)
    assert built.rpc_counts.snapshot() == {
        ("t.T/Ok", "OK"): 2,
        ("t.T/Refuse", "FAILED_PRECONDITION"): 1,
        ("t.T/Bug", "UNKNOWN"): 1,
        ("t.T/Stream", "OK"): 1,
        ("grpc.health.v1.Health/Check", "NOT_FOUND"): 1,
    }
