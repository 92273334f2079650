"""Routing lines to their owners: per-streamer batching queues, forwards, retries, pings (admission
of new registrations, rediscovery of removed streamers), hand-offs.

All decisions come from `ClusterState` (pure); this module does the I/O and reports back what
happened. One `StreamerLink` per streamer: a FIFO queue that one sender task drains into `LogBatch`
forwards of up to -batch-lines / -batch-bytes, one forward in flight at a time (which keeps each
key's lines in order); a slow streamer holds up only its own queue.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import random
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import grpc

from logstream.node import auth, tls
from logstream.keys.chunks import Chunk
from logstream.keys.paths import BadTarget, FileKey, validate_target
from logstream.node.tasks import TaskSupervisor
from logstream._proto import logstream_pb2 as pb
from logstream._proto import logstream_pb2_grpc as pb_grpc
from logstream.mediator.ledger import LeaseLedger
from logstream.mediator.membership import Holder, State
from logstream.mediator.ownership import Handoff, NoStreamers, TableFull, Wait
from logstream.mediator.state import ClusterState

logger = logging.getLogger(__name__)

# A streamer's definite refusal of a forward: nothing of it was written because of this status,
# the streamer is fine. Every other failure leaves the outcome unknown or the streamer unusable.
DEFINITE = frozenset({
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.ABORTED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.OUT_OF_RANGE,
    grpc.StatusCode.PERMISSION_DENIED,
})
RETRIED = frozenset({grpc.StatusCode.ABORTED})  # a file lock held elsewhere: wait and retry

# Lingering for fuller forwards pays off only while forwards are small: a forward costs a fixed
# overhead (a message, a reply, a task switch on both sides) plus a little per line, and a few
# hundred lines make the overhead small. Past either bound the forward goes at once, and a linger
# ends as soon as the queue reaches it (so large or many-line requests never wait).
LINGER_BELOW_LINES = 512
LINGER_BELOW_BYTES = 64 * 1024

# A new registration's first health checks are retried for -admit-wait, starting this often.
ADMIT_FIRST_RETRY_S = 0.05
ADMIT_MAX_RETRY_S = 1.0
# A removed streamer's address is pinged again with backoff up to this delay, for this long.
REDISCOVER_AFTER_INTERVALS = 3
REDISCOVER_MAX_DELAY_S = 30.0
REDISCOVER_FOR_S = 3600.0

# A wait ends this long (at most a tenth of the time left) before the caller's deadline.
DEADLINE_MARGIN_S = 0.25
LOCKED_LOGGED_MAX = 10_000  # keys remembered as "lock conflict logged" (then forgotten all at once)

LATENCY_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class RouteError(Exception):
    """A request that cannot be written; `code` is the status the caller gets."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code


class OwnerFailed(Exception):
    """The forward's streamer failed: its lines wait for their keys' new owner."""


class _Ended(grpc.aio.AioRpcError):  # type: ignore[misc]
    """A forward stream that ended without a reply: its final status."""

    def __init__(self, code: grpc.StatusCode, details: str | None) -> None:
        super().__init__(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details)


class _NotSent(_Ended):
    """A forward stream that had ended before this request went out: nothing of it was written."""


class _Deadline(_Ended):
    def __init__(self) -> None:
        super().__init__(grpc.StatusCode.DEADLINE_EXCEEDED, "forward deadline exceeded")


class Refused(Exception):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self.code = code


def wrap_int32(value: int) -> int:
    """`value` wrapped to a signed 32-bit integer, as Go's int32 multiply wraps."""
    return (value + 2**31) % 2**32 - 2**31


@dataclass
class RouterConfig:
    health_interval_s: float = 5.0
    ping_timeout_s: float = 2.0
    lease_s: float = 7.5
    handoff_wait_s: float = 16.0
    restart_grace_s: float | None = None
    admit_s: float = 5.0
    forward_timeout_s: float = 5.0
    batch_lines: int = 20_000
    batch_bytes: int = 4_000_000
    linger_s: float = 0.005
    stream_forwards: bool = True
    key_idle_s: float = 120.0
    max_keys: int = 1_000_000


@dataclass
class Counters:
    requests: Counter[str] = field(default_factory=Counter)  # by RPC
    lines: int = 0
    bytes: int = 0
    forwards: int = 0
    forwarded_lines: int = 0
    forward_failures: int = 0
    retries: int = 0
    unavailable: int = 0
    invalid: int = 0
    handoffs: int = 0
    removals: int = 0
    keys_forgotten: int = 0
    latency_buckets: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS_S) + 1))
    latency_sum_s: float = 0.0

    def observe(self, seconds: float) -> None:
        self.latency_buckets[bisect.bisect_left(LATENCY_BUCKETS_S, seconds)] += 1
        self.latency_sum_s += seconds

    def as_map(self) -> dict[str, int]:
        values = {
            "requests": sum(self.requests.values()),
            "lines": self.lines,
            "bytes": self.bytes,
            "forwards": self.forwards,
            "forwarded_lines": self.forwarded_lines,
            "forward_failures": self.forward_failures,
            "retries": self.retries,
            "unavailable": self.unavailable,
            "invalid": self.invalid,
            "handoffs": self.handoffs,
            "removals": self.removals,
            "keys_forgotten": self.keys_forgotten,
        }
        values.update({f"requests_{name}": count for name, count in self.requests.items()})
        return values


