"""The link to one streamer: its channel, its queue of lines, and the one task that forwards them.

A FIFO queue that one forwarder drains into forwards of up to -batch-lines / -batch-bytes, one
forward in flight at a time (which keeps each key's lines in order); a slow streamer holds up only
its own queue. Forwards travel over a long-lived LogStream call by default, LogBatch or one Log
call per line for older streamers. Each caller's future gets the forward's `Outcome`; a failed
streamer is reported once, to `on_failed`, which removes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence

from typing import Any

import grpc

from logstream._proto import logstream_pb2 as pb
from logstream._proto import logstream_pb2_grpc as pb_grpc
from logstream.mediator.config import RouterConfig
from logstream.mediator.counters import Counters
from logstream.mediator.membership import Holder
from logstream.keys.chunks import Chunk
from logstream.keys.paths import FileKey
from logstream.mediator.outcome import WRITTEN, Kind, Outcome
from logstream.node.tasks import TaskSupervisor

logger = logging.getLogger(__name__)

# Lingering for fuller forwards pays off only while forwards are small: a forward costs a fixed
# overhead (a message, a reply, a task switch on both sides) plus a little per line, and a few
# hundred lines make the overhead small. Past either bound the forward goes at once, and a linger
# ends as soon as the queue reaches it (so large or many-line requests never wait).
LINGER_BELOW_LINES = 512
LINGER_BELOW_BYTES = 64 * 1024

# A forward's final status: its code, details, and the owner a refusal names (etcd mode, else "").
Status = tuple[grpc.StatusCode, str, str]
_OK: Status = (grpc.StatusCode.OK, "", "")


def _owner_named(code: grpc.StatusCode, metadata: object) -> str:
    """The owner an etcd-mode streamer's FAILED_PRECONDITION names in its trailing metadata."""
    if code != grpc.StatusCode.FAILED_PRECONDITION or not metadata:
        return ""
    from logstream.coord.gate import owner_in  # etcd mode only: keeps etcd's client out of embedded mode

    return owner_in(metadata)


async def _stream_owner(call: grpc.aio.StreamStreamCall, code: grpc.StatusCode) -> str:
    """The owner an ended stream's refusal names (its trailing metadata is read only for that code)."""
    if code != grpc.StatusCode.FAILED_PRECONDITION:
        return ""
    return _owner_named(code, await call.trailing_metadata())


def _error_status(exc: grpc.aio.AioRpcError) -> Status:
    code = exc.code()
    return code, exc.details() or "", _owner_named(code, exc.trailing_metadata())


class _Item:
    """One caller's chunks for one streamer, and the future its caller awaits."""

    __slots__ = ("chunks", "finished", "future", "lines", "nbytes")

    def __init__(self, chunks: list[Chunk], future: asyncio.Future[Outcome]) -> None:
        self.chunks = chunks
        self.future = future
        self.finished = False
        self.lines = sum(chunk[2] for chunk in chunks)
        self.nbytes = sum(len(chunk[1]) for chunk in chunks)


async def close_links(links: dict[Any, StreamerLink]) -> None:
    """Close every link of `links` and forget them (their queued lines fail: callers get an outcome)."""
    closing = list(links.values())
    links.clear()
    for link in closing:
        link.closed = True
    await asyncio.gather(*(link.close() for link in closing))


