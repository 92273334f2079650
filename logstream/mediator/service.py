"""The mediator's gRPC servicers (Register, LogStreamer, ClusterStatus) and its input validation."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from typing import Protocol

import grpc

from logstream._proto import logstream_pb2 as pb
from logstream._proto import logstream_pb2_grpc as pb_grpc
from logstream.node.address import AddressError, parse_host_port
from logstream.node.auth import Guard
from logstream.node.peer import PeerReader
from logstream.node.ratelog import RateLimitedLog
from logstream.keys.chunks import Chunk, LineTooLong, whole_lines
from logstream.keys.paths import BadTarget, FileKey, validate_target
from logstream.mediator.counters import Counters
from logstream.mediator.router import RouteError, Router
from logstream.mediator.membership import Holder


class Routes(Protocol):
    """What the write and status services need of a router: the embedded `Router` or etcd mode's
    `EtcdRouter` (etcd_router.py)."""

    counters: Counters
    closing: bool

    async def write(self, chunks: list[Chunk], time_left_s: float | None = None) -> None: ...

    async def refresh_stats(self, timeout_s: float = 1.0) -> None: ...

    def status(self) -> pb.StatusResponse: ...

logger = logging.getLogger(__name__)

_SUCCESS_LOG = pb.LogResponse(res="Success")
_SUCCESS_REGISTER = pb.RegisterResponse(res="Success")
# Pipelined LogStream requests handled at once per stream (each reply still goes out in order).
STREAM_WINDOW = 8


class BadInput(ValueError):
    """A request refused before any forwarding; the message names the problem."""


def check_address(addr: str) -> str:
    try:
        parse_host_port(addr)  # the one host:port rule (IPv6 in brackets)
    except AddressError:
        raise BadInput(f"addr must be host:port with a port in 1..65535, got {addr!r}") from None
    return addr


class Validator:
    """Mediator-side checks, the same rules as the streamer's (its pure `validate_target`)."""

    def __init__(self, max_line: int, cache_size: int = 65_536) -> None:
        self.max_line = max_line
        # Names already checked, oldest first; bounded (the oldest leave first). Validating a name
        # costs ~10x a lookup, so a cache smaller than the keys in use (it used to be cleared
        # whole at 4,096) made every request of a 10,000-key load validate every name again.
        self._keys: OrderedDict[tuple[str, str], FileKey] = OrderedDict()
        self._cache_size = cache_size

    def key(self, path: str, filename: str) -> FileKey:
        cached = self._keys.get((path, filename))
        if cached is not None:
            return cached
        try:
            # The streamer's normal form ("a//./b" is "a/b"): one file, one key, one owner.
            key = validate_target(path, filename).key
        except BadTarget as exc:
            raise BadInput(str(exc)) from None
        if len(self._keys) >= self._cache_size:
            self._keys.popitem(last=False)
        self._keys[(path, filename)] = key
        return key

    def chunk(self, path: str, filename: str, data: bytes) -> Chunk:
        """The streamer's chunk rule (keys.chunks). An empty chunk is forwarded all the same: only the
        owner can tell whether its path passes through a symlink in its root (an empty chunk is
        refused there as any other would be)."""
        try:
            return whole_lines(self.key(path, filename), data, self.max_line)
        except LineTooLong as exc:
            raise BadInput(f"a line for {exc.key} is longer than the limit of {exc.max_line} bytes") from None

    def batch(self, request: pb.LogBatchRequest) -> list[Chunk]:
        chunks: list[Chunk] = []
        for index, chunk in enumerate(request.chunks):
            try:
                checked = self.chunk(chunk.path, chunk.filename, chunk.data)
            except BadInput as exc:
                if len(request.chunks) == 1:  # a client's single chunk: the position says nothing
                    raise
                raise BadInput(f"{exc} (chunk {index + 1} of {len(request.chunks)} in the request)") from None
            chunks.append(checked)
        return chunks


