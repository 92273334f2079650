"""Python clients for logstream: LogClient (asyncio) and SyncLogClient (the logging handler is in handler.py).

Delivery: a call returns only after the server acknowledged the write. UNAVAILABLE and
DEADLINE_EXCEEDED are retried with capped, jittered exponential backoff for a bounded number of
attempts or a bounded time (`RetryPolicy.total_s`), decided on the status code alone (a TLS mismatch
also reads UNAVAILABLE and costs its bounded tries); a retry after a lost reply may write a batch
twice (at-least-once, as the cluster). INVALID_ARGUMENT and every other status fail at once. Lines of one call are sent in order, one
batch at a time. Servers without LogBatch (the Go original) get one unary Log per line.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TypeVar

import grpc

from logstream._proto import logstream_pb2 as pb
from logstream._proto import logstream_pb2_grpc as pb_grpc
from logstream.node.channel import aio_channel, sync_channel
from logstream.node.tls import channel_credentials

logger = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_BATCH_LINES = 1000
DEFAULT_BATCH_BYTES = 1_000_000
DEFAULT_TIMEOUT_S = 10.0
RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})

Line = str | bytes


# ---------------------------------------------------------------- pure parts

@dataclass(frozen=True)
class RetryPolicy:
    """`attempts` tries in all; before try k+1 wait a random time in [0, min(max, first * 2**k)].

    With `total_s` the tries are bounded by time instead: retry until `total_s` after the first try
    (a wait that would end past it is not started), and `attempts` (when not None) still caps the count.
    """

    attempts: int | None = 5
    first_delay_s: float = 0.1
    max_delay_s: float = 2.0
    total_s: float | None = None

    def delay(self, retry: int, rand: Callable[[], float] = random.random) -> float:
        """The wait before retry number `retry` (0 for the first retry), "full jitter"."""
        return float(rand() * min(self.max_delay_s, self.first_delay_s * 2.0 ** min(retry, 32)))

    def delays(self, rand: Callable[[], float] = random.random) -> list[float]:
        """The waits between attempts of a count-bounded policy, len == attempts - 1."""
        if self.attempts is None:
            raise ValueError("a policy without an attempt count has no finite list of delays")
        return [self.delay(k, rand) for k in range(max(0, self.attempts - 1))]

    def next_delay(self, attempt: int, elapsed_s: float, rand: Callable[[], float] = random.random) -> float | None:
        """After try number `attempt` (from 1) failed retryably, `elapsed_s` after the first began:
        the wait before the next try, or None to give up."""
        if self.attempts is not None and attempt >= self.attempts:
            return None
        if self.total_s is None and self.attempts is None:
            return None  # neither bound: never retry forever by accident
        wait = self.delay(attempt - 1, rand)
        if self.total_s is not None and elapsed_s + wait >= self.total_s:
            return None
        return wait


NO_RETRY = RetryPolicy(attempts=1)


def is_retryable(code: grpc.StatusCode) -> bool:
    """Worth another try: the server or the network may recover. Decided on the code only (grpc's
    message wording is no contract)."""
    return code in RETRYABLE


def encode_line(line: Line) -> bytes:
    """One line as bytes ending in exactly one "\\n" (a trailing "\\n" given is kept, not doubled)."""
    data = line.encode("utf-8", "surrogateescape") if isinstance(line, str) else bytes(line)
    return data if data.endswith(b"\n") else data + b"\n"


@dataclass(frozen=True)
class Batch:
    """One LogBatch request's worth of one file's lines."""

    path: str
    filename: str
    data: bytes
    lines: int

    def request(self) -> pb.LogBatchRequest:
        return pb.LogBatchRequest(chunks=[pb.LogChunk(path=self.path, filename=self.filename, data=self.data)])


def batches(path: str, filename: str, lines: Iterable[Line], max_lines: int, max_bytes: int) -> Iterator[Batch]:
    """Group `lines` lazily into batches of at most `max_lines` lines and `max_bytes` bytes
    (a single longer line travels alone); works on endless iterators such as stdin."""
    if max_lines < 1 or max_bytes < 1:
        raise ValueError("batch limits must be positive")
    parts: list[bytes] = []
    size = 0
    for line in lines:
        data = encode_line(line)
        if parts and (len(parts) >= max_lines or size + len(data) > max_bytes):
            yield Batch(path, filename, b"".join(parts), len(parts))
            parts, size = [], 0
        parts.append(data)
        size += len(data)
    if parts:
        yield Batch(path, filename, b"".join(parts), len(parts))


def split_lines(data: bytes) -> list[str]:
    """A batch's lines for unary Log, without their newlines."""
    return [part.decode("utf-8", "replace") for part in data.split(b"\n")[:-1]] if data else []


class SendError(Exception):
    """A call that failed for good: the status code, the server's message, and what got through."""

    def __init__(self, target: str, code: grpc.StatusCode, details: str, attempts: int, sent_lines: int = 0) -> None:
        self.target = target
        self.code = code
        self.details = details
        self.attempts = attempts
        self.sent_lines = sent_lines
        tries = f" (after {attempts} attempts)" if attempts > 1 else ""
        super().__init__(f"{target}: {code.name}: {details or 'no details'}{tries}")


def _status(exc: grpc.RpcError) -> tuple[grpc.StatusCode, str]:
    code = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNKNOWN
    details = exc.details() if hasattr(exc, "details") else str(exc)
    return code or grpc.StatusCode.UNKNOWN, details or ""


# ---------------------------------------------------------------- asyncio client

