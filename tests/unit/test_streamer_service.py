"""The streamer's servicers over a real in-process grpc.aio server on 127.0.0.1:0: writes, status codes,
Ping's Go-style wrap, the lease (no lease: UNAVAILABLE; lapse and mediator change release files),
Release and Stats, health and reflection."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
import pytest_asyncio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from logstream._proto import logstream_pb2 as pb
from logstream._proto import logstream_pb2_grpc as pb_grpc
from logstream.streamer.lease import Lease
from logstream.node import set_serving
from logstream.streamer.server import build_server
from logstream.streamer.service import StreamerCore, wrap_int32
from logstream.streamer.writer import Writer


class Running:
    def __init__(self, core: StreamerCore, channel: grpc.aio.Channel) -> None:
        self.core = core
        self.channel = channel
        self.log = pb_grpc.LogStreamerStub(channel)
        self.ping = pb_grpc.PingerStub(channel)
        self.control = pb_grpc.StreamerControlStub(channel)


async def _start(tmp_path: Path, required: bool = False, **writer_args: object) -> tuple[Running, grpc.aio.Server]:
    writer = Writer(tmp_path / "root", **writer_args)  # type: ignore[arg-type]
    core = StreamerCore(writer, Lease(required=required), node_id="s1")
    built = build_server(core, "127.0.0.1", 0)
    await built.server.start()
    await set_serving(built)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{built.port}")
    return Running(core, channel), built.server


@pytest_asyncio.fixture
async def streamer(tmp_path: Path) -> AsyncIterator[Running]:
    running, server = await _start(tmp_path, limit=1000)
    yield running
    await running.channel.close()
    await server.stop(None)
    running.core.writer.close()


@pytest_asyncio.fixture
async def leased(tmp_path: Path) -> AsyncIterator[Running]:
    running, server = await _start(tmp_path, required=True)
    yield running
    running.core.cancel_timers()
    await running.channel.close()
    await server.stop(None)
    running.core.writer.close()


@pytest.mark.asyncio
async def test_log_writes_before_it_answers(streamer: Running, tmp_path: Path) -> None:
    reply = await streamer.log.Log(pb.LogRequest(path="a/b", filename="app", line="hello"))
    assert reply.res == "Success"
    assert (tmp_path / "root/a/b/app.log").read_bytes() == b"hello\n"
    await streamer.log.Log(pb.LogRequest(path="a/b", filename="app", line=""))
    assert (tmp_path / "root/a/b/app.log").read_bytes() == b"hello\n\n"


@pytest.mark.asyncio
async def test_batch_and_stream_write_every_chunk(streamer: Running, tmp_path: Path) -> None:
    batch = pb.LogBatchRequest(chunks=[pb.LogChunk(path="p", filename="one", data=b"1\n2\n"),
                                       pb.LogChunk(path="p", filename="two", data=b"3")])
    reply = await streamer.log.LogBatch(batch)
    assert (reply.lines, reply.bytes) == (3, 6)
    call = streamer.log.LogStream()
    for _ in range(3):
        await call.write(batch)
        assert (await call.read()).lines == 3
    await call.done_writing()
    assert (tmp_path / "root/p/one.log").read_bytes() == b"1\n2\n" * 4
    assert (tmp_path / "root/p/two.log").read_bytes() == b"3\n" * 4


@pytest.mark.parametrize(("path", "filename", "line", "needle"), [
    ("/abs", "f", "x", "absolute"), ("a/../..", "f", "x", ".."), ("a", "", "x", "empty"),
    ("a", "b/c", "x", "'/'"), ("a\x00", "f", "x", "NUL"), ("a", "f", "y" * 2000, "longer than the maximum"),
])
@pytest.mark.asyncio
async def test_bad_input_is_invalid_argument_and_nothing_is_written(
        tmp_path: Path, path: str, filename: str, line: str, needle: str) -> None:
    running, server = await _start(tmp_path, max_line=1000)
    try:
        batch = pb.LogBatchRequest(chunks=[pb.LogChunk(path="ok", filename="ok", data=b"fine\n"),
                                           pb.LogChunk(path=path, filename=filename, data=line.encode())])
        for call in (running.log.Log(pb.LogRequest(path=path, filename=filename, line=line)),
                     running.log.LogBatch(batch)):
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await call
            assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert needle in (caught.value.details() or "")
        assert not (tmp_path / "root/ok/ok.log").exists()
        await running.log.Log(pb.LogRequest(path="ok", filename="after", line="still serving"))
    finally:
        await running.channel.close()
        await server.stop(None)
        running.core.writer.close()


@pytest.mark.asyncio
@pytest.mark.parametrize(("a", "b"), [(2**30, 4), (-(2**31), -1), (46341, 46341), (7, -6), (2**31 - 1, 2**31 - 1)])
async def test_ping_wraps_like_go_int32(streamer: Running, a: int, b: int) -> None:
    reply = await streamer.ping.Ping(pb.PingRequest(a=a, b=b))
    assert reply.res == wrap_int32(a * b)
    assert reply.streamer_id == "s1"


def test_wrap_int32_examples() -> None:
    assert wrap_int32(2**30 * 4) == 0
    assert wrap_int32(-(2**31) * -1) == -(2**31)
    assert wrap_int32(46341 * 46341) == -2147479015


@pytest.mark.asyncio
async def test_stats_and_release(streamer: Running) -> None:
    await streamer.log.Log(pb.LogRequest(path="k", filename="f", line="x"))
    stats = await streamer.control.Stats(pb.StatsRequest())
    assert (stats.lines, stats.open_files, [(k.path, k.filename) for k in stats.files]) == (1, 1, [("k", "f")])
    released = await streamer.control.Release(pb.ReleaseRequest(keys=[pb.FileKey(path="k", filename="f")]))
    assert released.released == 1
    assert (await streamer.control.Stats(pb.StatsRequest())).open_files == 0


@pytest.mark.asyncio
async def test_without_a_lease_writes_are_unavailable(leased: Running, tmp_path: Path) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await leased.log.Log(pb.LogRequest(filename="f", line="x"))
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE and "lease" in (caught.value.details() or "")
    await leased.ping.Ping(pb.PingRequest(a=1, b=1))  # a compat ping grants nothing
    with pytest.raises(grpc.aio.AioRpcError):
        await leased.log.Log(pb.LogRequest(filename="f", line="x"))
    await leased.ping.Ping(pb.PingRequest(a=1, b=1, lease_ms=300, mediator_id="m1", interval_ms=100, seq=1))
    with pytest.raises(grpc.aio.AioRpcError):  # a numbered ping grants nothing until it is acked
        await leased.log.Log(pb.LogRequest(filename="f", line="x"))
    await leased.ping.Ping(pb.PingRequest(a=1, b=1, lease_ms=300, mediator_id="m1", seq=2, acked_seq=1))
    await leased.log.Log(pb.LogRequest(filename="f", line="x"))
    assert leased.core.writer.open_files == 1
    await asyncio.sleep(0.45)  # the lease lapses: files are closed and writes refused
    assert leased.core.writer.open_files == 0
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await leased.log.Log(pb.LogRequest(filename="f", line="y"))
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert (tmp_path / "root/f.log").read_bytes() == b"x\n"


@pytest.mark.asyncio
async def test_a_new_mediator_incarnation_releases_every_key(leased: Running) -> None:
    await leased.ping.Ping(pb.PingRequest(lease_ms=5000, mediator_id="m1", seq=1))
    await leased.ping.Ping(pb.PingRequest(lease_ms=5000, mediator_id="m1", seq=2, acked_seq=1))
    await leased.log.Log(pb.LogRequest(filename="f", line="x"))
    assert leased.core.writer.open_files == 1
    await leased.ping.Ping(pb.PingRequest(lease_ms=5000, mediator_id="m1", seq=3, acked_seq=2))
    assert leased.core.writer.open_files == 1
    await leased.ping.Ping(pb.PingRequest(lease_ms=5000, mediator_id="m2", seq=1))
    assert leased.core.writer.open_files == 0


@pytest.mark.asyncio
async def test_a_new_mediator_learns_the_keys_held_under_the_previous_one_until_it_grants_a_lease(
        leased: Running) -> None:
    await leased.ping.Ping(pb.PingRequest(lease_ms=5000, mediator_id="m1", seq=1))
    first = await leased.ping.Ping(pb.PingRequest(lease_ms=5000, mediator_id="m1", seq=2, acked_seq=1))
    assert list(first.held) == []  # no mediator change: nothing to report
    await leased.log.Log(pb.LogRequest(path="a", filename="f", line="x"))
    switched = await leased.ping.Ping(pb.PingRequest(lease_ms=5000, mediator_id="m2", seq=1))
    assert [(k.path, k.filename) for k in switched.held] == [("a", "f")]
    assert 4000 < switched.held_lease_ms <= 5000
    again = await leased.ping.Ping(pb.PingRequest(lease_ms=5000, mediator_id="m2", seq=2))  # not acked yet
    assert [(k.path, k.filename) for k in again.held] == [("a", "f")]
    granted = await leased.ping.Ping(pb.PingRequest(lease_ms=5000, mediator_id="m2", seq=3, acked_seq=2))
    assert list(granted.held) == []
    assert 0 < granted.held_lease_ms <= switched.held_lease_ms  # m1's lease still runs: still said


def test_the_lease_is_never_shortened() -> None:
    now = [100.0]
    lease = Lease(required=True, clock=lambda: now[0])
    assert not lease.may_write()
    lease.on_ping(10_000, "m", 1000, seq=1)
    lease.on_ping(10_000, "m", 1000, seq=2, acked_seq=1)
    lease.on_ping(1_000, "m", 1000, seq=3, acked_seq=2)
    now[0] = 105.0
    assert lease.may_write()
    now[0] = 110.0
    assert not lease.may_write()
    assert lease.reregister_after_s() == 1.2 and lease.should_reregister()
    assert lease.register_backoff_cap_s(5.0) == 0.5  # the mediator was seen lately: retry quickly
    now[0] = 200.0
    assert lease.register_backoff_cap_s(5.0) == 5.0


@pytest.mark.asyncio
async def test_health_and_reflection(streamer: Running) -> None:
    health = health_pb2_grpc.HealthStub(streamer.channel)
    for service in ("", "api.LogStreamer", "api.Pinger", "api.StreamerControl"):
        reply = await health.Check(health_pb2.HealthCheckRequest(service=service))
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
    stub = reflection_pb2_grpc.ServerReflectionStub(streamer.channel)
    call = stub.ServerReflectionInfo()
    await call.write(reflection_pb2.ServerReflectionRequest(list_services=""))
    names = {s.name for s in (await call.read()).list_services_response.service}
    await call.done_writing()
    assert {"api.LogStreamer", "api.Pinger", "api.StreamerControl", "grpc.health.v1.Health"} <= names


@pytest.mark.asyncio
async def test_large_batches_are_written_whole_and_in_order(streamer: Running, tmp_path: Path) -> None:
    """The fast path (no per-line scan when a chunk is shorter than -max-line) still writes every line."""
    data = b"".join(f"{i:099d}\n".encode() for i in range(10_000))
    request = pb.LogBatchRequest(chunks=[pb.LogChunk(path="fast", filename="f", data=data)])
    for _ in range(10):
        assert (await streamer.log.LogBatch(request)).lines == 10_000
    folder = tmp_path / "root" / "fast"
    rotated = sorted(p.name for p in folder.iterdir() if p.name != "f.log")
    stored = b"".join((folder / name).read_bytes() for name in [*rotated, "f.log"])
    assert stored == data * 10


def test_a_ping_handled_after_its_deadline_grants_no_lease(tmp_path: Path) -> None:
    core = StreamerCore(Writer(tmp_path), Lease(required=True))
    core.on_ping(pb.PingRequest(lease_ms=5000, mediator_id="m", seq=1), in_time=False)
    core.on_ping(pb.PingRequest(lease_ms=5000, mediator_id="m", seq=2, acked_seq=1))
    assert not core.lease.may_write()
    core.writer.close()


def test_a_late_ping_cannot_stretch_the_lease_past_the_acked_receipt() -> None:
    """Ping 2 is answered in time (acked); ping 3 is held up by a partition and arrives long after
    the mediator gave up on it. It carries acked_seq=2, so the lease still ends at receipt(2) + lease,
    the bound the mediator counts on, not at the late receipt + lease."""
    now = [0.0]
    lease = Lease(required=True, clock=lambda: now[0])
    lease.on_ping(1_000, "m", 500, seq=1)
    now[0] = 0.1
    lease.on_ping(1_000, "m", 500, seq=2, acked_seq=1)  # lease until 0.0 + 1.0
    now[0] = 0.5
    lease.on_ping(1_000, "m", 500, seq=3, acked_seq=2)  # lease until 0.1 + 1.0
    assert lease.until == pytest.approx(1.1)
    now[0] = 5.0  # a late ping 4 (acking 3) arrives after the partition heals
    lease.on_ping(1_000, "m", 500, seq=4, acked_seq=3)
    assert lease.until == pytest.approx(1.5)  # receipt(3) + lease: already in the past
    assert not lease.may_write()


@pytest.mark.asyncio
async def test_a_bad_chunk_ends_a_stream_with_invalid_argument(streamer: Running, tmp_path: Path) -> None:
    call = streamer.log.LogStream()
    await call.write(pb.LogBatchRequest(chunks=[pb.LogChunk(filename="s", data=b"good\n")]))
    assert (await call.read()).lines == 1
    await call.write(pb.LogBatchRequest(chunks=[pb.LogChunk(path="../x", filename="s", data=b"bad\n")]))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call.read()
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (tmp_path / "root/s.log").read_bytes() == b"good\n"
