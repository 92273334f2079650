"""etcd mode's router against in-process streamers that refuse keys they do not own, naming the owner: redirects, their bound, plain refusals."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, cast

import grpc
import pytest
import pytest_asyncio

from logstream._proto import logstream_pb2 as pb
from logstream._proto import logstream_pb2_grpc as pb_grpc
from logstream.coord.etcd import Etcd
from logstream.coord.gate import OWNER_HEADER
from logstream.coord.ownership import ClusterView
from logstream.keys.chunks import Chunk, whole_lines
from logstream.keys.paths import FileKey
from logstream.mediator.config import RouterConfig
from logstream.mediator.etcd_router import MAX_REDIRECTS, EtcdRouter
from logstream.mediator.router import RouteError
from logstream.node.tasks import TaskSupervisor

pytestmark = pytest.mark.asyncio


class Streamer(pb_grpc.LogStreamerServicer):
    """Writes the keys `truth` says it owns; refuses the others with FAILED_PRECONDITION naming the
    owner `truth` gives (or naming none)."""

    def __init__(self, name: str, truth: dict[str, str]) -> None:
        self.name = name
        self.truth = truth
        self.written: list[tuple[str, bytes]] = []

    async def LogBatch(self, request: pb.LogBatchRequest, context: grpc.aio.ServicerContext) -> pb.LogBatchResponse:
        for chunk in request.chunks:
            owner = self.truth.get(chunk.filename, self.name)
            if owner != self.name:
                metadata = ((OWNER_HEADER, owner),) if owner else ()
                await context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"{chunk.filename} is not mine", metadata)
        self.written += [(chunk.filename, chunk.data) for chunk in request.chunks]
        return pb.LogBatchResponse(lines=sum(chunk.data.count(b"\n") for chunk in request.chunks))

    async def LogStream(self, request_iterator: AsyncIterator[pb.LogBatchRequest],
                        context: grpc.aio.ServicerContext) -> AsyncIterator[pb.LogBatchResponse]:
        async for request in request_iterator:
            yield await self.LogBatch(request, context)


class Rig:
    def __init__(self) -> None:
        self.truth: dict[str, str] = {}
        self.streamers: dict[str, Streamer] = {}
        self.servers: list[grpc.aio.Server] = []
        self.view = ClusterView(cast(Etcd, None), "t")  # filled by hand: no etcd in this test
        self.view.loaded = True
        self.tasks = TaskSupervisor()
        self.router = EtcdRouter(RouterConfig(handoff_wait_s=1.0, forward_timeout_s=2.0), self.view, self.tasks)

    async def start(self, *names: str) -> None:
        for name in names:
            server = grpc.aio.server()
            self.streamers[name] = Streamer(name, self.truth)
            pb_grpc.add_LogStreamerServicer_to_server(self.streamers[name], server)  # type: ignore[no-untyped-call]
            port = server.add_insecure_port("127.0.0.1:0")
            await server.start()
            self.servers.append(server)
            self.view.members[name] = f"127.0.0.1:{port}"

    async def close(self) -> None:
        await self.router.close()
        await self.tasks.close()
        for server in self.servers:
            await server.stop(None)


def written(rig: Rig, name: str) -> dict[str, bytes]:
    found: dict[str, bytes] = {}
    for filename, data in rig.streamers[name].written:
        found[filename] = found.get(filename, b"") + data
    return found


def chunk(filename: str, text: str) -> Chunk:
    return whole_lines(FileKey("app", filename), text.encode(), 1024)


@pytest_asyncio.fixture
async def rig() -> AsyncIterator[Rig]:
    made = Rig()
    await made.start("s1", "s2")
    try:
        yield made
    finally:
        await made.close()


async def test_a_stale_view_costs_one_redirect_to_the_owner_the_refusal_names(rig: Rig) -> None:
    rig.view.owners[("app", "k")] = "s1"  # stale: s2 owns k now
    rig.truth["k"] = "s2"
    await rig.router.write([chunk("k", "one\n")])
    assert rig.streamers["s2"].written == [("k", b"one\n")] and not rig.streamers["s1"].written
    assert rig.router.redirects == 1


async def test_one_refused_key_does_not_spoil_the_others_forwarded_with_it(rig: Rig) -> None:
    rig.view.owners[("app", "a")] = rig.view.owners[("app", "b")] = "s1"
    rig.truth.update(a="s1", b="s2")
    await rig.router.write([chunk("a", "x\n"), chunk("b", "y\n"), chunk("a", "z\n")])
    assert written(rig, "s1") == {"a": b"x\nz\n"}  # in order
    assert written(rig, "s2") == {"b": b"y\n"}


async def test_owners_naming_each_other_end_in_unavailable_after_the_bounded_redirects(rig: Rig) -> None:
    rig.view.owners[("app", "k")] = "s1"
    rig.truth["k"] = "?"  # each streamer names the other: never settles
    rig.streamers["s1"].truth = {"k": "s2"}
    rig.streamers["s2"].truth = {"k": "s1"}
    with pytest.raises(RouteError) as refused:
        await asyncio.wait_for(rig.router.write([chunk("k", "one\n")]), timeout=0.9)  # no backoff: well within
    assert refused.value.code == grpc.StatusCode.UNAVAILABLE
    assert rig.router.redirects == MAX_REDIRECTS + 1
    assert not rig.streamers["s1"].written and not rig.streamers["s2"].written


async def test_a_refusal_naming_no_owner_goes_back_to_the_caller(rig: Rig) -> None:
    rig.view.owners[("app", "k")] = "s1"
    rig.truth["k"] = ""
    with pytest.raises(RouteError) as refused:
        await rig.router.write([chunk("k", "one\n")])
    assert refused.value.code == grpc.StatusCode.FAILED_PRECONDITION and rig.router.redirects == 0


async def test_an_unowned_key_goes_where_rendezvous_hashing_places_it_among_members(rig: Rig) -> None:
    from logstream.keys.placement import place

    keys = [f"k{n}" for n in range(12)]
    await rig.router.write([chunk(key, "x\n") for key in keys])
    for key in keys:
        expected = place(FileKey("app", key), rig.view.members)
        assert (key, b"x\n") in rig.streamers[cast(Any, expected)].written


async def test_a_named_owner_missing_from_the_view_is_waited_for_then_unavailable(rig: Rig) -> None:
    rig.view.owners[("app", "k")] = "s1"
    rig.truth["k"] = "s3"  # not a member in this view (yet)
    with pytest.raises(RouteError) as refused:
        await rig.router.write([chunk("k", "one\n")])
    assert refused.value.code == grpc.StatusCode.UNAVAILABLE



async def test_metrics_show_redirects_members_and_owned_keys(rig: Rig) -> None:
    from prometheus_client import CollectorRegistry, generate_latest

    from logstream.mediator.etcd_metrics import EtcdMediatorCollector
    from logstream.mediator.metrics import register

    rig.view.owners[("app", "k")] = "s1"
    rig.truth["k"] = "s2"
    await rig.router.write([chunk("k", "one\n")])
    registry = CollectorRegistry()
    unregister = register(EtcdMediatorCollector(rig.router, lambda: "m1"), registry)
    try:
        text = generate_latest(registry).decode()
    finally:
        unregister()
    assert 'logstream_mediator_redirects_total{node="m1"} 1.0' in text
    assert 'logstream_mediator_keys_owned{node="m1"} 1.0' in text
    assert 'logstream_mediator_lines_total{node="m1"} 0.0' in text  # lines count at the service, not the router
    for name, addr in rig.view.members.items():
        assert f'logstream_mediator_streamer_up{{addr="{addr}",node="m1",streamer="{name}"}} 1.0' in text
    assert 'logstream_mediator_forward_seconds_count{code="FAILED_PRECONDITION",node="m1",streamer="s1"} 1.0' in text
