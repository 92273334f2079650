"""The mediator (router + servicers) against real in-test grpc.aio fake streamers on loopback.

Each fake streamer is a real gRPC server speaking the streamer's protocol (Ping, LogBatch,
Release) whose write behaviour a test scripts: fail, hang, refuse one file, abort a few times.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import grpc
import pytest
import pytest_asyncio

from logstream._proto import logstream_pb2 as pb
from logstream._proto import logstream_pb2_grpc as pb_grpc
from logstream.mediator.health import health_loop
from logstream.keys.chunks import Chunk, longest_line_over
from logstream.keys.paths import FileKey
from logstream.mediator.config import RouterConfig
from logstream.keys.placement import place
from logstream.mediator.router import Router
from logstream.mediator.server import build_server
from logstream.mediator.service import Validator
from logstream.node.tasks import TaskSupervisor
from logstream.node.wire import wrap_int32

INTERVAL, TIMEOUT, LEASE = 0.2, 0.15, 0.3
FENCE_S = TIMEOUT + 1.1 * LEASE


@dataclass
class FakeStreamer(pb_grpc.LogStreamerServicer, pb_grpc.PingerServicer, pb_grpc.StreamerControlServicer):
    id: str
    written: list[tuple[str, str, bytes]] = field(default_factory=list)
    # What it did, in order, as "<id> write <name>" / "<id> release <name>"; fakes may share one
    # list (a journal across streamers) to check the order of events at different streamers.
    events: list[str] = field(default_factory=list)
    release_delay_s: float = 0.0  # a Release takes this long before it counts as done
    mode: str = "ok"  # ok | unavailable | hang
    invalid_filename: str | None = None
    aborts_left: int = 0
    forwards: int = 0
    probes: int = 0
    hung_pings: int = 0
    seqs: list[tuple[int, int]] = field(default_factory=list)  # (seq, acked_seq) of each ping
    open_age_ms: int | None = None  # reported in ping answers: its oldest open file's idle time
    server: grpc.aio.Server | None = None
    port: int = 0

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def Ping(self, request: pb.PingRequest, context: grpc.aio.ServicerContext) -> pb.PingResponse:
        if self.mode == "hang":
            self.hung_pings += 1
            await asyncio.sleep(3600)
        if self.mode == "down":
            await context.abort(grpc.StatusCode.UNAVAILABLE, "down")
        self.seqs.append((request.seq, request.acked_seq))
        report = None if self.open_age_ms is None else pb.OpenFiles(count=1, oldest_write_age_ms=self.open_age_ms)
        return pb.PingResponse(res=wrap_int32(request.a * request.b), streamer_id=self.id,
                               stats=pb.StreamerStats(id=self.id, lines=sum(d.count(b"\n") for *_, d in self.written)),
                               open=report)

    async def Log(self, request: pb.LogRequest, context: grpc.aio.ServicerContext) -> pb.LogResponse:
        self.written.append((request.path, request.filename, request.line.encode() + b"\n"))
        self.events.append(f"{self.id} write {request.filename}")
        return pb.LogResponse(res="Success")

    async def LogBatch(self, request: pb.LogBatchRequest, context: grpc.aio.ServicerContext) -> pb.LogBatchResponse:
        if self.mode == "compat":
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, "Method not found!")
        if not request.chunks:  # the mediator's capability probe: writes nothing
            self.probes += 1
            return pb.LogBatchResponse()
        self.forwards += 1
        if self.mode == "unavailable":
            await context.abort(grpc.StatusCode.UNAVAILABLE, "no lease")
        if self.mode == "hang":
            await asyncio.sleep(3600)
        if self.aborts_left > 0:
            self.aborts_left -= 1
            await context.abort(grpc.StatusCode.ABORTED, "file locked by another process")
        if any(chunk.filename == self.invalid_filename for chunk in request.chunks):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"{self.invalid_filename} resolves outside the root")
        for chunk in request.chunks:
            self.written.append((chunk.path, chunk.filename, chunk.data))
            self.events.append(f"{self.id} write {chunk.filename}")
        return pb.LogBatchResponse(lines=sum(c.data.count(b"\n") for c in request.chunks))

    async def LogStream(self, request_iterator: AsyncIterator[pb.LogBatchRequest],
                        context: grpc.aio.ServicerContext) -> AsyncIterator[pb.LogBatchResponse]:
        if self.mode == "compat":
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, "Method not found!")
        async for request in request_iterator:
            yield await self.LogBatch(request, context)

    async def Release(self, request: pb.ReleaseRequest, context: grpc.aio.ServicerContext) -> pb.ReleaseResponse:
        if self.mode == "compat":
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, "Method not found!")
        await asyncio.sleep(self.release_delay_s)
        self.events.extend(f"{self.id} release {key.filename}" for key in request.keys)
        return pb.ReleaseResponse(released=len(request.keys))

    def lines_of(self, filename: str) -> list[bytes]:
        return [line for _p, f, data in self.written if f == filename for line in data.splitlines()]


async def start_fake(streamer_id: str, events: list[str] | None = None) -> FakeStreamer:
    fake = FakeStreamer(streamer_id) if events is None else FakeStreamer(streamer_id, events=events)
    server = grpc.aio.server()
    pb_grpc.add_LogStreamerServicer_to_server(fake, server)
    pb_grpc.add_PingerServicer_to_server(fake, server)
    pb_grpc.add_StreamerControlServicer_to_server(fake, server)
    fake.port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    fake.server = server
    return fake


@dataclass
class Mediator:
    router: Router
    channel: grpc.aio.Channel
    stub: pb_grpc.LogStreamerStub
    register: pb_grpc.RegisterStub
    health: asyncio.Task[None]
    fakes: list[FakeStreamer] = field(default_factory=list)

    async def join(self, fake: FakeStreamer) -> None:
        reply = await self.register.Register(pb.RegisterRequest(id=fake.id, addr=fake.addr))
        assert reply.res == "Success"
        self.fakes.append(fake)
        deadline = time.monotonic() + 5
        while not any(h.id == fake.id for h in self.router.state.live()):
            assert time.monotonic() < deadline, "streamer never became live"
            await asyncio.sleep(0.01)

    async def log(self, filename: str, line: str) -> None:
        await self.stub.Log(pb.LogRequest(filename=filename, path="app", line=line), timeout=10)


@pytest_asyncio.fixture
async def mediator() -> AsyncIterator[Mediator]:
    config = RouterConfig(health_interval_s=INTERVAL, ping_timeout_s=TIMEOUT, lease_s=LEASE, handoff_wait_s=2.0,
                          restart_grace_s=0.0, forward_timeout_s=1.0, batch_lines=1000, batch_bytes=1_000_000)
    router = Router(config, None, "m-test")
    built = build_server(router, Validator(max_line=100), "127.0.0.1", 0)
    await built.server.start()
    stop = asyncio.Event()
    loop_task = asyncio.create_task(health_loop(router, INTERVAL, stop))
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{built.port}")
    med = Mediator(router, channel, pb_grpc.LogStreamerStub(channel), pb_grpc.RegisterStub(channel), loop_task)
    try:
        yield med
    finally:
        stop.set()
        if not loop_task.done():
            await loop_task
        await channel.close()
        await built.server.stop(0)
        await router.close()
        for fake in med.fakes:
            assert fake.server is not None
            await fake.server.stop(0)


def key_owned_by(owner: str, ids: list[str], avoid: tuple[str, ...] = ()) -> str:
    return next(f"f{i}" for i in range(10_000)
                if place(FileKey("app", f"f{i}"), ids) == owner and f"f{i}" not in avoid)


@pytest.mark.asyncio
async def test_no_streamer_gives_unavailable_not_a_crash(mediator: Mediator) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await mediator.log("a", "x")
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "no live streamer" in (caught.value.details() or "")


@pytest.mark.asyncio
@pytest.mark.parametrize(("path", "filename", "line", "problem"), [
    ("app", "", "x", "filename is empty"),
    ("app", "a/b", "x", "'/'"),
    ("/etc", "a", "x", "absolute"),
    ("a/../..", "a", "x", "'..'"),
    ("app", "a\x00b", "x", "NUL"),
    ("app", "a", "y" * 101, "longer than the limit"),
])
async def test_bad_input_is_refused_without_forwarding(mediator: Mediator, path: str, filename: str, line: str,
                                                       problem: str) -> None:
    fake = await start_fake("s1")
    await mediator.join(fake)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await mediator.stub.Log(pb.LogRequest(path=path, filename=filename, line=line), timeout=5)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert problem in (caught.value.details() or "")
    assert fake.forwards == 0


@pytest.mark.asyncio
async def test_bad_register_address_is_refused(mediator: Mediator) -> None:
    for addr in ("", "nohost", "host:", "host:0", "host:99999", ":80"):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await mediator.register.Register(pb.RegisterRequest(id="x", addr=addr))
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.asyncio
async def test_concurrent_unary_calls_are_coalesced_and_each_acked_after_its_write(mediator: Mediator) -> None:
    fake = await start_fake("s1")
    await mediator.join(fake)
    await asyncio.gather(*(mediator.log(f"f{i % 4}", f"line {i}") for i in range(400)))
    assert sorted(line for i in range(4) for line in fake.lines_of(f"f{i}")) == sorted(
        f"line {i}".encode() for i in range(400))
    assert fake.forwards < 200, f"{fake.forwards} forwards for 400 concurrent calls: no coalescing"


@pytest.mark.asyncio
async def test_lines_of_a_failing_owner_go_to_the_new_owner_after_its_lease(mediator: Mediator) -> None:
    s1, s2 = await start_fake("s1"), await start_fake("s2")
    await mediator.join(s1)
    await mediator.join(s2)
    name = key_owned_by("s1", ["s1", "s2"])
    await mediator.log(name, "before")
    s1.mode = "unavailable"
    started = time.monotonic()
    await mediator.log(name, "after")  # succeeds only once written, by s2
    elapsed = time.monotonic() - started
    assert s1.lines_of(name) == [b"before"]
    assert s2.lines_of(name) == [b"after"]
    assert elapsed >= FENCE_S * 0.9, "moved before the old owner's lease had surely expired"
    assert [h.id for h in mediator.router.state.live()] == ["s2"]


@pytest.mark.asyncio
async def test_an_owner_dying_mid_forward_costs_no_acknowledged_line(mediator: Mediator) -> None:
    s1, s2 = await start_fake("s1"), await start_fake("s2")
    await mediator.join(s1)
    await mediator.join(s2)
    name = key_owned_by("s1", ["s1", "s2"])
    await mediator.log(name, "before")
    s1.mode = "hang"
    callers = [asyncio.create_task(mediator.log(name, f"line {i}")) for i in range(20)]
    await asyncio.sleep(0.05)
    assert s1.server is not None
    await s1.server.stop(0)  # the process dies with a forward in flight and more queued
    await asyncio.wait_for(asyncio.gather(*callers), timeout=5)
    assert sorted(s2.lines_of(name)) == sorted(f"line {i}".encode() for i in range(20))
    assert s1.lines_of(name) == [b"before"]


@pytest.mark.asyncio
async def test_a_stuck_streamer_does_not_block_keys_owned_by_others(mediator: Mediator) -> None:
    s1, s2 = await start_fake("s1"), await start_fake("s2")
    await mediator.join(s1)
    await mediator.join(s2)
    on_s1, on_s2 = key_owned_by("s1", ["s1", "s2"]), key_owned_by("s2", ["s1", "s2"])
    s1.mode = "hang"
    forwards = s1.forwards
    stuck = asyncio.create_task(mediator.log(on_s1, "stuck"))
    await wait_until(lambda: s1.forwards > forwards, what="the stuck forward at s1")  # not a fixed sleep
    started = time.monotonic()
    for i in range(20):
        await mediator.log(on_s2, f"free {i}")
    assert time.monotonic() - started < 1.0
    assert not stuck.done()
    await stuck  # s1 is removed (ping and forward deadlines), the line goes to s2 after the fence
    assert s2.lines_of(on_s1) == [b"stuck"]


@pytest.mark.asyncio
async def test_invalid_argument_from_a_streamer_fails_only_that_caller(mediator: Mediator) -> None:
    fake = await start_fake("s1")
    await mediator.join(fake)
    fake.invalid_filename = "evil"
    results = await asyncio.gather(
        *(mediator.log("good", f"g{i}") for i in range(50)), mediator.log("evil", "x"),
        *(mediator.log("good", f"h{i}") for i in range(50)), return_exceptions=True)
    failures = [r for r in results if isinstance(r, BaseException)]
    assert len(failures) == 1 and isinstance(failures[0], grpc.aio.AioRpcError)
    assert failures[0].code() == grpc.StatusCode.INVALID_ARGUMENT
    assert len(fake.lines_of("good")) == 100 and fake.lines_of("evil") == []
    assert [h.id for h in mediator.router.state.live()] == ["s1"]


@pytest.mark.asyncio
async def test_aborted_is_retried_until_the_lock_is_free(mediator: Mediator) -> None:
    fake = await start_fake("s1")
    await mediator.join(fake)
    fake.aborts_left = 3
    await mediator.log("locked", "eventually")
    assert fake.lines_of("locked") == [b"eventually"]


@pytest.mark.asyncio
async def test_join_hands_keys_off_only_after_the_old_owner_released_them(mediator: Mediator) -> None:
    s1 = await start_fake("s1")
    await mediator.join(s1)
    names = [f"k{i}" for i in range(40)]
    for name in names:
        await mediator.log(name, "first")
    # One journal for both: a release at s1 must come before s2's first write of the key. The
    # slow Release gives a router that hands keys over before the release ends time to show it.
    s1.release_delay_s = TIMEOUT / 2  # within the release's deadline (the ping timeout)
    s2 = await start_fake("s2", events=s1.events)
    await mediator.join(s2)
    for name in names:
        await mediator.log(name, "second")
    moved = [n for n in names if place(FileKey("app", n), ["s1", "s2"]) == "s2"]
    assert moved, "no key moved to the newcomer"
    journal = s1.events
    for name in moved:
        assert journal.index(f"s1 release {name}") < journal.index(f"s2 write {name}"), journal
        assert s2.lines_of(name) == [b"second"] and s1.lines_of(name) == [b"first"]
    for name in set(names) - set(moved):
        assert s1.lines_of(name) == [b"first", b"second"]


@pytest.mark.asyncio
async def test_an_original_go_streamer_gets_one_log_call_per_line_and_hand_offs(mediator: Mediator) -> None:
    old = await start_fake("go")
    old.mode = "compat"  # serves Log and Ping only
    await mediator.join(old)
    names = [f"g{i}" for i in range(20)]
    batch = pb.LogBatchRequest(chunks=[pb.LogChunk(path="app", filename=n, data=b"a\nb\n") for n in names])
    assert (await mediator.stub.LogBatch(batch, timeout=10)).lines == 40
    assert all(old.lines_of(n) == [b"a", b"b"] for n in names)
    new = await start_fake("s2")
    await mediator.join(new)
    for name in names:
        await mediator.log(name, "c")
    moved = [n for n in names if new.lines_of(n)]
    assert moved and all(new.lines_of(n) == [b"c"] and old.lines_of(n) == [b"a", b"b"] for n in moved)
    assert [h.id for h in mediator.router.state.live()] == ["go", "s2"]


@pytest.mark.asyncio
async def test_ping_numbers_keep_rising_across_a_re_registration(mediator: Mediator) -> None:
    fake = await start_fake("s1")
    await mediator.join(fake)
    await asyncio.sleep(INTERVAL * 2)
    holder = mediator.router.state.live()[0]
    mediator.router.fail(holder, "test")
    mediator.fakes.remove(fake)
    await mediator.join(fake)
    await asyncio.sleep(INTERVAL * 2)
    numbers = [seq for seq, _acked in fake.seqs]
    assert numbers == sorted(set(numbers)), numbers  # never reused, even by the new link
    assert all(acked < seq for seq, acked in fake.seqs)
    assert any(acked > 0 for _seq, acked in fake.seqs[-2:])


@pytest.mark.asyncio
async def test_batch_and_stream_rpcs(mediator: Mediator) -> None:
    fake = await start_fake("s1")
    await mediator.join(fake)
    request = pb.LogBatchRequest(chunks=[pb.LogChunk(path="app", filename="b", data=b"1\n2\n3"),
                                         pb.LogChunk(path="app", filename="c", data=b"x\n")])
    reply = await mediator.stub.LogBatch(request, timeout=5)
    assert reply.lines == 4 and fake.lines_of("b") == [b"1", b"2", b"3"]
    call = mediator.stub.LogStream(timeout=5)
    for i in range(10):
        await call.write(pb.LogBatchRequest(chunks=[pb.LogChunk(path="app", filename="s", data=f"{i}\n".encode())]))
    await call.done_writing()
    replies = [r async for r in call]
    assert len(replies) == 10 and fake.lines_of("s") == [str(i).encode() for i in range(10)]


@pytest.mark.parametrize(("data", "limit", "over"), [
    (b"", 3, False), (b"abc\n", 3, False), (b"abcd\n", 3, True), (b"a\nbcd\n", 3, False),
    (b"a\nbcde\nf\n", 3, True), (b"ab\n" * 1000, 2, False), (b"ab\n" * 1000 + b"abc\n", 2, True),
])
def test_longest_line_over(data: bytes, limit: int, over: bool) -> None:
    assert (longest_line_over(data, limit) is not None) is over
    assert over is any(len(line) > limit for line in data.split(b"\n"))


@pytest.mark.asyncio
async def test_a_bad_request_ends_a_stream_with_its_status_after_the_good_ones(mediator: Mediator) -> None:
    fake = await start_fake("s1")
    await mediator.join(fake)
    call = mediator.stub.LogStream(timeout=5)
    await call.write(pb.LogBatchRequest(chunks=[pb.LogChunk(path="app", filename="ok", data=b"1\n")]))
    await call.write(pb.LogBatchRequest(chunks=[pb.LogChunk(path="app", filename="", data=b"2\n")]))
    await call.done_writing()
    first = await call.read()
    assert first.lines == 1
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call.read()
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    details = caught.value.details() or ""
    assert "filename is empty" in details and not details.startswith("chunk")  # no internal position
    assert fake.lines_of("ok") == [b"1"]


async def wait_until(condition: Callable[[], bool], timeout_s: float = 5.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"no {what} within {timeout_s}s"
        await asyncio.sleep(0.01)


@pytest.mark.asyncio
async def test_a_ping_cancelled_by_its_closed_channel_does_not_end_the_health_loop(mediator: Mediator) -> None:
    """Closing a streamer's link (a failure, a re-registration) cancels the ping in flight on its
    channel with CancelledError: that is a failed ping of that streamer, and pings go on."""
    s1, s2 = await start_fake("s1"), await start_fake("s2")
    await mediator.join(s1)
    await mediator.join(s2)
    s1.mode = "hang"
    await wait_until(lambda: s1.hung_pings > 0, what="ping in flight to s1")
    holder = next(h for h in mediator.router.state.live() if h.id == "s1")
    mediator.router.fail(holder, "test: forward failed")  # closes s1's channel under its ping
    await asyncio.sleep(0.05)
    pinged = len(s2.seqs)
    await wait_until(lambda: len(s2.seqs) >= pinged + 4, what="pings to s2")
    assert not mediator.health.done(), "the health loop ended"
    await mediator.log(key_owned_by("s2", ["s2"]), "still served")


@pytest.mark.asyncio
async def test_a_removed_streamer_that_answers_again_is_readmitted_without_registering(mediator: Mediator) -> None:
    fake = await start_fake("s1")
    await mediator.join(fake)
    fake.mode = "down"
    await wait_until(lambda: not mediator.router.state.live(), what="removal")
    fake.mode = "ok"
    await wait_until(lambda: [h.id for h in mediator.router.state.live()] == ["s1"], what="re-admission")
    await mediator.log("back", "written")
    assert fake.lines_of("back") == [b"written"]


@pytest.mark.asyncio
async def test_a_streamer_that_registers_before_it_listens_is_admitted(mediator: Mediator) -> None:
    """The Go original calls Register before it starts listening: its first pings fail to connect."""
    fake = FakeStreamer("go")
    server = grpc.aio.server()
    pb_grpc.add_PingerServicer_to_server(fake, server)
    pb_grpc.add_LogStreamerServicer_to_server(fake, server)
    fake.port = server.add_insecure_port("127.0.0.1:0")  # bound, not yet accepting
    fake.server = server
    mediator.fakes.append(fake)
    await mediator.register.Register(pb.RegisterRequest(id="go", addr=fake.addr))
    await asyncio.sleep(0.5)
    await server.start()
    await wait_until(lambda: [h.id for h in mediator.router.state.live()] == ["go"], what="admission")


@pytest.mark.asyncio
async def test_an_original_streamer_is_recognised_by_a_unary_probe_before_any_forward(
        mediator: Mediator, caplog: pytest.LogCaptureFixture) -> None:
    old = await start_fake("go")
    old.mode = "compat"
    await mediator.join(old)
    link = mediator.router.links[mediator.router.state.live()[0]]
    assert link.mode == "unary" and old.forwards == 0
    warned = [r for r in caplog.records if "speaks only the original protocol" in r.getMessage()]
    assert len(warned) == 1 and "one-writer" in warned[0].getMessage()
    await mediator.log("x", "y")
    assert old.lines_of("x") == [b"y"]


class EndedStream:
    """A LogStream call the streamer ended before the router's write went out, as grpc reports it:
    the write fails (INTERNAL "Internal error from Core", or InvalidStateError once the call is done)."""

    def __init__(self, write_error: BaseException, code: grpc.StatusCode) -> None:
        self._write_error = write_error
        self._code = code

    async def write(self, request: pb.LogBatchRequest) -> None:
        raise self._write_error

    async def read(self) -> object:
        return grpc.aio.EOF

    async def code(self) -> grpc.StatusCode:
        return self._code

    async def details(self) -> str:
        return "ended by the streamer"

    def cancel(self) -> bool:
        return False


class EndedStreams:
    """A streamer stub whose LogStream calls are all ended before the first write; unary calls are real."""

    def __init__(self, real: pb_grpc.LogStreamerStub, write_error: BaseException, code: grpc.StatusCode) -> None:
        self.Log, self.LogBatch = real.Log, real.LogBatch
        self._write_error, self._code = write_error, code

    def LogStream(self, metadata: object = None) -> EndedStream:  # noqa: N802 - the stub's name
        return EndedStream(self._write_error, self._code)


@pytest.mark.asyncio
@pytest.mark.parametrize(("write_error", "final"), [
    (grpc.aio.AioRpcError(grpc.StatusCode.INTERNAL, grpc.aio.Metadata(), grpc.aio.Metadata(),
                          "Internal error from Core"), grpc.StatusCode.INTERNAL),
    (asyncio.InvalidStateError("RPC already finished."), grpc.StatusCode.INVALID_ARGUMENT),
])
async def test_a_refused_stream_write_acts_on_the_real_status(
        mediator: Mediator, caplog: pytest.LogCaptureFixture, write_error: BaseException,
        final: grpc.StatusCode) -> None:
    """A failed write on a stream the streamer ended is neither a streamer failure nor a traceback:
    the call's final status decides, and a status grpc masked as INTERNAL is learnt by a unary call."""
    fake = await start_fake("s1")
    await mediator.join(fake)
    fake.invalid_filename = "evil"
    link = mediator.router.links[mediator.router.state.live()[0]]
    link.log = EndedStreams(link.log, write_error, final)  # type: ignore[assignment]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await mediator.log("evil", "x")
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    if final == grpc.StatusCode.INTERNAL:  # resent as LogBatch: the good lines are written once
        await mediator.log("good", "y")
        assert fake.lines_of("good") == [b"y"]
    assert [h.id for h in mediator.router.state.live()] == ["s1"], "the streamer was removed"
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"