class LogClient:
    """An asyncio client for a mediator or a streamer. Use `async with LogClient(...) as client`."""

    def __init__(self, target: str, ca: Path | None = None, crt: Path | None = None, pk: Path | None = None, *,
                 retry: RetryPolicy = RetryPolicy(), timeout_s: float = DEFAULT_TIMEOUT_S,
                 batch_lines: int = DEFAULT_BATCH_LINES, batch_bytes: int = DEFAULT_BATCH_BYTES,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self.target = target
        self.retry = retry
        self.timeout_s = timeout_s
        self.batch_lines = batch_lines
        self.batch_bytes = batch_bytes
        self._sleep = sleep
        self._channel = aio_channel(target, channel_credentials(ca, crt, pk))
        self._stub = pb_grpc.LogStreamerStub(self._channel)  # type: ignore[no-untyped-call]
        self._batch_supported = True

    async def _call(self, make_call: Callable[[], Awaitable[T]], sent_lines: int = 0) -> T:
        started = time.monotonic()
        attempt = 1
        while True:
            try:
                return await make_call()
            except grpc.aio.AioRpcError as exc:
                code, details = _status(exc)
                wait = self.retry.next_delay(attempt, time.monotonic() - started) if is_retryable(code) else None
                if wait is None:
                    raise SendError(self.target, code, details, attempt, sent_lines) from None
                logger.debug("%s: %s (%s); retrying in %.2fs", self.target, code.name, details, wait)
                await self._sleep(wait)
                attempt += 1

    async def log(self, path: str, filename: str, line: str) -> None:
        """Write one line with the unary Log RPC (the Go original's call)."""
        request = pb.LogRequest(path=path, filename=filename, line=line)
        await self._call(lambda: self._stub.Log(request, timeout=self.timeout_s))

    async def log_many(self, path: str, filename: str, lines: Iterable[Line]) -> int:
        """Write `lines` to one file in LogBatch requests, in order; returns the lines written."""
        sent = 0
        for batch in batches(path, filename, lines, self.batch_lines, self.batch_bytes):
            await self._send_batch(batch, sent)
            sent += batch.lines
        return sent

    async def _send_batch(self, batch: Batch, sent: int) -> None:
        if self._batch_supported:
            try:
                await self._call(lambda: self._stub.LogBatch(batch.request(), timeout=self.timeout_s), sent)
                return
            except SendError as exc:
                if exc.code != grpc.StatusCode.UNIMPLEMENTED:
                    raise
                logger.info("%s has no LogBatch; sending one line per call", self.target)
                self._batch_supported = False
        for index, line in enumerate(split_lines(batch.data)):
            request = pb.LogRequest(path=batch.path, filename=batch.filename, line=line)
            await self._call(lambda: self._stub.Log(request, timeout=self.timeout_s), sent + index)

    async def close(self) -> None:
        await self._channel.close()

    async def __aenter__(self) -> LogClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


# ---------------------------------------------------------------- blocking client

class SyncLogClient:
    """The blocking twin of LogClient, for scripts and threads without an event loop."""

    def __init__(self, target: str, ca: Path | None = None, crt: Path | None = None, pk: Path | None = None, *,
                 retry: RetryPolicy = RetryPolicy(), timeout_s: float = DEFAULT_TIMEOUT_S,
                 batch_lines: int = DEFAULT_BATCH_LINES, batch_bytes: int = DEFAULT_BATCH_BYTES,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.target = target
        self.retry = retry
        self.timeout_s = timeout_s
        self.batch_lines = batch_lines
        self.batch_bytes = batch_bytes
        self._sleep = sleep
        self._channel = sync_channel(target, channel_credentials(ca, crt, pk))
        self._stub = pb_grpc.LogStreamerStub(self._channel)  # type: ignore[no-untyped-call]
        self._batch_supported = True

    def _call(self, make_call: Callable[[], T], sent_lines: int = 0) -> T:
        started = time.monotonic()
        attempt = 1
        while True:
            try:
                return make_call()
            except grpc.RpcError as exc:
                code, details = _status(exc)
                wait = self.retry.next_delay(attempt, time.monotonic() - started) if is_retryable(code) else None
                if wait is None:
                    raise SendError(self.target, code, details, attempt, sent_lines) from None
                logger.debug("%s: %s (%s); retrying in %.2fs", self.target, code.name, details, wait)
                self._sleep(wait)
                attempt += 1

    def log(self, path: str, filename: str, line: str) -> None:
        request = pb.LogRequest(path=path, filename=filename, line=line)
        self._call(lambda: self._stub.Log(request, timeout=self.timeout_s))

    def log_many(self, path: str, filename: str, lines: Iterable[Line]) -> int:
        sent = 0
        for batch in batches(path, filename, lines, self.batch_lines, self.batch_bytes):
            self._send_batch(batch, sent)
            sent += batch.lines
        return sent

    def _send_batch(self, batch: Batch, sent: int) -> None:
        if self._batch_supported:
            try:
                self._call(lambda: self._stub.LogBatch(batch.request(), timeout=self.timeout_s), sent)
                return
            except SendError as exc:
                if exc.code != grpc.StatusCode.UNIMPLEMENTED:
                    raise
                logger.info("%s has no LogBatch; sending one line per call", self.target)
                self._batch_supported = False
        for index, line in enumerate(split_lines(batch.data)):
            request = pb.LogRequest(path=batch.path, filename=batch.filename, line=line)
            self._call(lambda: self._stub.Log(request, timeout=self.timeout_s), sent + index)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> SyncLogClient:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
