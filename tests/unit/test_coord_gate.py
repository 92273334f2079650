"""etcd mode's forward ends (logstream/coord/gate.py): a refusal names the owner in trailing
metadata that a mediator reads back over real gRPC; the mediator's choice of streamer."""

from __future__ import annotations

import grpc
import pytest

from logstream._proto import logstream_pb2 as pb
from logstream._proto import logstream_pb2_grpc as pb_grpc
from logstream.coord.gate import NotOwnerHere, choose, owner_named
from logstream.keys.paths import FileKey
from logstream.mediator.placement import place


class Refusing(pb_grpc.LogStreamerServicer):
    def __init__(self, refusal: NotOwnerHere) -> None:
        self.refusal = refusal

    async def Log(self, request: pb.LogRequest, context: grpc.aio.ServicerContext) -> pb.LogResponse:
        await context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(self.refusal),
                            trailing_metadata=self.refusal.trailing_metadata())
        raise AssertionError("unreachable")


@pytest.mark.asyncio
@pytest.mark.parametrize("owner", ["s2", ""])
async def test_a_refusal_names_the_owner_for_the_mediator_to_retry_there(owner: str) -> None:
    server = grpc.aio.server()
    pb_grpc.add_LogStreamerServicer_to_server(Refusing(NotOwnerHere(("app", "f"), owner, "not mine")), server)  # type: ignore[no-untyped-call]
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await pb_grpc.LogStreamerStub(channel).Log(pb.LogRequest(path="app", filename="f", line="x"))  # type: ignore[no-untyped-call]
        assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert owner_named(caught.value) == (owner or None)
    finally:
        await server.stop(None)


def test_a_mediator_sends_a_key_to_its_owner_else_to_the_rendezvous_member() -> None:
    key = FileKey("app", "f")
    assert choose(key, {("app", "f"): "s9"}, ["s1", "s2"]) == "s9"
    assert choose(key, {}, ["s1", "s2", "s3"]) == place(key, ["s1", "s2", "s3"])
    assert choose(key, {}, []) is None