@pytest.mark.asyncio
async def test_a_file_locked_elsewhere_gives_aborted_within_the_handoff_wait_and_one_log_line(
        mediator: Mediator, caplog: pytest.LogCaptureFixture) -> None:
    fake = await start_fake("s1")
    await mediator.join(fake)
    fake.aborts_left = 10**6  # another process holds the lock for good
    started = time.monotonic()
    results = await asyncio.gather(*(mediator.log("locked", f"x{i}") for i in range(3)), return_exceptions=True)
    elapsed = time.monotonic() - started
    assert all(isinstance(r, grpc.aio.AioRpcError) and r.code() == grpc.StatusCode.ABORTED for r in results), results
    assert elapsed < mediator.router.config.handoff_wait_s + 1.0
    lines = [r.getMessage() for r in caplog.records if "cannot write app/locked" in r.getMessage()]
    assert len(lines) == 1 and fake.addr in lines[0] and "locked by another process" in lines[0], lines
    assert [h.id for h in mediator.router.state.live()] == ["s1"]


@pytest.mark.asyncio
async def test_a_registration_under_a_live_id_from_elsewhere_removes_nothing_until_it_answers(
        mediator: Mediator) -> None:
    s1 = await start_fake("s1")
    await mediator.join(s1)
    await mediator.log("kept", "before")
    silent = grpc.aio.server()  # bound, never started: nobody answers there
    port = silent.add_insecure_port("127.0.0.1:0")
    await mediator.register.Register(pb.RegisterRequest(id="s1", addr=f"127.0.0.1:{port}"))
    await mediator.log("kept", "meanwhile")  # no fence: s1 is still the holder
    await asyncio.sleep(mediator.router.config.admit_s + INTERVAL * 2)  # the impostor's admission runs out
    assert [h.addr for h in mediator.router.state.live()] == [s1.addr]
    assert not mediator.router._lost, "a registration that never answered is looked for again"
    await mediator.log("kept", "after")
    assert s1.lines_of("kept") == [b"before", b"meanwhile", b"after"]
    await silent.stop(0)


