"""The streamer's servicers over a real in-process grpc.aio server on 127.0.0.1:0: writes, status codes,
Ping's Go-style wrap, the lease (no lease: UNAVAILABLE; lapse and mediator change release files),
Release and Stats, health and reflection; writes only from the current mediator, control only from
cluster nodes, legacy mode, undecodable bodies."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import time
from collections.abc import Sequence
from collections.abc import AsyncIterator
from pathlib import Path
from typing import cast

import grpc
import pytest
import pytest_asyncio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from logstream._proto import logstream_pb2 as pb
from logstream._proto import logstream_pb2_grpc as pb_grpc
from logstream.node.auth import LINK_HEADER, Guard, call_metadata
from logstream.streamer.lease import Lease
from logstream.node.run import set_serving
from logstream.streamer.server import build_server
from logstream.node.wire import wrap_int32
from logstream.streamer.service import LogStreamerServicer, StreamerCore
from logstream.keys.chunks import Chunk
from logstream.streamer.writer import Writer


FROM_M1 = call_metadata("m1")  # what mediator m1 attaches to its forwards


class Running:
    def __init__(self, core: StreamerCore, channel: grpc.aio.Channel) -> None:
        self.core = core
        self.channel = channel
        self.log = pb_grpc.LogStreamerStub(channel)
        self.ping = pb_grpc.PingerStub(channel)
        self.control = pb_grpc.StreamerControlStub(channel)


@contextlib.asynccontextmanager
async def _started(tmp_path: Path, required: bool = False, writer_class: type[Writer] = Writer,
                   **writer_args: object) -> AsyncIterator[Running]:
    """A streamer servicer on a real server at 127.0.0.1:0, and a channel to it; all closed after."""
    writer = writer_class(tmp_path / "root", **writer_args)  # type: ignore[arg-type]
    core = StreamerCore(writer, Lease(required=required), node_id="s1")
    built = build_server(core, "127.0.0.1", 0)
    await built.server.start()
    await set_serving(built)
    running = Running(core, grpc.aio.insecure_channel(f"127.0.0.1:{built.port}"))
    try:
        yield running
    finally:
        core.cancel_timers()
        await running.channel.close()
        await built.server.stop(None)
        writer.close()


@pytest_asyncio.fixture
async def streamer(tmp_path: Path) -> AsyncIterator[Running]:
    async with _started(tmp_path, limit=1000) as running:
        yield running


@pytest_asyncio.fixture
async def leased(tmp_path: Path) -> AsyncIterator[Running]:
    async with _started(tmp_path, required=True) as running:
        yield running
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
    async with _started(tmp_path, max_line=1000) as running:
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
        await leased.log.Log(pb.LogRequest(filename="f", line="x"), metadata=FROM_M1)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE and "lease" in (caught.value.details() or "")
    await leased.ping.Ping(pb.PingRequest(a=1, b=1))  # a compat ping grants nothing
    with pytest.raises(grpc.aio.AioRpcError):
        await leased.log.Log(pb.LogRequest(filename="f", line="x"), metadata=FROM_M1)
    await leased.ping.Ping(pb.PingRequest(a=1, b=1, lease_ms=300, mediator_id="m1", interval_ms=100, seq=1))
    with pytest.raises(grpc.aio.AioRpcError):  # a numbered ping grants nothing until it is acked
        await leased.log.Log(pb.LogRequest(filename="f", line="x"), metadata=FROM_M1)
    await leased.ping.Ping(pb.PingRequest(a=1, b=1, lease_ms=300, mediator_id="m1", seq=2, acked_seq=1))
    await leased.log.Log(pb.LogRequest(filename="f", line="x"), metadata=FROM_M1)
    assert leased.core.writer.open_files == 1
    await asyncio.sleep(0.45)  # the lease lapses: files are closed and writes refused
    assert leased.core.writer.open_files == 0
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await leased.log.Log(pb.LogRequest(filename="f", line="y"), metadata=FROM_M1)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert (tmp_path / "root/f.log").read_bytes() == b"x\n"


@pytest.mark.asyncio
async def test_a_new_mediator_incarnation_releases_every_key(leased: Running) -> None:
    await leased.ping.Ping(pb.PingRequest(lease_ms=5000, mediator_id="m1", seq=1))
    await leased.ping.Ping(pb.PingRequest(lease_ms=5000, mediator_id="m1", seq=2, acked_seq=1))
    await leased.log.Log(pb.LogRequest(filename="f", line="x"), metadata=FROM_M1)
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
    await leased.log.Log(pb.LogRequest(path="a", filename="f", line="x"), metadata=FROM_M1)
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


async def _lease_from(running: Running, mediator_id: str, metadata: tuple[tuple[str, str], ...] = ()) -> None:
    await running.ping.Ping(pb.PingRequest(lease_ms=60_000, mediator_id=mediator_id, seq=1), metadata=metadata)
    await running.ping.Ping(pb.PingRequest(lease_ms=60_000, mediator_id=mediator_id, seq=2, acked_seq=1),
                            metadata=metadata)


async def _code(call: object) -> grpc.StatusCode:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call  # type: ignore[misc]
    return caught.value.code()


def test_links_only_grow_within_one_mediator() -> None:
    lease = Lease(required=True)
    lease.on_ping(1000, "m1", 1000, seq=1, link=2)
    lease.on_ping(1000, "m1", 1000, seq=2, link=1)  # a late ping of an earlier link
    lease.on_ping(1000, "m1", 1000, seq=3, link=3, in_time=False)  # handled after its deadline
    assert lease.link == 2
    lease.on_ping(1000, "m2", 1000, seq=1, link=1)  # another mediator: its own numbering
    assert lease.link == 1


@pytest.mark.asyncio
async def test_a_forward_held_up_from_an_earlier_link_is_refused_once_the_streamer_registered_again(
        tmp_path: Path) -> None:
    async with _started(tmp_path, required=True) as running:
        link1 = (*call_metadata("m1"), (LINK_HEADER, "1"))
        link2 = (*call_metadata("m1"), (LINK_HEADER, "2"))
        await _lease_from(running, "m1", link1)
        await running.log.Log(pb.LogRequest(filename="f", line="first"), metadata=link1)
        # The mediator lost the streamer and it registered again: a new link, leased anew.
        await running.ping.Ping(pb.PingRequest(lease_ms=60_000, mediator_id="m1", seq=3), metadata=link2)
        await running.ping.Ping(pb.PingRequest(lease_ms=60_000, mediator_id="m1", seq=4, acked_seq=3),
                                metadata=link2)
        late = running.log.Log(pb.LogRequest(filename="f", line="late"), metadata=link1)
        assert await _code(late) == grpc.StatusCode.FAILED_PRECONDITION
        await running.log.Log(pb.LogRequest(filename="f", line="second"), metadata=link2)
        assert (tmp_path / "root/f.log").read_bytes() == b"first\nsecond\n"


@pytest.mark.asyncio
async def test_a_clustered_streamer_refuses_writes_its_mediator_did_not_forward(tmp_path: Path) -> None:
    async with _started(tmp_path, required=True) as running:
        running.core.mediator_addr = "10.0.0.1:8000"
        await _lease_from(running, "m1")
        batch = pb.LogBatchRequest(chunks=[pb.LogChunk(filename="f", data=b"direct\n")])
        for metadata in ((), call_metadata("m2")):
            for call in (running.log.Log(pb.LogRequest(filename="f", line="direct"), metadata=metadata),
                         running.log.LogBatch(batch, metadata=metadata)):
                with pytest.raises(grpc.aio.AioRpcError) as caught:
                    await call
                assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
                assert "10.0.0.1:8000" in (caught.value.details() or "")
            stream = running.log.LogStream(metadata=metadata)
            await stream.write(batch)
            assert await _code(stream.read()) == grpc.StatusCode.FAILED_PRECONDITION
        assert not (tmp_path / "root/f.log").exists()
        await running.log.Log(pb.LogRequest(filename="f", line="forwarded"), metadata=FROM_M1)
        assert (tmp_path / "root/f.log").read_bytes() == b"forwarded\n"


@pytest.mark.asyncio
async def test_with_a_token_forged_pings_and_releases_change_nothing(tmp_path: Path) -> None:
    async with _started(tmp_path, required=True) as running:
        running.core.guard = Guard("s3cret")
        token = call_metadata(token="s3cret")
        await _lease_from(running, "m1", token)
        await running.log.Log(pb.LogRequest(filename="f", line="x"), metadata=call_metadata("m1", "s3cret"))
        assert running.core.writer.open_files == 1
        for forged in ((), call_metadata(token="wrong")):
            for seq, acked in ((1, 0), (2, 1)):
                ping = pb.PingRequest(lease_ms=3_600_000, mediator_id="evil", seq=seq, acked_seq=acked)
                assert await _code(running.ping.Ping(ping, metadata=forged)) == grpc.StatusCode.PERMISSION_DENIED
            release = pb.ReleaseRequest(keys=[pb.FileKey(filename="f")], mediator_id="evil")
            assert await _code(running.control.Release(release, metadata=forged)) == grpc.StatusCode.PERMISSION_DENIED
            # A plain compat ping is answered, and changes nothing either.
            reply = await running.ping.Ping(pb.PingRequest(a=6, b=7, mediator_id="evil"), metadata=forged)
            assert reply.res == 42
        assert running.core.lease.mediator_id == "m1" and running.core.writer.open_files == 1
        # The forged incarnation cannot write, with or without the token it lacks.
        for metadata in (call_metadata("evil"), call_metadata("m1")):
            code = await _code(running.log.Log(pb.LogRequest(filename="f", line="y"), metadata=metadata))
            assert code == grpc.StatusCode.FAILED_PRECONDITION
        stats = await running.control.Stats(pb.StatsRequest())  # anyone may ask for status
        assert stats.mode == "cluster"
        assert (tmp_path / "root/f.log").read_bytes() == b"x\n"


@pytest.mark.asyncio
async def test_in_legacy_mode_anyone_may_write_without_a_lease(leased: Running, tmp_path: Path) -> None:
    assert await _code(leased.log.Log(pb.LogRequest(filename="f", line="x"))) == grpc.StatusCode.FAILED_PRECONDITION
    leased.core.lease.legacy = True
    await leased.ping.Ping(pb.PingRequest(a=1, b=2))  # the original's ping: no lease
    await leased.log.Log(pb.LogRequest(filename="f", line="x"))
    assert (await leased.control.Stats(pb.StatsRequest())).mode == "legacy"
    assert (tmp_path / "root/f.log").read_bytes() == b"x\n"
    # With a token the original's pings (which cannot carry it) still count as pings, and change nothing else.
    leased.core.guard = Guard("s3cret")
    leased.core.lease.last_ping = None
    await leased.ping.Ping(pb.PingRequest(a=1, b=2, mediator_id="evil"))
    assert leased.core.lease.last_ping is not None and leased.core.lease.mediator_id is None


@pytest.mark.asyncio
async def test_undecodable_bodies_are_invalid_argument(streamer: Running, caplog: pytest.LogCaptureFixture) -> None:
    garbage = b"\xff\xff\xff\xff\x0f not a protobuf"
    raw = {"unary_unary": streamer.channel.unary_unary, "stream_stream": streamer.channel.stream_stream}
    with caplog.at_level(logging.WARNING):
        for _ in range(20):
            for method in ("/api.LogStreamer/Log", "/api.LogStreamer/LogBatch", "/api.Pinger/Ping",
                           "/api.StreamerControl/Release", "/grpc.health.v1.Health/Check"):
                call = raw["unary_unary"](method, request_serializer=bytes, response_deserializer=bytes)
                assert await _code(call(garbage)) == grpc.StatusCode.INVALID_ARGUMENT
            stream = raw["stream_stream"]("/api.LogStreamer/LogStream", request_serializer=bytes,
                                          response_deserializer=bytes)()
            await stream.write(garbage)
            assert await _code(stream.read()) == grpc.StatusCode.INVALID_ARGUMENT
    assert not [record for record in caplog.records if record.levelno >= logging.ERROR]
    assert len([r for r in caplog.records if "undecodable" in r.getMessage()]) <= 6  # one per method
    await streamer.log.Log(pb.LogRequest(filename="still", line="serving"))


@pytest.mark.asyncio
async def test_an_empty_chunk_through_a_symlink_out_of_the_root_is_refused(streamer: Running, tmp_path: Path) -> None:
    (tmp_path / "outside").mkdir()
    os.symlink(tmp_path / "outside", tmp_path / "root" / "out")
    batch = pb.LogBatchRequest(chunks=[pb.LogChunk(path="out/deeper", filename="f", data=b"")])
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await streamer.log.LogBatch(batch)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "'out'" in (caught.value.details() or "")
    assert list((tmp_path / "outside").iterdir()) == []


@pytest.mark.asyncio
async def test_health_watch_still_streams_through_the_decoding_guard(streamer: Running) -> None:
    call = health_pb2_grpc.HealthStub(streamer.channel).Watch(health_pb2.HealthCheckRequest(service=""))
    reply = await asyncio.wait_for(call.read(), 5)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    call.cancel()


class _SlowDisk(Writer):
    """Each write call takes a millisecond more (a slow disk), and `on_call` runs after each."""

    calls = 0

    def on_call(self) -> None:
        pass

    def write_chunks(self, chunks: Sequence[Chunk]) -> tuple[int, int]:
        written = super().write_chunks(chunks)
        time.sleep(0.001)
        self.calls += 1
        self.on_call()
        return written


def _many_keys(count: int, prefix: str = "k") -> pb.LogBatchRequest:
    return pb.LogBatchRequest(chunks=[pb.LogChunk(path=f"d{k % 10}", filename=f"{prefix}{k}", data=b"x\n")
                                      for k in range(count)])


@pytest.mark.asyncio
async def test_a_ping_is_answered_while_a_large_request_is_being_written(tmp_path: Path) -> None:
    """The write path yields the event loop between slices: a ping sent once writing has begun is
    answered long before the request's last slice (before: only after the whole request)."""
    async with _started(tmp_path, writer_class=_SlowDisk) as running:
        writer = running.core.writer
        batch = asyncio.ensure_future(running.log.LogBatch(_many_keys(3000), timeout=60))
        while writer.stats.lines == 0 and not batch.done():
            await asyncio.sleep(0)
        reply = await running.ping.Ping(pb.PingRequest(a=6, b=7), timeout=30)
        lines_at_ping = writer.stats.lines
        assert (await batch).lines == 3000
        assert reply.res == 42
        assert lines_at_ping < 3000 / 2, f"the ping was answered only after {lines_at_ping} of 3000 lines"