class StreamerLink:
    """The channel to one streamer, its queue of pending lines and the task that forwards them.

    `on_failed(holder, reason)`: the streamer failed a forward (it is to be removed);
    `on_idle(keys)`: no forward of these keys is pending here any more (their idle time starts).
    `metadata` names this link (auth.LINK_HEADER): the streamer refuses an earlier link's forwards.
    """

    def __init__(self, holder: Holder, channel: grpc.aio.Channel, config: RouterConfig, counters: Counters,
                 metadata: tuple[tuple[str, str], ...], tasks: TaskSupervisor,
                 on_failed: Callable[[Holder, str], None], on_idle: Callable[[list[FileKey]], None]) -> None:
        self.holder = holder
        self.channel = channel
        self.metadata = metadata
        self._config = config
        self._counters = counters
        self._on_failed = on_failed
        self._on_idle = on_idle
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
        self.mode = "stream" if config.stream_forwards else "batch"
        self.probed = False
        self.closed = False
        # The last ping on this link answered before its deadline (see pinger.py): the streamer's
        # lease runs from its receipt of that one.
        self.acked_seq = 0
        # Owned by the node's supervisor (restarted if it dies), stopped by `close`.
        self._forwarder = tasks.keep(f"forward-{holder}", self._run)

    def submit(self, chunks: list[Chunk]) -> asyncio.Future[Outcome]:
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        if self.closed:
            future.set_result(Outcome.failed(f"streamer {self.holder} was removed"))
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
                self._fail(items, f"forward failed unexpectedly: {exc!r}")
            finally:
                self._inflight = []

    async def _forward(self, items: list[_Item]) -> None:
        request = pb.LogBatchRequest(chunks=[
            pb.LogChunk(path=key.path, filename=key.filename, data=data)
            for item in items for key, data, _lines in item.chunks
        ])
        counters = self._counters
        counters.forwards += 1
        sent = time.perf_counter()
        try:
            code, details, owner = await self._send(request)
        except asyncio.CancelledError:
            self._fail(items, "was removed", report=False)
            raise
        counters.forward_latency.observe_forward(self.holder.id, time.perf_counter() - sent, code.name)
        if code == grpc.StatusCode.UNIMPLEMENTED and self.mode != "unary":
            # An older streamer (the Go original serves only Log): step down and resend.
            self.mode = "batch" if self.mode == "stream" else "unary"
            logger.warning("streamer %s does not serve %s: forwarding with %s from now on", self.holder,
                           "LogStream" if self.mode == "batch" else "LogBatch", self.mode)
            await self._forward(items)
            return
        outcome = Outcome.of_status(code, details, owner)
        if outcome.kind is Kind.WRITTEN:
            counters.forwarded_lines += sum(item.lines for item in items)
        else:
            counters.forward_failures += 1
            if outcome.definite and len(items) > 1:
                # One caller's chunk spoiled the batch: give every caller its own outcome.
                for item in items:
                    await self._forward([item])
                return
            if outcome.kind is Kind.FAILED:
                self._fail(items, f"forward failed: {code.name}: {details}")
                return
        self._done(items, outcome)

    async def _send(self, request: pb.LogBatchRequest) -> Status:
        """This forward's final status: OK when written."""
        timeout_s = self._config.forward_timeout_s
        try:
            if self.mode == "stream":
                status, sent = await self._send_on_stream(request)
                if sent or status[0] != grpc.StatusCode.INTERNAL:
                    return status
                # grpc reports a write on a call the server has just ended as INTERNAL ("Internal
                # error from Core") and loses the server's status. Nothing was written: a unary
                # call gets this forward's real outcome.
                await self.log.LogBatch(request, timeout=timeout_s, metadata=self.metadata)
            elif self.mode == "batch":
                await self.log.LogBatch(request, timeout=timeout_s, metadata=self.metadata)
            else:
                async with asyncio.timeout(timeout_s * 4):
                    for chunk in request.chunks:
                        for line in chunk.data.split(b"\n")[:-1]:
                            await self.log.Log(pb.LogRequest(path=chunk.path, filename=chunk.filename,
                                                             line=line.decode("utf-8", "replace")),
                                               timeout=timeout_s, metadata=self.metadata)
        except grpc.aio.AioRpcError as exc:
            return _error_status(exc)
        except TimeoutError:
            return grpc.StatusCode.DEADLINE_EXCEEDED, "forward deadline exceeded", ""
        return _OK

    async def _send_on_stream(self, request: pb.LogBatchRequest) -> tuple[Status, bool]:
        """One forward over a long-lived LogStream call (much cheaper per forward than a unary
        call); one request in flight, so its reply is this forward's outcome. Any failure ends the
        call and the next forward opens a new one. The status, and whether the request went out."""
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
                    code = await call.code()
                    return (code, await call.details() or "", await _stream_owner(call, code)), False
                reply = await call.read()
        except TimeoutError:
            self._drop_stream()
            return (grpc.StatusCode.DEADLINE_EXCEEDED, "forward deadline exceeded", ""), True
        except grpc.aio.AioRpcError as exc:
            self._drop_stream()
            return _error_status(exc), True
        except BaseException:
            self._drop_stream()
            raise
        if reply is grpc.aio.EOF:
            self._drop_stream()
            code = await call.code()
            owner = await _stream_owner(call, code)
            return ((code if code != grpc.StatusCode.OK else grpc.StatusCode.UNKNOWN), await call.details() or "",
                    owner), True
        return _OK, True

    def _drop_stream(self) -> None:
        call, self._stream = self._stream, None
        if call is not None:
            with contextlib.suppress(Exception):  # grpc raises InvalidStateError for a finished call
                call.cancel()

    def _fail(self, items: list[_Item], reason: str, report: bool = True) -> None:
        """The streamer failed this forward: its callers retry at their keys' next owner, and the
        failure is reported (the one place a forward removes a streamer)."""
        self._done(items, Outcome.failed(f"streamer {self.holder} {reason}"))
        if report and not self.closed:
            self._on_failed(self.holder, reason)

    def _done(self, items: list[_Item], outcome: Outcome) -> None:
        pending = self.pending
        idle: list[FileKey] = []
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
                    idle.append(key)  # its owner wrote it (if at all) before now
            if not item.future.done():
                item.future.set_result(outcome)
        if idle:
            self._on_idle(idle)
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
        """Stop forwarding: queued lines fail over (to their keys' next owner), then the channel closes."""
        self.closed = True
        await self._forwarder.stop()
        self._drop_stream()
        gone = Outcome.failed(f"streamer {self.holder} was removed")
        self._done(self._inflight, gone)
        while self.queue:
            self._done([self.queue.popleft()], gone)
        self._done([], WRITTEN)
        await self.channel.close()