@pytest.mark.asyncio
async def test_a_streamer_restarted_on_a_new_address_replaces_its_old_self_once_it_answers(
        mediator: Mediator) -> None:
    old = await start_fake("s1")
    await mediator.join(old)
    new = await start_fake("s1")
    await mediator.register.Register(pb.RegisterRequest(id="s1", addr=new.addr))
    mediator.fakes.append(new)
    # Live once it answered; the old holder is removed then, and its keys fenced.
    await wait_until(lambda: [h.addr for h in mediator.router.state.live()] == [new.addr], what="replacement")
    await mediator.log("moved", "x")
    assert new.lines_of("moved") == [b"x"] and old.lines_of("moved") == []


@pytest.mark.asyncio
async def test_a_caller_deadline_shorter_than_the_handoff_wait_still_gets_the_reason(mediator: Mediator) -> None:
    """`logstream send` waits 10s per call by default, less than -handoff-wait at default settings
    (16s): the mediator answers ABORTED before the caller's deadline, not DEADLINE_EXCEEDED."""
    fake = await start_fake("s1")
    await mediator.join(fake)
    fake.aborts_left = 10**6
    started = time.monotonic()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await mediator.stub.Log(pb.LogRequest(path="app", filename="locked", line="x"), timeout=1.0)
    assert caught.value.code() == grpc.StatusCode.ABORTED, caught.value
    assert time.monotonic() - started < 1.0


