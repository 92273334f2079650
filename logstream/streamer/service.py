"""The streamer's gRPC servicers (LogStreamer, Pinger, StreamerControl) and the one error-to-status map."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import TYPE_CHECKING, NoReturn

import grpc

from logstream._proto import logstream_pb2 as pb
from logstream._proto import logstream_pb2_grpc as pb_grpc
from logstream.node.auth import Guard, Peer, forward_refusal
from logstream.node.peer import PeerReader
from logstream.node.ratelog import RateLimitedLog
from logstream.keys.chunks import Chunk
from logstream.keys.paths import FileKey
from logstream.streamer.errors import (
    BadRequest,
    FileLocked,
    OutOfDescriptors,
    RootUnusable,
    StorageError,
    StorageFull,
    WriterError,
)
from logstream.streamer.lease import Lease
from logstream.streamer.timings import StreamerTimings
from logstream.streamer.writer import Writer

from logstream.coord.etcd import EtcdUnavailable
from logstream.coord.gate import NotOwnerHere
from logstream.coord.ownership import NoLease

if TYPE_CHECKING:
    from logstream.coord.gate import EtcdGate

logger = logging.getLogger(__name__)

_OK = pb.LogResponse(res="Success")

# A request's chunks are validated and written SLICE_CHUNKS at a time; once a request has held the
# event loop for SLICE_BUDGET_S it yields, so pings and lease renewal are never queued behind it.
# (Measured with scripts/ping_under_load.py: a slice of 8 new files takes up to ~2 ms on ext4; a
# ping then waits tens of ms where it waited seconds behind a request of 8,000 new files.)
SLICE_CHUNKS = 8
SLICE_BUDGET_S = 0.002


class Refused(Exception):
    """A call this streamer refuses for a reason it logs once per `cause` (with a count)."""

    def __init__(self, message: str, cause: str) -> None:
        super().__init__(message)
        self.cause = cause


class Unavailable(Refused):
    """This streamer may not write now: no lease, or shutting down."""


class NotFromMediator(Refused):
    """A write to a clustered streamer that its current mediator did not forward."""


class NotClusterPeer(Refused):
    """A control call (lease-granting ping, Release) from a caller that is not a node of the cluster."""


class NotOwned(Refused):
    """etcd mode: a key another streamer owns in etcd; the owner goes in the trailing metadata
    (coord/gate.py OWNER_HEADER), so that a mediator retries there. Nothing was written."""

    def __init__(self, message: str, cause: str, trailing_metadata: tuple[tuple[str, str], ...]) -> None:
        super().__init__(message, cause)
        self.trailing_metadata = trailing_metadata


# The one place where domain errors become status codes.
_STATUS: tuple[tuple[type[Exception], grpc.StatusCode], ...] = (
    (BadRequest, grpc.StatusCode.INVALID_ARGUMENT),
    (FileLocked, grpc.StatusCode.ABORTED),
    (StorageFull, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (OutOfDescriptors, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (RootUnusable, grpc.StatusCode.FAILED_PRECONDITION),
    (Unavailable, grpc.StatusCode.UNAVAILABLE),
    (NotFromMediator, grpc.StatusCode.FAILED_PRECONDITION),
    (NotOwned, grpc.StatusCode.FAILED_PRECONDITION),
    (NotClusterPeer, grpc.StatusCode.PERMISSION_DENIED),
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


async def abort_with(context: grpc.aio.ServicerContext, exc: Exception,
                     refusals: RateLimitedLog | None = None) -> NoReturn:
    """End the call with the status `exc` maps to; write failures and lock conflicts are logged too,
    refusals (no lease, not from the mediator, not a cluster node) once per cause with a count."""
    code, message = status_for(exc)
    if isinstance(exc, Refused) and refusals is not None:
        refusals.note(f"{code.name} {exc.cause}", message)
    else:
        level = _LOG_LEVEL.get(code, logging.DEBUG)
        if logger.isEnabledFor(level):
            logger.log(level, "%s: %s", code.name, message)
    await context.abort(code, message, getattr(exc, "trailing_metadata", ()))
    raise AssertionError("unreachable: context.abort raises")


class StreamerCore:
    """What the servicers share: the writer, the lease, who may steer it, and whether it is closing."""

    def __init__(self, writer: Writer, lease: Lease, node_id: str = "", guard: Guard = Guard(),
                 mediator_addr: str | None = None, timings: StreamerTimings | None = None,
                 etcd: EtcdGate | None = None) -> None:
        self.writer = writer
        self.timings = StreamerTimings() if timings is None else timings
        self.lease = lease
        # etcd mode: keys are owned through this streamer's etcd lease (coord/), not a mediator's.
        self.etcd = etcd
        self.node_id = node_id
        self.guard = guard
        self.mediator_addr = mediator_addr
        self.peer = PeerReader()
        self.refusals = RateLimitedLog(logger, "refusing")
        self.closing = False
        # Held by a write request from its first slice to its last, and by Release: requests are
        # written one at a time, as when each ran to completion, and a Release never lands between
        # two slices of a request writing the keys it releases.
        self.write_turn = asyncio.Lock()
        self._lease_timer: asyncio.TimerHandle | None = None
        self._leased = False
        # Keys open under the previous mediator when a new one first pinged (reported in ping
        # answers until the new mediator grants a lease), and when the lease held then ends.
        self.held: list[FileKey] = []
        self.held_lease_until = float("-inf")

    def caller(self, context: grpc.aio.ServicerContext) -> Peer | None:
        """Who sent a write call, when it matters (a clustered streamer); read once per call."""
        return self.peer(context) if self.lease.required or self.etcd is not None else None

    def gate(self, caller: Peer | None) -> None:
        """Raise unless this streamer may write what `caller` sent, now: the one place writes are
        admitted. A clustered streamer writes only its current mediator's forwards (in legacy mode,
        under a mediator that grants no leases, anyone's, as the original did)."""
        if self.closing:
            raise Unavailable("streamer is shutting down", "shutting down")
        if self.etcd is not None:
            # Any node of the cluster may forward (every mediator is a router); whether this
            # streamer owns the keys is `admit_keys` and `check_keys`, per key.
            # PERMISSION_DENIED, not FAILED_PRECONDITION: that code means "another streamer owns it".
            problem = self.guard.refusal(caller or Peer())
            if problem is not None:
                raise NotClusterPeer(f"this streamer writes only what a node of cluster {self.etcd.session.cluster} "
                                     f"forwards: {problem}", "writes from outside the cluster")
            return
        if self.lease.required and not self.lease.legacy:
            problem = forward_refusal(self.guard, caller or Peer(), self.lease.mediator_id, self.lease.link)
            if problem is not None:
                raise NotFromMediator(
                    f"this streamer writes only what its mediator forwards ({problem}): send to the mediator "
                    f"at {self.mediator_addr}", "writes not forwarded by the current mediator")
        if not self.lease.may_write():
            raise Unavailable("no lease: this streamer is not (or no longer) leased by a mediator", "no lease")

    async def admit_keys(self, keys: Iterable[tuple[str, str]]) -> None:
        """etcd mode: hold every key in etcd (claiming those not held yet) or refuse: NotOwned when
        another streamer owns one, Unavailable when the lease cannot be proven or a claim's outcome
        is unknown. Nothing to do in the other modes."""
        if self.etcd is None:
            return
        try:
            await self.etcd.admit(keys)
        except NotOwnerHere as exc:
            raise NotOwned(str(exc), "keys owned by another streamer", exc.trailing_metadata()) from None
        except (NoLease, EtcdUnavailable) as exc:
            raise Unavailable(f"no write now: {exc}", "etcd lease not proven") from None

    def check_keys(self, chunks: Sequence[Chunk]) -> None:
        """etcd mode, right before writing `chunks` (no await in between): every key still held and
        the lease still provable, else Unavailable."""
        if self.etcd is None:
            return
        try:
            self.etcd.check(chunk.key for chunk in chunks)
        except NoLease as exc:
            raise Unavailable(f"no write now: {exc}", "etcd lease not proven") from None

    def admit_control(self, context: grpc.aio.ServicerContext, what: str) -> Peer:
        """The caller, if it is a node of this cluster (token, node certificate); else NotClusterPeer."""
        peer = self.peer(context)
        problem = self.guard.refusal(peer)
        if problem is not None:
            raise NotClusterPeer(f"{what} must come from a node of the cluster: {problem}",
                                 f"{what} from outside the cluster")
        return peer

    def mode(self) -> str:
        """standalone (no -mediator), cluster (leased by a mediator), legacy (a mediator without
        leases), etcd (keys owned through an etcd lease)."""
        if self.etcd is not None:
            return "etcd"
        if not self.lease.required:
            return "standalone"
        return "legacy" if self.lease.legacy else "cluster"

    def stats(self, with_files: bool = True) -> pb.StreamerStats:
        """The counters; `with_files` lists every open key too (the Stats call's answer, not a
        ping's: at tens of thousands of open files that list would cost every ping milliseconds)."""
        stats = self.writer.stats
        return pb.StreamerStats(
            id=self.node_id,
            lines=stats.lines,
            bytes=stats.bytes,
            open_files=self.writer.open_files,
            rotations=stats.rotations,
            files=[pb.FileKey(path=path, filename=name) for path, name in self.writer.open_keys()]
            if with_files else [],
            mode=self.mode(),
        )

    def open_report(self) -> pb.OpenFiles:
        """How recently the least recently written open file was written: every file written
        before that is closed (the mediator forgets idle keys on this report). O(1): the writer
        keeps its files least recently written first, the order it evicts them in."""
        count, idle_s = self.writer.oldest_open_idle_s()
        # Rounded up: the report may only overstate how long the oldest open file has been idle.
        return pb.OpenFiles(count=count, oldest_write_age_ms=math.ceil(idle_s * 1000))

    def on_ping(self, request: pb.PingRequest, in_time: bool = True, link: int = 0) -> None:
        """Renew the lease (docs/cluster-protocol.md); a ping handled after its deadline
        (`in_time` False) is never counted as the start of a lease."""
        if not in_time and request.lease_ms > 0:
            logger.warning("ping %d from mediator %s handled after its deadline: not counted for a lease",
                           request.seq, request.mediator_id or "?")
        effect = self.lease.on_ping(request.lease_ms, request.mediator_id, request.interval_ms,
                                    request.seq, request.acked_seq, in_time, link)
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
        started = time.perf_counter()
        core = self._core
        try:
            caller = core.caller(context)
            core.gate(caller)
            if core.etcd is None:
                self._writer.append(request.path, request.filename, request.line.encode() or b"\n")
            else:
                chunk = self._writer.chunk(request.path, request.filename, request.line.encode() or b"\n")
                if chunk is not None:
                    await core.admit_keys((chunk.key,))
                    core.gate(caller)  # it may have begun shutting down meanwhile
                    core.check_keys((chunk,))  # no await between this check and the write
                    self._writer.write_chunks((chunk,))
        except (WriterError, Refused) as exc:
            await abort_with(context, exc, self._core.refusals)
        self._core.timings.observe_write(time.perf_counter() - started)
        return _OK

    async def _batch(self, request: pb.LogBatchRequest, caller: Peer | None) -> pb.LogBatchResponse:
        """Validate every chunk, then write them in order, in slices that yield the event loop.

        Each slice is admitted by the gate afresh: when the lease lapses (or the mediator changes)
        between two slices, the rest is refused with UNAVAILABLE while the earlier slices stay
        written (the caller then knows nothing of the outcome; see docs/cluster-protocol.md)."""
        core = self._core
        started = time.perf_counter()
        core.gate(caller)  # refused at once, not after waiting for the turn
        pace = _Pace()
        chunks: list[Chunk] | None = None
        if core.etcd is not None:
            # Claims wait for etcd: outside the turn, so that other requests' writes go on meanwhile.
            chunks = await self._validate(request, pace)
            await core.admit_keys(dict.fromkeys(chunk.key for chunk in chunks))
        async with core.write_turn:
            if chunks is None:
                chunks = await self._validate(request, pace)
            writer = self._writer
            lines = written = 0
            try:
                if len(chunks) > SLICE_CHUNKS and writer.fits(chunks):
                    # Every file opened and locked before the first byte is written, as for a
                    # request written in one call: a locked or bad target leaves all unwritten.
                    for start in range(0, len(chunks), SLICE_CHUNKS):
                        core.gate(caller)
                        core.check_keys(chunks[start:start + SLICE_CHUNKS])
                        writer.hold(chunks[start:start + SLICE_CHUNKS])
                        await pace.step()
                for start in range(0, len(chunks), SLICE_CHUNKS):
                    core.gate(caller)
                    core.check_keys(chunks[start:start + SLICE_CHUNKS])  # no await before the write
                    part_lines, part_bytes = writer.write_chunks(chunks[start:start + SLICE_CHUNKS])
                    lines += part_lines
                    written += part_bytes
                    await pace.step()
            finally:
                writer.let_go()
        # Only written requests: a refusal's time says nothing about the disk.
        core.timings.observe_write(time.perf_counter() - started)
        return pb.LogBatchResponse(lines=lines, bytes=written)

    async def _validate(self, request: pb.LogBatchRequest, pace: _Pace) -> list[Chunk]:
        """Every chunk validated (BadRequest for the first bad one), empty ones left out."""
        source = request.chunks
        chunks: list[Chunk] = []
        chunk = self._writer.chunk
        for start in range(0, len(source), SLICE_CHUNKS):
            # Nothing is written until all is valid, so yielding here changes nothing on disk.
            for ch in source[start:start + SLICE_CHUNKS]:
                valid = chunk(ch.path, ch.filename, ch.data)
                if valid is not None:
                    chunks.append(valid)
            await pace.step()
        return chunks

    async def LogBatch(self, request: pb.LogBatchRequest, context: grpc.aio.ServicerContext) -> pb.LogBatchResponse:
        try:
            return await self._batch(request, self._core.caller(context))
        except (WriterError, Refused) as exc:
            await abort_with(context, exc, self._core.refusals)

    async def LogStream(
        self, request_iterator: AsyncIterator[pb.LogBatchRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.LogBatchResponse]:
        caller = self._core.caller(context)  # one caller for the whole stream
        async for request in request_iterator:
            try:
                reply = await self._batch(request, caller)
            except (WriterError, Refused) as exc:
                await abort_with(context, exc, self._core.refusals)
            yield reply


class _Pace:
    """Yields the event loop once the work since the last yield took SLICE_BUDGET_S."""

    __slots__ = ("_since",)

    def __init__(self) -> None:
        self._since = time.monotonic()

    async def step(self) -> None:
        if time.monotonic() - self._since >= SLICE_BUDGET_S:
            await asyncio.sleep(0)
            self._since = time.monotonic()