@pytest.mark.asyncio
async def test_a_lease_lapsing_mid_request_refuses_the_rest_with_unavailable(tmp_path: Path) -> None:
    """Every slice passes the gate: once the lease lapsed, nothing more of the request is written
    and the caller gets UNAVAILABLE (an unknown outcome for the mediator: the slices written before
    stay, see docs/cluster-protocol.md)."""

    async with _started(tmp_path, required=True, writer_class=_SlowDisk) as running:
        writer = running.core.writer
        assert isinstance(writer, _SlowDisk)
        lease = running.core.lease

        def lapse() -> None:
            lease.until = float("-inf")  # as if no ping had come in time

        writer.on_call = lapse  # type: ignore[method-assign]
        await running.ping.Ping(pb.PingRequest(lease_ms=5000, mediator_id="m1", seq=1))
        await running.ping.Ping(pb.PingRequest(lease_ms=5000, mediator_id="m1", seq=2, acked_seq=1))
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await running.log.LogBatch(_many_keys(100), metadata=FROM_M1, timeout=30)
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        assert writer.calls == 1 and 0 < writer.stats.lines < 100
        written = sorted(p.name for p in (tmp_path / "root").rglob("*.log") if p.stat().st_size)
        assert len(written) == writer.stats.lines


@pytest.mark.asyncio
async def test_release_waits_for_the_request_in_flight(tmp_path: Path) -> None:
    """A Release never lands between two slices of a request: once it is answered the request is
    done and the released files are closed (not re-opened by the request's later slices)."""
    async with _started(tmp_path, writer_class=_SlowDisk) as running:
        writer = running.core.writer
        batch = asyncio.ensure_future(running.log.LogBatch(_many_keys(400), timeout=60))
        while writer.stats.lines == 0 and not batch.done():
            await asyncio.sleep(0)
        keys = [pb.FileKey(path=f"d{k % 10}", filename=f"k{k}") for k in range(400)]
        await running.control.Release(pb.ReleaseRequest(keys=keys), timeout=30)
        assert writer.stats.lines == 400 and writer.open_files == 0
        assert (await batch).lines == 400