class LogStreamerServicer(pb_grpc.LogStreamerServicer):
    """Routes every line to its key's owner and answers only after the owner wrote it."""

    def __init__(self, router: Routes, validator: Validator) -> None:
        self._router = router
        self._validator = validator
        self._counters = router.counters

    async def _write(self, rpc: str, chunks: list[Chunk], context: grpc.aio.ServicerContext) -> tuple[int, int]:
        counters = self._counters
        counters.requests[rpc] += 1
        started = time.perf_counter()
        # The caller's deadline bounds the wait too: it gets a definite status, not a timeout.
        await self._router.write(chunks, context.time_remaining())
        lines = sum(chunk.lines for chunk in chunks)
        nbytes = sum(len(chunk.data) for chunk in chunks)
        counters.lines += lines
        counters.bytes += nbytes
        counters.observe(time.perf_counter() - started)
        return lines, nbytes

    async def _abort(self, context: grpc.aio.ServicerContext, exc: Exception) -> None:
        if isinstance(exc, BadInput):
            self._counters.invalid += 1
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        assert isinstance(exc, RouteError)
        if exc.code == grpc.StatusCode.UNAVAILABLE:
            self._counters.unavailable += 1
        elif exc.code == grpc.StatusCode.INVALID_ARGUMENT:
            self._counters.invalid += 1
        await context.abort(exc.code, str(exc))

    async def Log(self, request: pb.LogRequest, context: grpc.aio.ServicerContext) -> pb.LogResponse:
        try:
            chunk = self._validator.chunk(request.path, request.filename, request.line.encode() or b"\n")
            await self._write("Log", [chunk], context)
        except (BadInput, RouteError) as exc:
            await self._abort(context, exc)
        return _SUCCESS_LOG

    async def LogBatch(self, request: pb.LogBatchRequest, context: grpc.aio.ServicerContext) -> pb.LogBatchResponse:
        try:
            lines, nbytes = await self._write("LogBatch", self._validator.batch(request), context)
        except (BadInput, RouteError) as exc:
            await self._abort(context, exc)
            raise  # unreachable: abort raises
        return pb.LogBatchResponse(lines=lines, bytes=nbytes)

    async def LogStream(
        self, request_iterator: AsyncIterator[pb.LogBatchRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.LogBatchResponse]:
        """Pipelined: up to STREAM_WINDOW requests in progress, replies in request order; the first
        failure ends the stream with its status (later requests of the stream are not written).

        The call owns every task it starts: however it ends (done, a failure, cancelled by its
        client, closed by grpc), its `finally` cancels what is still running and awaits all of them,
        so no write or reader outlives the call and no task's exception goes unretrieved."""
        # In order: a write in progress, the exception that ended the reading, None at the end.
        window: asyncio.Queue[asyncio.Task[tuple[int, int]] | Exception | None] = asyncio.Queue(STREAM_WINDOW)
        writes: set[asyncio.Task[tuple[int, int]]] = set()  # started and not yet answered

        async def read() -> None:
            try:
                async for request in request_iterator:
                    chunks = self._validator.batch(request)
                    task = asyncio.create_task(self._write("LogStream", chunks, context))
                    writes.add(task)  # owned before the (possibly waiting) put: a cancel here leaks nothing
                    await window.put(task)
            except Exception as exc:  # bad input, an undecodable request (aborted), a failed read
                await window.put(exc)
                return
            await window.put(None)

        reader = asyncio.create_task(read())
        try:
            while (item := await window.get()) is not None:
                try:
                    if isinstance(item, Exception):
                        raise item
                    lines, nbytes = await item
                    writes.discard(item)  # answered, so done
                except (BadInput, RouteError) as exc:
                    await self._abort(context, exc)
                yield pb.LogBatchResponse(lines=lines, bytes=nbytes)
            await reader
        finally:
            reader.cancel()
            for task in writes:
                task.cancel()
            # Awaited, not just cancelled: the tasks end here, and their outcomes are retrieved.
            await asyncio.gather(reader, *writes, return_exceptions=True)


class RegisterServicer(pb_grpc.RegisterServicer):
    def __init__(self, router: Router, guard: Guard = Guard()) -> None:
        self._router = router
        self._guard = guard
        self._peer = PeerReader()
        self._refusals = RateLimitedLog(logger, "refusing")

    async def Register(self, request: pb.RegisterRequest, context: grpc.aio.ServicerContext) -> pb.RegisterResponse:
        # Only a node of the cluster may join it (a node certificate, the cluster token).
        problem = self._guard.refusal(self._peer(context))
        if problem is not None:
            self._refusals.note("Register from outside the cluster", f"{request.id!r} at {request.addr!r}: {problem}")
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, f"Register must come from a node of the cluster: "
                                f"{problem}")
        try:
            addr = check_address(request.addr.strip())
        except BadInput as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        if self._router.closing:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "mediator is shutting down")
        self._router.register(request.id.strip() or addr, addr)
        return _SUCCESS_REGISTER

    async def Leave(self, request: pb.LeaveRequest, context: grpc.aio.ServicerContext) -> pb.LeaveResponse:
        """A streamer stopping on purpose (see LeaveRequest): first nothing more is routed to it and
        its forwards end, so its server stops at once; then, its files closed, its keys are free."""
        problem = self._guard.refusal(self._peer(context))
        if problem is not None:
            self._refusals.note("Leave from outside the cluster", f"{request.id!r} at {request.addr!r}: {problem}")
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, f"Leave must come from a node of the cluster: "
                                f"{problem}")
        holder = Holder(request.id.strip() or request.addr.strip(), request.addr.strip())
        keys = await self._router.leave(holder, request.files_closed)
        if keys is None:
            return pb.LeaveResponse(keys=0)
        if request.files_closed:
            logger.info("streamer %s left: %d keys free for the other streamers now", holder, len(keys))
        else:
            logger.info("streamer %s leaves (stopping): its %d keys wait for its files to close; %d live",
                        holder, len(keys), len(self._router.state.live()))
        return pb.LeaveResponse(keys=len(keys))


class ClusterStatusServicer(pb_grpc.ClusterStatusServicer):
    def __init__(self, router: Routes) -> None:
        self._router = router

    async def Status(self, request: pb.StatusRequest, context: grpc.aio.ServicerContext) -> pb.StatusResponse:
        if not request.cached:
            await self._router.refresh_stats()
        return self._router.status()