class _Item:
    """One caller's chunks for one streamer, and the future its caller awaits."""

    __slots__ = ("chunks", "finished", "future", "lines", "nbytes")

    def __init__(self, chunks: list[Chunk], future: asyncio.Future[None]) -> None:
        self.chunks = chunks
        self.future = future
        self.finished = False
        self.lines = sum(chunk[2] for chunk in chunks)
        self.nbytes = sum(len(chunk[1]) for chunk in chunks)


class StreamerLink:
    """The channel to one streamer, its queue of pending lines and the task that forwards them."""

    def __init__(self, holder: Holder, channel: grpc.aio.Channel, router: Router) -> None:
        self.holder = holder
        self.channel = channel
        self._router = router
        self._config = router.config
        self.log = pb_grpc.LogStreamerStub(channel)  # type: ignore[no-untyped-call]
        self.pinger = pb_grpc.PingerStub(channel)  # type: ignore[no-untyped-call]
        self.control = pb_grpc.StreamerControlStub(channel)  # type: ignore[no-untyped-call]
        self.queue: deque[_Item] = deque()
        self.pending: Counter[FileKey] = Counter()  # chunks queued or in flight, per key
        self._wake = asyncio.Event()
        self._drain_waiters: list[asyncio.Event] = []
        self._stream: grpc.aio.StreamStreamCall | None = None
        self._inflight: list[_Item] = []
        self._queued_bytes = 0
        self._queued_lines = 0
        self._lingering = False
        # How forwards travel: "stream" (LogStream), "batch" (LogBatch) or "unary" (Log, compat).
        self.mode = "stream" if self._config.stream_forwards else "batch"
        self.probed = False
        self.closed = False
        # Ping numbering (docs/cluster-protocol.md): the streamer's lease runs from its receipt of
        # ping `acked_seq`, the last one answered before its deadline.
        self.ping_seq = 0
        self.acked_seq = 0
        # Every call on this link names it: the streamer then refuses forwards of an earlier link
        # that a partition held up until after it registered again (docs/cluster-protocol.md).
        self.metadata = router.metadata + ((auth.LINK_HEADER, str(router.new_link_number())),)
        self._forwarder = router.tasks.keep(f"forward-{holder}", self._run)

    def submit(self, chunks: list[Chunk]) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.closed:
            future.set_exception(OwnerFailed(f"streamer {self.holder} was removed"))
            return future
        item = _Item(chunks, future)
        self.queue.append(item)
        self._queued_bytes += item.nbytes
        self._queued_lines += item.lines
        pending = self.pending
        for chunk in chunks:
            pending[chunk[0]] += 1
        if not self._lingering or self._queued_lines >= LINGER_BELOW_LINES or self._queued_bytes >= LINGER_BELOW_BYTES:
            self._wake.set()
        return future

    async def drained(self, keys: Sequence[FileKey]) -> None:
        """Return once no line of `keys` is queued or in flight here."""
        while not self.closed and any(self.pending.get(key) for key in keys):
            event = asyncio.Event()
            self._drain_waiters.append(event)
            await event.wait()

    def _take(self) -> list[_Item]:
        items = [self.queue.popleft()]
        lines, nbytes = items[0].lines, items[0].nbytes
        max_lines, max_bytes = self._config.batch_lines, self._config.batch_bytes
        while self.queue:
            item = self.queue[0]
            if lines + item.lines > max_lines or nbytes + item.nbytes > max_bytes:
                break
            items.append(self.queue.popleft())
            lines += item.lines
            nbytes += item.nbytes
        self._queued_bytes -= nbytes
        self._queued_lines -= lines
        return items

    async def _run(self) -> None:
        small = False
        linger_s = self._config.linger_s
        while True:
            if not self.queue:
                self._wake.clear()
                await self._wake.wait()
                continue
            if (small and linger_s > 0 and self._queued_lines < LINGER_BELOW_LINES
                    and self._queued_bytes < LINGER_BELOW_BYTES):
                # Under load (the last forward carried several callers, and few lines) of small
                # requests, let a few more arrive: fewer, fuller forwards cost far less CPU than
                # one per request. The wait ends early once the queue holds enough.
                self._lingering = True
                self._wake.clear()
                try:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(linger_s):
                            await self._wake.wait()
                finally:
                    self._lingering = False
            items = self._take()
            small = len(items) > 1 and sum(item.lines for item in items) < LINGER_BELOW_LINES
            self._inflight = items
            try:
                await self._forward(items)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a bug or a surprise from grpc: never leave a caller hanging
                logger.exception("forward to %s failed unexpectedly", self.holder)
                self._done(items, OwnerFailed(f"streamer {self.holder}: {exc!r}"))
                self._router.fail(self.holder, f"forward failed unexpectedly: {exc!r}")
            finally:
                self._inflight = []

    async def _forward(self, items: list[_Item]) -> None:
        request = pb.LogBatchRequest(chunks=[
            pb.LogChunk(path=key.path, filename=key.filename, data=data)
            for item in items for key, data, _lines in item.chunks
        ])
        counters = self._router.counters
        counters.forwards += 1
        try:
            try:
                await self._send(request)
            except grpc.aio.AioRpcError as exc:
                if exc.code() != grpc.StatusCode.UNIMPLEMENTED or self.mode == "unary":
                    raise
                # An older streamer (the Go original serves only Log): step down and resend.
                self.mode = "batch" if self.mode == "stream" else "unary"
                logger.warning("streamer %s does not serve %s: forwarding with %s from now on", self.holder,
                               "LogStream" if self.mode == "batch" else "LogBatch", self.mode)
                await self._forward(items)
                return
        except grpc.aio.AioRpcError as exc:
            code = exc.code()
            counters.forward_failures += 1
            if code in DEFINITE:
                if len(items) > 1:
                    # One caller's chunk spoiled the batch: give every caller its own outcome.
                    for item in items:
                        await self._forward([item])
                    return
                self._done(items, Refused(code, exc.details() or code.name))
                return
            reason = f"forward failed: {code.name}: {exc.details()}"
            self._done(items, OwnerFailed(f"streamer {self.holder} {reason}"))
            self._router.fail(self.holder, reason)
            return
        except asyncio.CancelledError:
            self._done(items, OwnerFailed(f"streamer {self.holder} was removed"))
            raise
        counters.forwarded_lines += sum(item.lines for item in items)
        self._done(items, None)

    async def _send(self, request: pb.LogBatchRequest) -> None:
        if self.mode == "stream":
            try:
                await self._send_on_stream(request)
            except _NotSent as exc:
                if exc.code() != grpc.StatusCode.INTERNAL:
                    raise
                # grpc reports a write on a call the server has just ended as INTERNAL ("Internal
                # error from Core") and loses the server's status. Nothing was written: a unary
                # call gets this forward's real outcome.
                await self.log.LogBatch(request, timeout=self._config.forward_timeout_s,
                                        metadata=self.metadata)
        elif self.mode == "batch":
            await self.log.LogBatch(request, timeout=self._config.forward_timeout_s,
                                    metadata=self.metadata)
        else:
            async with asyncio.timeout(self._config.forward_timeout_s * 4):
                for chunk in request.chunks:
                    for line in chunk.data.split(b"\n")[:-1]:
                        await self.log.Log(pb.LogRequest(path=chunk.path, filename=chunk.filename,
                                                         line=line.decode("utf-8", "replace")),
                                           timeout=self._config.forward_timeout_s,
                                           metadata=self.metadata)

    async def _send_on_stream(self, request: pb.LogBatchRequest) -> None:
        """One forward over a long-lived LogStream call (much cheaper per forward than a unary
        call); one request in flight, so its reply is this forward's outcome. Any failure ends the
        call and the next forward opens a new one."""
        call = self._stream
        if call is None:
            call = self._stream = self.log.LogStream(metadata=self.metadata)
        try:
            async with asyncio.timeout(self._config.forward_timeout_s):
                try:
                    await call.write(request)
                except (grpc.aio.AioRpcError, asyncio.InvalidStateError):
                    # The call ended before this request went out (the streamer refused the call,
                    # or died): its final status, not the write's, says why.
                    self._drop_stream()
                    raise _NotSent(await call.code(), await call.details()) from None
                reply = await call.read()
        except TimeoutError:
            self._drop_stream()
            raise _Deadline() from None
        except _NotSent:
            raise
        except BaseException:
            self._drop_stream()
            raise
        if reply is grpc.aio.EOF:
            self._drop_stream()
            code = await call.code()
            raise _Ended(code if code != grpc.StatusCode.OK else grpc.StatusCode.UNKNOWN, await call.details())

    def _drop_stream(self) -> None:
        call, self._stream = self._stream, None
        if call is not None:
            with contextlib.suppress(Exception):  # grpc raises InvalidStateError for a finished call
                call.cancel()

    def _done(self, items: list[_Item], error: Exception | None) -> None:
        pending = self.pending
        active = self._router.state.ownership.active
        now = self._router._clock()
        for item in items:
            if item.finished:
                continue
            item.finished = True
            for chunk in item.chunks:
                key = chunk[0]
                left = pending[key] - 1
                if left:
                    pending[key] = left
                else:
                    del pending[key]
                    # Its owner wrote it (if at all) before now: the key's idle time starts here.
                    active(key, now)
            if not item.future.done():
                if error is None:
                    item.future.set_result(None)
                else:
                    item.future.set_exception(error)
        waiters, self._drain_waiters = self._drain_waiters, []
        for event in waiters:
            event.set()

    async def probe(self) -> None:
        """Learn which forwards the streamer serves with one unary call, before its first forward:
        an empty LogBatch writes nothing, and UNIMPLEMENTED (a clean status, unlike a streaming
        call's) means the original's protocol, Log only."""
        try:
            await self.log.LogBatch(pb.LogBatchRequest(), timeout=self._config.ping_timeout_s,
                                    metadata=self.metadata)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.UNIMPLEMENTED:
                self.mode = "unary"
                logger.warning(
                    "streamer %s speaks only the original protocol (no LogBatch, leases or Release): "
                    "forwarding one Log call per line; it holds no lease, so for its files the one-writer "
                    "promise rests on its file locks alone", self.holder)
            # Any other status (no lease yet, not its mediator, unreachable): the method exists,
            # or a forward will find out; keep the default.
        self.probed = True

    async def close(self) -> None:
        """Stop forwarding: queued lines fail over (OwnerFailed), then the channel closes."""
        self.closed = True
        await self._forwarder.stop()
        self._drop_stream()
        gone = OwnerFailed(f"streamer {self.holder} was removed")
        self._done(self._inflight, gone)
        while self.queue:
            self._done([self.queue.popleft()], gone)
        self._done([], None)
        await self.channel.close()