async def wait_for(condition: Callable[[], bool], what: str, within_s: float = 5.0) -> None:
    deadline = time.monotonic() + within_s
    while not condition():
        assert time.monotonic() < deadline, f"not within {within_s}s: {what}"
        await asyncio.sleep(0.02)


@pytest.mark.asyncio
async def test_idle_keys_are_forgotten_only_once_their_owner_reports_them_closed(mediator: Mediator) -> None:
    router = mediator.router
    router.config.key_idle_s = 0.3
    fake = await start_fake("s1")
    fake.open_age_ms = 3_600_000  # "a file I hold was last written an hour ago": maybe any of them
    await mediator.join(fake)
    await asyncio.gather(*(mediator.log(f"f{i}", "x") for i in range(50)))
    assert router.status().counters["keys_owned"] == 50
    await asyncio.sleep(0.3 + 3 * INTERVAL)  # idle, and pinged, long enough
    assert router.status().counters["keys_owned"] == 50
    fake.open_age_ms = 0  # every file it holds was written just now: the idle ones are closed
    await wait_for(lambda: router.status().counters["keys_owned"] == 0, "idle keys forgotten")
    assert router.status().counters["keys_forgotten"] == 50
    await mediator.log("f1", "y")  # placed again like a new key
    assert fake.lines_of("f1") == [b"x", b"y"]