@pytest.mark.asyncio
async def test_a_large_request_with_a_locked_file_writes_nothing(tmp_path: Path) -> None:
    """Written in slices, a request whose files fit under the cap still opens and locks every file
    before its first line: a file locked elsewhere (the last one) leaves the whole request unwritten."""
    async with _started(tmp_path) as running:
        folder = tmp_path / "root" / "d9"
        folder.mkdir(parents=True)
        other = os.open(folder / "k99.log", os.O_WRONLY | os.O_CREAT)
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        try:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await running.log.LogBatch(_many_keys(100), timeout=30)
            assert caught.value.code() == grpc.StatusCode.ABORTED
            assert running.core.writer.stats.lines == 0
            assert all(p.stat().st_size == 0 for p in (tmp_path / "root").rglob("*.log"))
        finally:
            os.close(other)
        assert (await running.log.LogBatch(_many_keys(100), timeout=30)).lines == 100


@pytest.mark.asyncio
async def test_a_ping_answer_reports_how_long_the_oldest_open_file_has_been_idle_not_every_key(
        tmp_path: Path) -> None:
    now = [100.0]
    async with _started(tmp_path, monotonic=lambda: now[0]) as running:
        reply = await running.ping.Ping(pb.PingRequest(a=2, b=3))
        assert reply.HasField("open") and (reply.open.count, reply.open.oldest_write_age_ms) == (0, 0)
        await running.log.Log(pb.LogRequest(path="k", filename="old", line="x"))
        now[0] = 102.5
        await running.log.Log(pb.LogRequest(path="k", filename="new", line="x"))
        now[0] = 103.0
        reply = await running.ping.Ping(pb.PingRequest(a=2, b=3))
        assert (reply.open.count, reply.open.oldest_write_age_ms) == (2, 3000)
        assert list(reply.stats.files) == [] and reply.stats.open_files == 2  # the list stays off pings
        assert len((await running.control.Stats(pb.StatsRequest())).files) == 2
        await running.control.Release(pb.ReleaseRequest(keys=[pb.FileKey(path="k", filename="old")]))
        reply = await running.ping.Ping(pb.PingRequest(a=2, b=3))
        assert (reply.open.count, reply.open.oldest_write_age_ms) == (1, 500)


