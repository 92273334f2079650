"""Python clients for logstream: LogClient (asyncio), SyncLogClient, and LogstreamHandler for `logging`.

Delivery: a call returns only after the server acknowledged the write. UNAVAILABLE and
DEADLINE_EXCEEDED are retried with capped, jittered exponential backoff for a bounded number of
attempts or a bounded time (`RetryPolicy.total_s`), decided on the status code alone (a TLS mismatch
also reads UNAVAILABLE and costs its bounded tries); a retry after a lost reply may write a batch
twice (at-least-once, as the cluster). INVALID_ARGUMENT and every other status fail at once. Lines of one call are sent in order, one
batch at a time. Servers without LogBatch (the Go original) get one unary Log per line.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import random
import sys
import threading
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


# ---------------------------------------------------------------- logging.Handler

class LogstreamHandler(logging.Handler):
    """Ships formatted records to one logstream file from a background thread.

    `emit` never blocks on the network: records wait in a buffer of at most `capacity` lines; when
    the buffer is full (the cluster is down or slower than the app) new records are dropped and
    counted in `dropped`, and the loss is reported once per outage on stderr. The thread sends up
    to `batch_lines` records per call, at least every `flush_interval_s`, retrying as the clients
    do; a batch that still fails is dropped (counted). `flush()` waits for the buffer to drain (up
    to `flush_timeout_s`); `close()` flushes, then stops the thread; records left after
    `close_timeout_s` are dropped. Records that grpc itself logs from the sending thread are
    ignored, so attaching the handler to the root logger cannot feed back on itself.
    """

    def __init__(self, target: str, path: str, filename: str, ca: Path | None = None, crt: Path | None = None,
                 pk: Path | None = None, *, level: int = logging.NOTSET, capacity: int = 10_000,
                 batch_lines: int = 500, flush_interval_s: float = 1.0, flush_timeout_s: float = 5.0,
                 close_timeout_s: float = 5.0, retry: RetryPolicy = RetryPolicy(attempts=3),
                 timeout_s: float = 5.0, client: SyncLogClient | None = None) -> None:
        super().__init__(level)
        if capacity < 1 or batch_lines < 1:
            raise ValueError("capacity and batch_lines must be positive")
        self.path, self.filename = path, filename
        self.capacity, self.batch_lines = capacity, batch_lines
        self.flush_interval_s, self.flush_timeout_s, self.close_timeout_s = flush_interval_s, flush_timeout_s, close_timeout_s
        self.client = client or SyncLogClient(target, ca, crt, pk, retry=retry, timeout_s=timeout_s,
                                              batch_lines=batch_lines)
        self.sent = 0      # records acknowledged by the cluster
        self.dropped = 0   # records lost: buffer full, a batch that failed for good, or left at close
        self._buffer: collections.deque[str] = collections.deque()
        self._in_flight = 0
        self._cond = threading.Condition()
        self._closing = False
        self._flush_wanted = False
        self._outage = False
        self._thread = threading.Thread(target=self._run, name=f"logstream-handler-{target}", daemon=True)
        self._thread.start()

    def emit(self, record: logging.LogRecord) -> None:
        if threading.get_ident() == self._thread.ident:
            return  # grpc logging about our own send: never feed it back
        try:
            text = self.format(record)
        except Exception:
            self.handleError(record)
            return
        with self._cond:
            if self._closing or len(self._buffer) >= self.capacity:
                self._drop(1, "buffer full" if not self._closing else "handler closed")
                return
            self._buffer.append(text)
            if len(self._buffer) >= self.batch_lines:
                self._cond.notify_all()

    def _drop(self, count: int, why: str) -> None:
        """Count lost records; report the first loss of an outage (callers hold `_cond`)."""
        self.dropped += count
        if not self._outage:
            self._outage = True
            print(f"logstream handler: dropping records for {self.client.target} ({why}); "
                  "see LogstreamHandler.dropped", file=sys.stderr)

    def _take(self) -> list[str] | None:
        """The next batch, waiting up to flush_interval_s for it to fill; None when closed and empty."""
        with self._cond:
            self._cond.wait_for(lambda: len(self._buffer) >= self.batch_lines or self._closing or self._flush_wanted,
                                timeout=self.flush_interval_s)
            if not self._buffer:
                self._flush_wanted = False
                self._cond.notify_all()
                return None if self._closing else []
            count = min(len(self._buffer), self.batch_lines)
            batch = [self._buffer.popleft() for _ in range(count)]
            self._in_flight = count
            return batch

    def _run(self) -> None:
        while (batch := self._take()) is not None:
            if batch:
                self._ship(batch)

    def _ship(self, batch: list[str]) -> None:
        try:
            self.client.log_many(self.path, self.filename, batch)
        except Exception as exc:  # SendError, or a bug: either way the app must not see it
            with self._cond:
                self._in_flight = 0
                self._drop(len(batch), str(exc))
                self._cond.notify_all()
            return
        with self._cond:
            self.sent += len(batch)
            self._in_flight = 0
            self._outage = False
            self._cond.notify_all()

    def pending(self) -> int:
        """Records buffered or being sent."""
        with self._cond:
            return len(self._buffer) + self._in_flight

    def flush(self, timeout_s: float | None = None) -> None:
        """Wait until every buffered record was sent or dropped (at most `timeout_s`)."""
        with self._cond:
            if not self._thread.is_alive():
                return
            self._flush_wanted = True
            self._cond.notify_all()
            self._cond.wait_for(lambda: not self._buffer and not self._in_flight,
                                timeout=self.flush_timeout_s if timeout_s is None else timeout_s)

    def close(self) -> None:
        with self._cond:
            already = self._closing
            self._closing = True
            self._cond.notify_all()
        if not already:
            self._thread.join(self.close_timeout_s)
            if self._thread.is_alive():
                # Still sending to a dead cluster: closing the channel cancels the call.
                self.client.close()
                self._thread.join(1.0)
            with self._cond:
                if self._buffer:
                    self._drop(len(self._buffer), "left at close")
                    self._buffer.clear()
            self.client.close()
        super().close()
