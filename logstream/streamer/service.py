"""The streamer's gRPC servicers (LogStreamer, Pinger, StreamerControl) and the one error-to-status map."""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import AsyncIterator
from typing import NoReturn

import grpc

from .._proto import logstream_pb2 as pb
from .._proto import logstream_pb2_grpc as pb_grpc
from .lease import Lease
from .writer import BadRequest, FileLocked, StorageError, StorageFull, Writer, WriterError

logger = logging.getLogger(__name__)

_OK = pb.LogResponse(res="Success")


class Unavailable(Exception):
    """This streamer may not write now: no lease, or shutting down."""


# The one place where domain errors become status codes.
_STATUS: tuple[tuple[type[Exception], grpc.StatusCode], ...] = (
    (BadRequest, grpc.StatusCode.INVALID_ARGUMENT),
    (FileLocked, grpc.StatusCode.ABORTED),
    (StorageFull, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (Unavailable, grpc.StatusCode.UNAVAILABLE),
    (StorageError, grpc.StatusCode.INTERNAL),
)


def status_for(exc: Exception) -> tuple[grpc.StatusCode, str]:
    for kind, code in _STATUS:
        if isinstance(exc, kind):
            return code, str(exc)
    return grpc.StatusCode.INTERNAL, f"{type(exc).__name__}: {exc}"


_LOG_LEVEL = {
    grpc.StatusCode.INTERNAL: logging.ERROR,
    grpc.StatusCode.RESOURCE_EXHAUSTED: logging.ERROR,
    grpc.StatusCode.ABORTED: logging.WARNING,
}


async def abort_with(context: grpc.aio.ServicerContext, exc: Exception) -> NoReturn:
    """End the call with the status `exc` maps to; write failures and lock conflicts are logged too."""
    code, message = status_for(exc)
    level = _LOG_LEVEL.get(code, logging.DEBUG)
    if logger.isEnabledFor(level):
        logger.log(level, "%s: %s", code.name, message)
    await context.abort(code, message)
    raise AssertionError("unreachable: context.abort raises")


def wrap_int32(value: int) -> int:
    """`value` wrapped to a signed 32-bit integer, as Go's int32 arithmetic wraps."""
    return (value + 2**31) % 2**32 - 2**31


class StreamerCore:
    """What the servicers share: the writer, the lease, and whether the streamer is closing."""

    def __init__(self, writer: Writer, lease: Lease, node_id: str = "") -> None:
        self.writer = writer
        self.lease = lease
        self.node_id = node_id
        self.closing = False
        self._lease_timer: asyncio.TimerHandle | None = None
        self._leased = False
        # Keys open under the previous mediator when a new one first pinged (reported in ping
        # answers until the new mediator grants a lease), and when the lease held then ends.
        self.held: list[tuple[str, str]] = []
        self.held_lease_until = float("-inf")

    def gate(self) -> None:
        """Raise Unavailable unless this streamer may write now."""
        if self.closing:
            raise Unavailable("streamer is shutting down")
        if not self.lease.may_write():
            raise Unavailable("no lease: this streamer is not (or no longer) leased by a mediator")

    def stats(self) -> pb.StreamerStats:
        stats = self.writer.stats
        return pb.StreamerStats(
            id=self.node_id,
            lines=stats.lines,
            bytes=stats.bytes,
            open_files=self.writer.open_files,
            rotations=stats.rotations,
            files=[pb.FileKey(path=path, filename=name) for path, name in self.writer.open_keys()],
        )

    def on_ping(self, request: pb.PingRequest, in_time: bool = True) -> None:
        """Renew the lease (docs/cluster-protocol.md); a ping handled after its deadline
        (`in_time` False) is never counted as the start of a lease."""
        if not in_time and request.lease_ms > 0:
            logger.warning("ping %d from mediator %s handled after its deadline: not counted for a lease",
                           request.seq, request.mediator_id or "?")
        effect = self.lease.on_ping(request.lease_ms, request.mediator_id, request.interval_ms,
                                    request.seq, request.acked_seq, in_time)
        if effect.release_all:
            # Captured before the release: no other streamer can be writing these keys, so the
            # new mediator may keep them here rather than wait out its start-up grace.
            self.held = self.writer.open_keys() if self.lease.remaining_s() > 0 else []
            self.held_lease_until = self.lease.until
            closed = self.writer.close_all()
            logger.warning("mediator changed from %s to %s: released every key (%d files closed)",
                           effect.previous_mediator, request.mediator_id, closed)
        if effect.granted:
            self.held = []
            if not self._leased:
                self._leased = True
                logger.info("lease granted by mediator %s for %dms", request.mediator_id or "?",
                            request.lease_ms)
            self._schedule_lease_check()

    def _schedule_lease_check(self) -> None:
        if self._lease_timer is not None:
            self._lease_timer.cancel()
        loop = asyncio.get_running_loop()
        self._lease_timer = loop.call_later(max(0.0, self.lease.remaining_s()) + 0.001, self._lease_check)

    def _lease_check(self) -> None:
        self._lease_timer = None
        if self.lease.may_write():
            self._schedule_lease_check()
            return
        self._leased = False
        closed = self.writer.close_all()
        logger.warning("lease lapsed: no ping from the mediator in time; closed and unlocked %d files", closed)

    def cancel_timers(self) -> None:
        if self._lease_timer is not None:
            self._lease_timer.cancel()
            self._lease_timer = None


class LogStreamerServicer(pb_grpc.LogStreamerServicer):
    """Writes lines: Log (one line, compat), LogBatch and LogStream (chunks of lines per file)."""

    def __init__(self, core: StreamerCore) -> None:
        self._core = core
        self._writer = core.writer

    async def Log(self, request: pb.LogRequest, context: grpc.aio.ServicerContext) -> pb.LogResponse:
        try:
            self._core.gate()
            self._writer.append(request.path, request.filename, request.line.encode() or b"\n")
        except (WriterError, Unavailable) as exc:
            await abort_with(context, exc)
        return _OK

    def _batch(self, request: pb.LogBatchRequest) -> pb.LogBatchResponse:
        self._core.gate()
        chunk = self._writer.chunk
        chunks = [c for c in (chunk(ch.path, ch.filename, ch.data) for ch in request.chunks) if c is not None]
        lines, written = self._writer.write_chunks(chunks)
        return pb.LogBatchResponse(lines=lines, bytes=written)

    async def LogBatch(self, request: pb.LogBatchRequest, context: grpc.aio.ServicerContext) -> pb.LogBatchResponse:
        try:
            return self._batch(request)
        except (WriterError, Unavailable) as exc:
            await abort_with(context, exc)

    async def LogStream(
        self, request_iterator: AsyncIterator[pb.LogBatchRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.LogBatchResponse]:
        async for request in request_iterator:
            try:
                reply = self._batch(request)
            except (WriterError, Unavailable) as exc:
                await abort_with(context, exc)
            yield reply


class PingerServicer(pb_grpc.PingerServicer):
    """Health check and lease renewal: always answers a*b wrapped to int32."""

    def __init__(self, core: StreamerCore) -> None:
        self._core = core

    async def Ping(self, request: pb.PingRequest, context: grpc.aio.ServicerContext) -> pb.PingResponse:
        remaining = context.time_remaining()
        self._core.on_ping(request, in_time=remaining is None or remaining > 0)
        core = self._core
        return pb.PingResponse(res=wrap_int32(request.a * request.b), streamer_id=core.node_id,
                               stats=core.stats(), held=[pb.FileKey(path=p, filename=f) for p, f in core.held],
                               held_lease_ms=math.ceil(core.lease.left_s(core.held_lease_until) * 1000))


class StreamerControlServicer(pb_grpc.StreamerControlServicer):
    """Cluster control from the mediator: Release keys, report Stats."""

    def __init__(self, core: StreamerCore) -> None:
        self._core = core

    async def Release(self, request: pb.ReleaseRequest, context: grpc.aio.ServicerContext) -> pb.ReleaseResponse:
        keys = [(key.path, key.filename) for key in request.keys]
        released = self._core.writer.release(keys)
        logger.info("released %d keys for mediator %s (%d files were open)",
                    len(keys), request.mediator_id or "?", released)
        return pb.ReleaseResponse(released=released)

    async def Stats(self, request: pb.StatsRequest, context: grpc.aio.ServicerContext) -> pb.StreamerStats:
        return self._core.stats()