@pytest.mark.asyncio
async def test_a_reply_is_returned_only_once_its_bytes_are_in_the_file(tmp_path: Path) -> None:
    """The servicer called directly, with no gRPC (so no loop turn) between its return and the check:
    when Log, LogBatch or one LogStream reply returns, a reader opening the file sees the lines. A
    servicer that answered first and wrote on a later loop turn would be caught here."""
    writer = Writer(tmp_path / "root")
    core = StreamerCore(writer, Lease(required=False), node_id="s1")
    servicer = LogStreamerServicer(core)
    context = cast(grpc.aio.ServicerContext, None)  # a standalone streamer reads nothing from it
    file = tmp_path / "root" / "a" / "f.log"
    try:
        await servicer.Log(pb.LogRequest(path="a", filename="f", line="one"), context)
        assert file.read_bytes() == b"one\n"
        reply = await servicer.LogBatch(pb.LogBatchRequest(chunks=[pb.LogChunk(path="a", filename="f", data=b"two")]),
                                        context)
        assert reply.lines == 1 and file.read_bytes() == b"one\ntwo\n"

        async def requests() -> AsyncIterator[pb.LogBatchRequest]:
            for index in range(3):
                yield pb.LogBatchRequest(chunks=[pb.LogChunk(path="a", filename="f", data=f"s{index}\n".encode())])

        expected = b"one\ntwo\n"
        replies = 0
        async for reply in servicer.LogStream(requests(), context):
            expected += f"s{replies}\n".encode()
            replies += 1
            assert reply.lines == 1 and file.read_bytes() == expected
        assert replies == 3
    finally:
        core.cancel_timers()
        writer.close()