@pytest.mark.asyncio
async def test_a_full_key_table_refuses_a_new_key_with_resource_exhausted_and_makes_room_from_idle_keys(
        mediator: Mediator) -> None:
    router = mediator.router
    router.config.key_idle_s = 0.3
    router.config.max_keys = router.state.ownership.max_keys = 3
    fake = await start_fake("s1")
    fake.open_age_ms = 3_600_000
    await mediator.join(fake)
    for name in ("a", "b", "c"):
        await mediator.log(name, "x")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await mediator.log("d", "x")
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "-max-keys" in (caught.value.details() or "") and "3 keys" in (caught.value.details() or "")
    await mediator.log("a", "y")  # a known key still goes through
    fake.open_age_ms = 0
    router.config.key_idle_s = 3600.0  # the health loop forgets nothing by itself now
    await asyncio.sleep(2 * INTERVAL)  # a ping answer reports the files closed
    assert router.status().counters["keys_owned"] == 3
    router.config.key_idle_s = 0.0
    # Routed before the call's first await, so no health round can forget anything meanwhile:
    # the full table itself forgets the idle keys first.
    await router.write([Chunk(FileKey("app", "d"), b"x\n", 1)])
    assert fake.lines_of("d") == [b"x"]
    assert router.counters.keys_forgotten == 3