class Router:
    """The mediator's I/O core: owns the cluster state and one link per streamer."""

    def __init__(self, config: RouterConfig, creds: grpc.ChannelCredentials | None = None,
                 mediator_id: str = "", clock: Callable[[], float] = time.monotonic,
                 ledger: LeaseLedger | None = None, token: str | None = None,
                 tasks: TaskSupervisor | None = None) -> None:
        self.config = config
        # Every background task (forwarders, pings, hand-offs, link closes) belongs to the node's
        # supervisor; a router built alone (tests) owns one.
        self.tasks = TaskSupervisor() if tasks is None else tasks
        self._own_tasks = tasks is None
        # Attached to every call to a streamer: it writes only what its current mediator sends.
        self.metadata = auth.call_metadata(mediator_id, token)
        self._ledger = ledger
        self.mediator_id = mediator_id
        self._creds = creds
        self._clock = clock
        self.state = ClusterState(config.lease_s, config.ping_timeout_s, clock(), config.restart_grace_s,
                                  config.max_keys)
        self.links: dict[Holder, StreamerLink] = {}
        self.counters = Counters()
        self.removed: dict[str, tuple[Holder, float]] = {}  # id -> (holder, when), for status
        self._changed = asyncio.Event()
        self._admitting: set[Holder] = set()  # registered just now: retried pings, not the health loop's
        self._lost: dict[Holder, asyncio.Task[None]] = {}  # removed streamers pinged again with backoff
        self._link_closes: set[asyncio.Task[None]] = set()
        self._locked_logged: set[FileKey] = set()  # keys whose lock conflict was logged
        self.closing = False
        self._ping_seq = 0
        self._link_number = 0
        self._lease_ms = int(config.lease_s * 1000)
        self._interval_ms = int(config.health_interval_s * 1000)

    # -- membership ---------------------------------------------------------------------------

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def new_link_number(self) -> int:
        """The next link's number: they only grow within this mediator's incarnation."""
        self._link_number += 1
        return self._link_number

    def register(self, streamer_id: str, addr: str) -> Holder:
        outcome = self.state.register(streamer_id, addr, self._clock())
        for old in outcome.replaced:
            logger.warning("streamer %s replaced by %s (re-registered): its keys wait until its lease has "
                           "surely expired", old, outcome.holder)
            self._close_link(old)
        for old in outcome.superseded:
            logger.info("streamer %s never answered before %s registered", old, outcome.holder)
            self._close_link(old)
        if outcome.candidate:
            logger.warning("streamer %s registers while another holder of its id or address is live: that one "
                           "keeps its keys until %s answers a ping", outcome.holder, outcome.holder.addr)
        for lost in [h for h in self._lost if h.id == streamer_id or h.addr == addr]:
            self._lost.pop(lost).cancel()  # it is back (or its address is another's now)
        if outcome.new:
            if not outcome.candidate:
                self.removed.pop(streamer_id, None)
            channel = tls.secure_or_insecure_channel(addr, self._creds)
            self.links[outcome.holder] = StreamerLink(outcome.holder, channel, self)
            logger.info("streamer %s registered; first ping now", outcome.holder)
            self._admitting.add(outcome.holder)
            self.tasks.spawn(self._admit(outcome.holder), f"admit-{outcome.holder}")
        else:
            logger.info("streamer %s registered again (already known)", outcome.holder)
        self._notify()
        return outcome.holder

    async def _admit(self, holder: Holder) -> None:
        """The first health checks of a new registration, retried with backoff for `admit_s`
        before a failure counts: the Go original registers before it listens."""
        try:
            deadline = self._clock() + self.config.admit_s
            delay_s = ADMIT_FIRST_RETRY_S
            while holder in self.links:
                last = self._clock() + delay_s >= deadline
                if await self.ping(holder, tolerate=not last) or last:
                    return
                await asyncio.sleep(delay_s)
                delay_s = min(delay_s * 2, ADMIT_MAX_RETRY_S)
        finally:
            self._admitting.discard(holder)

    async def ping(self, holder: Holder, tolerate: bool = False) -> bool:
        """One health check and lease renewal; a failure removes the streamer (unless `tolerate`:
        a streamer being admitted, which is not live and holds nothing).

        Two numbered pings: the first checks health and is answered in time; the second acks it,
        which starts the streamer's lease from the first one's receipt. The streamer counts as
        answered (and may become live) only once both were answered in time.
        """
        link = self.links.get(holder)
        if link is None or link.closed:
            return False
        first = await self._ping_once(holder, link, tolerate)
        if first is None:
            return False
        sent = self._clock()  # no later than the streamer's answer to the second ping
        reply = await self._ping_once(holder, link, tolerate)  # acks the first: the lease starts
        if reply is None:
            return False
        for old in self.state.promote(holder):  # a candidate answered: now it replaces them
            logger.warning("streamer %s replaced by %s (answered at its new address): its keys wait until "
                           "its lease has surely expired", old, holder)
            self.counters.removals += 1
            self._close_link(old)
        if not link.probed:
            await link.probe()
        stats = reply.stats
        held = _held_keys(first.held or reply.held)
        grace_until = self.state.ownership.grace_until
        # Every file open at the streamer when it answered was written after this (its clock may
        # run up to 10% off ours); one that reports nothing (the Go original, which holds no
        # locks and writes only what it is sent) counts as having nothing open.
        closed_before = sent - 1.1 * reply.open.oldest_write_age_ms / 1000 if reply.HasField("open") else sent
        plans = self.state.ping_answered(holder, self._clock(), stats.lines, stats.bytes, stats.open_files, held,
                                         max(first.held_lease_ms, reply.held_lease_ms) / 1000, closed_before)
        if self.state.ownership.grace_until < grace_until:
            logger.info("every streamer of the previous run has answered: placing keys in %.1fs, not %.1fs",
                        max(0.0, self.state.ownership.grace_until - self._clock()),
                        max(0.0, grace_until - self._clock()))
        if plans is not None:
            kept = len(self.state.ownership.keys_of(holder)) if held else 0
            logger.info("streamer %s is live (%d live)%s", holder, len(self.state.live()),
                        f"; kept {kept} of the {len(held)} keys it held under the previous mediator" if held else "")
            for plan in plans:
                self.counters.handoffs += 1
                self.tasks.spawn(self._handoff(plan), f"handoff-{plan.source}")
            self._notify()
        return True

    async def _ping_once(self, holder: Holder, link: StreamerLink, tolerate: bool = False) -> pb.PingResponse | None:
        a, b = random.randint(-(2**31), 2**31 - 1), random.randint(-(2**31), 2**31 - 1)
        # Numbered across all links of this mediator, not per link: a streamer that re-registers
        # gets a new link, and a late ping of its old link must not reuse a number the new link
        # acks (its later receipt would stretch the lease past the mediator's bound).
        self._ping_seq += 1
        seq = link.ping_seq = self._ping_seq
        request = pb.PingRequest(a=a, b=b, streamerId=holder.id, lease_ms=self._lease_ms,
                                 mediator_id=self.mediator_id, interval_ms=self._interval_ms,
                                 seq=seq, acked_seq=link.acked_seq)
        self._record_lease_horizon()
        self.state.ping_sent(holder, self._clock())
        try:
            reply = await link.pinger.Ping(request, timeout=self.config.ping_timeout_s, metadata=link.metadata)
        except grpc.aio.AioRpcError as exc:
            if not tolerate:
                self.fail(holder, f"ping failed: {exc.code().name}: {exc.details()}")
            return None
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # this ping itself was cancelled (shutdown)
            # grpc cancels a call whose channel is closed (the link was closed by a failure or a
            # re-registration): a failed ping of that streamer, and nothing more.
            logger.info("ping to %s cancelled: its channel was closed", holder)
            self.fail(holder, "ping cancelled: its channel was closed")
            return None
        if reply.res != wrap_int32(a * b):
            self.fail(holder, f"ping answered {reply.res}, not {wrap_int32(a * b)}")
            return None
        if reply.streamer_id and reply.streamer_id != holder.id:
            self.fail(holder, f"another streamer ({reply.streamer_id!r}) answers at {holder.addr}")
            return None
        link.acked_seq = max(link.acked_seq, seq)  # answered before its deadline
        return reply  # type: ignore[no-any-return]

    def _record_lease_horizon(self) -> None:
        """Before a ping that may grant a lease: the ledger must cover it, for a restart's sake."""
        if self._ledger is None:
            return
        try:
            # Every streamer that may hold a lease: members, candidates, and removed ones whose
            # lease may not have expired yet (a restarted mediator waits for all of them).
            membership, now = self.state.membership, self._clock()
            maybe_leased = [h for h, sent in membership.last_ping_sent.items()
                            if sent + membership.expiry_bound_s > now]
            self._ledger.cover(membership.expiry_bound_s, self.config.health_interval_s,
                               [*membership.holders(), *maybe_leased])
        except OSError as exc:
            logger.error("cannot record leases in %s: %s (a restarted mediator would wait too little)",
                         self._ledger.path, exc)

    async def ping_all(self) -> None:
        """Ping every member (but those being admitted), each in a task of its own: one ping's
        failure, even a CancelledError from a channel closed under it, is that ping's outcome and
        never the health loop's."""
        pings = [self.tasks.spawn(self.ping(holder), f"ping-{holder}")
                 for holder in self.state.membership.holders() if holder not in self._admitting]
        if pings:
            await asyncio.wait(pings)

    def fail(self, holder: Holder, reason: str) -> None:
        """Remove a streamer: fence its keys until its lease has surely expired."""
        member = self.state.membership.member(holder)
        fenced = self.state.failed(holder)
        if fenced is None:
            return
        self.counters.removals += 1
        self.removed[holder.id] = (holder, self._clock())
        wait_s = max(0.0, self.state.membership.surely_expired_at(holder) - self._clock())
        was = "live" if member is not None and member.state is State.LIVE else "pending"
        logger.warning("streamer %s removed (was %s): %s; %d keys wait %.1fs for its lease to lapse; %d live",
                       holder, was, reason, len(fenced), wait_s, len(self.state.live()))
        self._close_link(holder)
        # A failed candidate (a registration that never answered where it said) is not looked for.
        if member is not None and not self.closing and holder not in self._lost:
            self._lost[holder] = self.tasks.spawn(self._rediscover(holder), f"rediscover-{holder}")
        self._notify()

    async def _rediscover(self, holder: Holder) -> None:
        """Ping a removed streamer's address with backoff and re-admit it once it answers, through
        the normal pending -> live path: a streamer that never registers again (the Go original
        registers only at start) still comes back. These pings carry no lease and no number, so
        they grant nothing and the fence on its keys still ends when the mediator expects."""
        channel = tls.secure_or_insecure_channel(holder.addr, self._creds)
        pinger = pb_grpc.PingerStub(channel)  # type: ignore[no-untyped-call]
        # First after its keys may be placed anew (their fence ends) and no sooner than a streamer
        # re-registers by itself: one that answers pings but fails forwards flaps no faster than
        # it would without this search.
        delay_s = max(REDISCOVER_AFTER_INTERVALS * self.config.health_interval_s,
                      self.state.membership.expiry_bound_s)
        give_up = self._clock() + REDISCOVER_FOR_S
        try:
            while self._clock() < give_up:
                await asyncio.sleep(delay_s)
                delay_s = min(delay_s * 2, REDISCOVER_MAX_DELAY_S)
                a, b = random.randint(-(2**31), 2**31 - 1), random.randint(-(2**31), 2**31 - 1)
                try:
                    reply = await pinger.Ping(pb.PingRequest(a=a, b=b, streamerId=holder.id),
                                              timeout=self.config.ping_timeout_s, metadata=self.metadata)
                except grpc.aio.AioRpcError:
                    continue
                if reply.res != wrap_int32(a * b) or reply.streamer_id not in ("", holder.id):
                    continue  # someone else answers there
                if self.closing:
                    return
                logger.info("removed streamer %s answers again: admitting it anew", holder)
                del self._lost[holder]  # before register(), which stops the search for this id
                self.register(holder.id, holder.addr)
                return
            logger.info("stopped looking for removed streamer %s after %.0fs", holder, REDISCOVER_FOR_S)
        finally:
            if self._lost.get(holder) is asyncio.current_task():
                del self._lost[holder]
            await channel.close()

    def _close_link(self, holder: Holder) -> None:
        link = self.links.pop(holder, None)
        if link is not None:
            link.closed = True
            task = self.tasks.spawn(link.close(), f"close-{holder}")
            self._link_closes.add(task)
            task.add_done_callback(self._link_closes.discard)

    async def _handoff(self, plan: Handoff) -> None:
        link = self.links.get(plan.source)
        released, reason = False, "streamer gone"
        if link is not None:
            try:
                async with asyncio.timeout(self.config.forward_timeout_s + self.config.ping_timeout_s):
                    await link.drained(plan.keys)
                    await link.control.Release(
                        pb.ReleaseRequest(keys=[pb.FileKey(path=k.path, filename=k.filename) for k in plan.keys],
                                          mediator_id=self.mediator_id),
                        timeout=self.config.ping_timeout_s, metadata=link.metadata,
                    )
                released = True
            except grpc.aio.AioRpcError as exc:
                if exc.code() == grpc.StatusCode.UNIMPLEMENTED:
                    # An older streamer without leases writes only what it is sent, and nothing
                    # of these keys is in flight any more: moving them is safe.
                    released = True
                else:
                    reason = f"release failed: {exc.code().name}: {exc.details()}"
            except TimeoutError:
                reason = "release timed out"
        if released:
            self.state.handoff_done(plan, True, self._clock())
            logger.info("handed off %d keys from %s to %s", len(plan.keys), plan.source, plan.target)
        else:
            self.fail(plan.source, reason)
            self.state.handoff_done(plan, False, self._clock())
        self._notify()

    def _busy(self, holder: Holder, key: FileKey) -> bool:
        link = self.links.get(holder)
        return link is not None and key in link.pending

    def forget_idle(self) -> int:
        """Forget keys idle for -key-idle that their owners reported closed (and fenced keys whose
        old owner's lease has surely expired): the table shrinks back as keys fall out of use."""
        forgotten = self.state.forget_idle(self._clock(), self.config.key_idle_s, self._busy)
        if forgotten:
            self.counters.keys_forgotten += len(forgotten)
            logger.debug("forgot %d idle keys (%d left)", len(forgotten), self.state.ownership.size())
        return len(forgotten)

    # -- writing ------------------------------------------------------------------------------

    async def write(self, chunks: list[Chunk], time_left_s: float | None = None) -> None:
        """Return once every chunk was written by its key's owner; RouteError otherwise.

        Waiting (for a key's owner, or for a lock held elsewhere) lasts at most -handoff-wait, and
        ends a little before the caller's deadline (`time_left_s`), so that the caller gets the
        reason (`ABORTED`, `UNAVAILABLE`) rather than `DEADLINE_EXCEEDED`.
        """
        pending = chunks
        waited_since: float | None = None
        wait_s = self.config.handoff_wait_s
        if time_left_s is not None:
            wait_s = min(wait_s, time_left_s - min(DEADLINE_MARGIN_S, time_left_s / 10))
        backoff_s = 0.005
        swept = False
        while True:
            if self.closing:
                raise RouteError(grpc.StatusCode.UNAVAILABLE, "mediator is shutting down")
            now = self._clock()
            groups: dict[Holder, list[Chunk]] = {}
            retry: list[Chunk] = []
            reason: object = None
            route = self.state.route
            for chunk in pending:
                target = route(chunk[0], now)
                if target.__class__ is Holder:
                    group = groups.get(target)
                    if group is None:
                        groups[target] = [chunk]
                    else:
                        group.append(chunk)
                elif target is NoStreamers.NONE:
                    raise RouteError(grpc.StatusCode.UNAVAILABLE,
                                     "no live streamer: none has registered and answered a health check yet, "
                                     "or every streamer has left")
                elif target is TableFull.FULL:
                    if not swept:  # idle keys make room first
                        swept = True
                        self.forget_idle()
                        target = route(chunk[0], now)
                    if isinstance(target, Holder):
                        groups.setdefault(target, []).append(chunk)
                    elif target is TableFull.FULL:
                        raise RouteError(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                         f"the mediator's key table is full: {self.config.max_keys} keys "
                                         f"(-max-keys), none idle for -key-idle "
                                         f"({self.config.key_idle_s:g}s) and closed by its streamer; "
                                         f"{chunk[0]} is a new key")
                    else:
                        retry.append(chunk)
                        reason = target
                else:
                    retry.append(chunk)
                    reason = target
            if groups:
                submitted = [(holder, self.links[holder].submit(group), group) for holder, group in groups.items()]
                refused: Refused | None = None
                for holder, future, group in submitted:
                    try:
                        await future
                    except OwnerFailed as exc:
                        retry.extend(group)
                        reason = exc
                    except Refused as exc:
                        if exc.code in RETRIED:
                            self._note_locked(holder, group, exc)
                            retry.extend(group)
                            reason = exc
                        elif refused is None:
                            refused = exc
                if refused is not None:
                    raise RouteError(refused.code, refused.args[0])
            if not retry:
                return
            self.counters.retries += 1
            pending = retry
            now = self._clock()
            if waited_since is None:
                waited_since = now
            remaining = waited_since + wait_s - now
            if remaining <= 0:
                # A file locked by another process is a definite refusal, not an outage: say so.
                code = reason.code if isinstance(reason, Refused) else grpc.StatusCode.UNAVAILABLE
                raise RouteError(code, f"no streamer could take {pending[0][0]} within "
                                 f"{max(wait_s, 0.0):.1f}s: {_describe(reason)}")
            await self._wait_change(min(backoff_s, remaining))
            backoff_s = min(backoff_s * 2, 0.1)

    def _note_locked(self, holder: Holder, chunks: list[Chunk], refusal: Refused) -> None:
        """Log once per key that its owner cannot write it because another process holds the
        file's lock (a direct writer, a second cluster on the same disk)."""
        for key in {chunk[0] for chunk in chunks}:
            if key in self._locked_logged:
                continue
            if len(self._locked_logged) >= LOCKED_LOGGED_MAX:
                self._locked_logged.clear()
            self._locked_logged.add(key)
            logger.warning("streamer %s cannot write %s: %s; retrying for up to %.1fs, then the caller gets %s",
                           holder, key, refusal.args[0], self.config.handoff_wait_s, refusal.code.name)

    async def _wait_change(self, timeout_s: float) -> None:
        event = self._changed
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await event.wait()

    # -- status and shutdown ------------------------------------------------------------------

    async def refresh_stats(self, timeout_s: float = 1.0) -> None:
        """Ask every live streamer for its counters now (status would otherwise show the last
        ping's, up to a health interval old); a streamer that does not answer keeps those."""

        async def ask(holder: Holder, link: StreamerLink) -> None:
            try:
                stats = await link.control.Stats(pb.StatsRequest(), timeout=timeout_s, metadata=link.metadata)
            except grpc.aio.AioRpcError:
                return
            member = self.state.membership.member(holder)
            if member is not None:
                member.lines, member.bytes, member.open_files = stats.lines, stats.bytes, stats.open_files

        await asyncio.gather(*(ask(holder, link) for holder, link in list(self.links.items())
                               if not link.closed and self.state.membership.is_live(holder)))

    def status(self) -> pb.StatusResponse:
        now = self._clock()
        streamers = []
        for member in sorted(self.state.membership.members.values(), key=lambda m: m.holder.id):
            keys = self.state.ownership.keys_of(member.holder)
            streamers.append(pb.StreamerStatus(
                id=member.holder.id, addr=member.holder.addr, alive=member.state is State.LIVE,
                files=[pb.FileKey(path=k.path, filename=k.filename) for k in keys],
                lines=member.lines, bytes=member.bytes,
                last_seen_s=-1.0 if member.last_ok is None else now - member.last_ok,
            ))
        for holder, _when in sorted(self.removed.values()):
            if holder.id not in self.state.membership.members:
                streamers.append(pb.StreamerStatus(id=holder.id, addr=holder.addr, alive=False, last_seen_s=-1.0))
        counters = self.counters.as_map()
        counters["streamers_live"] = len(self.state.live())
        counters["keys_owned"] = len(self.state.ownership.owner)
        counters["keys_waiting"] = len(self.state.ownership.fenced) + len(self.state.ownership.handoff)
        return pb.StatusResponse(mediator_id=self.mediator_id, streamers=streamers, counters=counters)

    async def close(self) -> None:
        self.closing = True
        for task in self._lost.values():
            task.cancel()
        links = list(self.links.values())
        self.links.clear()
        for link in links:
            link.closed = True
        await asyncio.gather(*(link.close() for link in links))
        if self._link_closes:  # links closed earlier: let them finish closing their channels
            await asyncio.wait(list(self._link_closes))
        if self._own_tasks:
            await self.tasks.close()


def _held_keys(keys: Sequence[pb.FileKey]) -> list[FileKey]:
    """A streamer's report of the keys it held, in the mediator's normal form; invalid ones dropped."""
    held = []
    for key in keys:
        try:
            target = validate_target(key.path, key.filename)
        except BadTarget:
            continue
        held.append(FileKey(target.path, target.stem))
    return held


def _describe(reason: object) -> str:
    if isinstance(reason, Wait):
        return f"the key is {reason.value}" if reason is Wait.HANDOFF else reason.value
    if isinstance(reason, Refused):
        return f"{reason.code.name}: {reason.args[0]}"
    return str(reason)
