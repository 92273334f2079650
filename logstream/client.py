"""Python clients for logstream: LogClient (asyncio) and SyncLogClient (the logging handler is in handler.py).

Delivery: a call returns only after the server acknowledged the write. UNAVAILABLE and
DEADLINE_EXCEEDED are retried with capped, jittered exponential backoff for a bounded number of
attempts or a bounded time (`RetryPolicy.total_s`), decided on the status code alone (a TLS mismatch
also reads UNAVAILABLE and costs its bounded tries); a retry after a lost reply may write a batch
twice (at-least-once, as the cluster). INVALID_ARGUMENT and every other status fail at once. Lines of one call are sent in order, one
batch at a time. Servers without LogBatch (the Go original) get one unary Log per line.

Several mediators: the target may be a comma list (`a:8000,b:8000`) or a sequence; calls go to one
of them until a retryable status, then move to the next (without waiting while some target of
this call is untried; a full round waits as above). Each target's channel balances over every
address its name resolves to (`round_robin`), so a DNS name of several mediators spreads calls and
skips the ones that are down. Own failover rather than one `ipv4:a,b` channel: it keeps host names
(TLS checks the name each mediator's certificate holds), works with DNS names, and moves on a
status (a mediator shutting down answers UNAVAILABLE on a connection that is still up).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TypeVar

import grpc

from logstream._proto import logstream_pb2 as pb
from logstream._proto import logstream_pb2_grpc as pb_grpc
from logstream.node.channel import aio_channel, sync_channel, with_options
from logstream.node.net import CHANNEL_OPTIONS
from logstream.node.tls import channel_credentials

logger = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_BATCH_LINES = 1000
DEFAULT_BATCH_BYTES = 1_000_000
DEFAULT_TIMEOUT_S = 10.0
RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})

Line = str | bytes
Targets = str | Sequence[str]

# Every address a target's name resolves to is used, and one that is down is skipped.
CLIENT_CHANNEL_OPTIONS = with_options(CHANNEL_OPTIONS, lb_policy_name="round_robin")


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


def parse_targets(targets: Targets) -> list[str]:
    """The targets of a comma list or a sequence, in order; ValueError when there is none. A grpc
    address list (`ipv4:a,b`) is one target: grpc resolves its commas itself."""
    if isinstance(targets, str):
        if targets.startswith(("ipv4:", "ipv6:")):
            return [targets]
        targets = targets.split(",")
    found = [target.strip() for target in targets if target.strip()]
    if not found:
        raise ValueError("no target given")
    return found


@dataclass
class Rotation:
    """Which target a call goes to: the same one while it answers, the next after a retryable
    failure. `moved()` tells whether the next attempt goes to a target not yet tried in this call
    (then it needs no backoff)."""

    count: int
    current: int = 0

    def start(self) -> int:
        """A call begins: the number of targets it may still try without waiting."""
        return self.count - 1

    def fail(self, index: int) -> None:
        """A call to target `index` failed: move past it, unless another call already did (calls
        in flight together on a mediator that died move the client on once, not once each)."""
        if index == self.current:
            self.current = (index + 1) % self.count


class Tries:
    """One call's tries over the targets: which target each goes to, and after a retryable failure
    the wait before the next try: 0 for a target not yet tried in this call, else the policy's
    backoff (bounded by its count of rounds and its total time); None to give up."""

    def __init__(self, retry: RetryPolicy, rotation: Rotation) -> None:
        self.retry, self.rotation = retry, rotation
        self.started = time.monotonic()
        self.untried = rotation.start()
        self.attempt = 0  # tries so far
        self.rounds = 0  # rounds of tries (one per target): what the policy counts

    def next(self) -> int:
        """The target (its index) of the next try."""
        self.attempt += 1
        return self.rotation.current

    def after(self, error: grpc.RpcError, index: int, targets: Sequence[str], sent_lines: int) -> float:
        """A try at `targets[index]` failed with `error`: the wait before the next try, or SendError
        (a status not worth retrying, or the policy's bounds reached)."""
        code, details = _status(error)
        wait = self.failed(index) if is_retryable(code) else None
        if wait is None:
            raise SendError(targets[index], code, details, self.attempt, sent_lines) from None
        logger.debug("%s: %s (%s); next try in %.2fs at %s", targets[index], code.name, details, wait,
                     targets[self.rotation.current])
        return wait

    def failed(self, index: int) -> float | None:
        self.rotation.fail(index)
        if self.untried > 0:
            self.untried -= 1
            return 0.0
        self.rounds += 1
        wait = self.retry.next_delay(self.rounds, time.monotonic() - self.started)
        if wait is not None:
            self.untried = self.rotation.start()
        return wait


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

    def __init__(self, target: Targets, ca: Path | None = None, crt: Path | None = None, pk: Path | None = None, *,
                 retry: RetryPolicy = RetryPolicy(), timeout_s: float = DEFAULT_TIMEOUT_S,
                 batch_lines: int = DEFAULT_BATCH_LINES, batch_bytes: int = DEFAULT_BATCH_BYTES,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self.targets = parse_targets(target)
        self.target = ",".join(self.targets)
        self.retry = retry
        self.timeout_s = timeout_s
        self.batch_lines = batch_lines
        self.batch_bytes = batch_bytes
        self._sleep = sleep
        creds = channel_credentials(ca, crt, pk)
        self._channels = [aio_channel(t, creds, CLIENT_CHANNEL_OPTIONS) for t in self.targets]
        self._stubs = [pb_grpc.LogStreamerStub(c) for c in self._channels]  # type: ignore[no-untyped-call]
        self._rotation = Rotation(len(self.targets))
        self._batch_supported = True

    @property
    def _stub(self) -> pb_grpc.LogStreamerStub:
        return self._stubs[self._rotation.current]

    async def _call(self, make_call: Callable[[], Awaitable[T]], sent_lines: int = 0) -> T:
        tries = Tries(self.retry, self._rotation)
        while True:
            index = tries.next()
            try:
                return await make_call()
            except grpc.aio.AioRpcError as exc:
                wait = tries.after(exc, index, self.targets, sent_lines)
                if wait:
                    await self._sleep(wait)

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
        for channel in self._channels:
            await channel.close()

    async def __aenter__(self) -> LogClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


# ---------------------------------------------------------------- blocking client

class SyncLogClient:
    """The blocking twin of LogClient, for scripts and threads without an event loop."""

    def __init__(self, target: Targets, ca: Path | None = None, crt: Path | None = None, pk: Path | None = None, *,
                 retry: RetryPolicy = RetryPolicy(), timeout_s: float = DEFAULT_TIMEOUT_S,
                 batch_lines: int = DEFAULT_BATCH_LINES, batch_bytes: int = DEFAULT_BATCH_BYTES,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.targets = parse_targets(target)
        self.target = ",".join(self.targets)
        self.retry = retry
        self.timeout_s = timeout_s
        self.batch_lines = batch_lines
        self.batch_bytes = batch_bytes
        self._sleep = sleep
        creds = channel_credentials(ca, crt, pk)
        self._channels = [sync_channel(t, creds, CLIENT_CHANNEL_OPTIONS) for t in self.targets]
        self._stubs = [pb_grpc.LogStreamerStub(c) for c in self._channels]  # type: ignore[no-untyped-call]
        self._rotation = Rotation(len(self.targets))
        self._batch_supported = True

    @property
    def _stub(self) -> pb_grpc.LogStreamerStub:
        return self._stubs[self._rotation.current]

    def _call(self, make_call: Callable[[], T], sent_lines: int = 0) -> T:
        tries = Tries(self.retry, self._rotation)
        while True:
            index = tries.next()
            try:
                return make_call()
            except grpc.RpcError as exc:
                wait = tries.after(exc, index, self.targets, sent_lines)
                if wait:
                    self._sleep(wait)

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
        for channel in self._channels:
            channel.close()

    def __enter__(self) -> SyncLogClient:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