@pytest.mark.asyncio
async def test_forwards_of_many_lines_never_linger_and_small_ones_still_coalesce(mediator: Mediator) -> None:
    mediator.router.config.linger_s = 0.5  # read when the streamer's link starts
    mediator.router.config.batch_lines = 20_000
    fake = await start_fake("s1")
    await mediator.join(fake)
    data = b"".join(b"%d\n" % i for i in range(600))

    async def batch(name: str) -> None:
        await mediator.stub.LogBatch(pb.LogBatchRequest(chunks=[pb.LogChunk(path="app", filename=name, data=data)]),
                                     timeout=10)

    started = time.monotonic()
    for _ in range(5):  # forwards carry several callers: "under load", but full enough already
        await asyncio.gather(*(batch(f"b{i}") for i in range(6)))
    assert time.monotonic() - started < 1.0, "600-line requests waited for the linger"
    assert all(len(fake.lines_of(f"b{i}")) == 3000 for i in range(6))
    forwards = fake.forwards
    await asyncio.gather(*(mediator.log(f"f{i % 4}", f"line {i}") for i in range(400)))
    # As in the coalescing test above (a loaded machine spreads the calls out, and calls that
    # trickle in rightly go at once).
    assert fake.forwards - forwards < 200, "one-line calls under load were not coalesced"


@pytest.mark.asyncio
async def test_closing_the_router_ends_every_task_it_started() -> None:
    """With the node's supervisor shared (as in a real mediator), nothing the router started may
    outlive `close`: not an admission still retrying, nor the link's forwarder."""
    tasks = TaskSupervisor()
    config = RouterConfig(health_interval_s=INTERVAL, ping_timeout_s=TIMEOUT, lease_s=LEASE, admit_s=30.0)
    router = Router(config, None, "m-test", tasks=tasks)
    try:
        router.register("nobody", "127.0.0.1:1")  # nothing listens there: its admission retries for 30s
        await asyncio.sleep(0.2)
        assert any(not task.done() for task in tasks.spawned) and tasks.kept, "nothing running to end"
        await router.close()
        assert [task.get_name() for task in tasks.spawned if not task.done()] == []
        assert not tasks.kept
    finally:
        await tasks.close()
