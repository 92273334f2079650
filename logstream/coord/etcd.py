"""The etcd v3 client of etcd mode: leases, keep-alives, transactions, listing and watching a prefix.

It speaks etcd's v3 gRPC API through the stubs that the `aetcd` package generated from etcd's
protos, on a grpc.aio channel of our own: aetcd's `Client` connects to one plaintext endpoint only,
while etcd mode needs several endpoints (a 3-member etcd survives one member's loss only if its
clients move on) and TLS (the cluster's TLS settings apply to the etcd hop too), and our keep-alive
must note the send time of each request (coord/protocol.py). etcd 3.4's API is what it uses: the
CREATE and LEASE compare targets, LeaseGrant/LeaseKeepAlive/LeaseRevoke, Range, Watch.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from aetcd import rpc

from logstream.node.address import channel_target
from logstream.coord.protocol import Delete, Get, Put, Record, Target, Txn, TxnResult
from logstream.node.channel import aio_channel

logger = logging.getLogger(__name__)

CALL_TIMEOUT_S = 2.0
# The channel notices a dead etcd member on its own too (a stopped process answers no TCP), and
# then moves to the next endpoint (pick_first over the list).
CHANNEL_OPTIONS: tuple[tuple[str, int | str], ...] = (
    ("grpc.keepalive_time_ms", 2000),
    ("grpc.keepalive_timeout_ms", 1000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
)


class EtcdUnavailable(Exception):
    """etcd did not answer in time or could not be reached: the outcome of the call is unknown."""


class LeaseGone(Exception):
    """etcd has no such lease (it expired or was revoked): nothing attached to it exists any more."""


def prefix_end(prefix: bytes) -> bytes:
    """The range end that selects every key starting with `prefix` (etcd's convention)."""
    end = bytearray(prefix)
    while end:
        if end[-1] < 0xFF:
            end[-1] += 1
            return bytes(end)
        end.pop()
    return b"\0"


def _unavailable(exc: grpc.aio.AioRpcError, what: str) -> Exception:
    if exc.code() == grpc.StatusCode.NOT_FOUND:  # etcd's code for "requested lease not found"
        return LeaseGone(what)
    return EtcdUnavailable(f"{what}: {exc.code().name}: {exc.details()}")


def _record(kv: Any) -> Record:
    return Record(kv.value.decode(), int(kv.lease), int(kv.create_revision))


def _compare(compare: Any) -> Any:
    if compare.target is Target.CREATE:
        return rpc.Compare(key=compare.key.encode(), target=rpc.Compare.CREATE, result=rpc.Compare.EQUAL,
                           create_revision=compare.value)
    return rpc.Compare(key=compare.key.encode(), target=rpc.Compare.LEASE, result=rpc.Compare.EQUAL,
                       lease=compare.value)


def _op(op: Put | Delete | Get) -> Any:
    if isinstance(op, Put):
        return rpc.RequestOp(request_put=rpc.PutRequest(key=op.key.encode(), value=op.value.encode(), lease=op.lease))
    if isinstance(op, Delete):
        return rpc.RequestOp(request_delete_range=rpc.DeleteRangeRequest(key=op.key.encode()))
    return rpc.RequestOp(request_range=rpc.RangeRequest(key=op.key.encode()))


@dataclass(frozen=True)
class Granted:
    lease: int
    ttl_s: int
    sent_at: float  # local monotonic time the grant request was sent


@dataclass(frozen=True)
class Snapshot:
    revision: int
    records: dict[str, Record]


@dataclass(frozen=True)
class Event:
    """A key written (`record`) or deleted (`record` None) at `revision`."""

    key: str
    record: Record | None
    revision: int


class KeepAlive:
    """One LeaseKeepAlive stream for one lease, used one request at a time: each answer is the
    answer to the request just sent, so its TTL counts from that request's send time. Any failure
    or timeout ends the stream (a late answer can then never be taken for a newer request's)."""

    def __init__(self, stub: Any, lease: int, clock: Callable[[], float]) -> None:
        self._stub = stub
        self._lease = lease
        self._clock = clock
        self._call: Any = None

    async def once(self, timeout_s: float) -> tuple[float, int]:
        """(send time, TTL etcd answered); TTL <= 0 means the lease is gone."""
        if self._call is None:
            self._call = self._stub.LeaseKeepAlive()
        call = self._call
        sent_at = self._clock()  # taken before the request leaves: only ever earlier than the truth
        try:
            async with asyncio.timeout(timeout_s):
                await call.write(rpc.LeaseKeepAliveRequest(ID=self._lease))
                reply = await call.read()
        except TimeoutError:
            self.close()
            raise EtcdUnavailable(f"keep-alive of lease {self._lease:x}: no answer in {timeout_s:.1f}s") from None
        except grpc.aio.AioRpcError as exc:
            self.close()
            raise _unavailable(exc, f"keep-alive of lease {self._lease:x}") from None
        except asyncio.InvalidStateError:  # grpc's "RPC already finished": the stream broke before
            self.close()
            raise EtcdUnavailable(f"keep-alive of lease {self._lease:x}: stream ended") from None
        if reply is grpc.aio.EOF:
            self.close()
            raise EtcdUnavailable(f"keep-alive of lease {self._lease:x}: stream ended")
        return sent_at, int(reply.TTL)

    def close(self) -> None:
        if self._call is not None:
            self._call.cancel()
            self._call = None


class Etcd:
    """A connection to an etcd cluster (any of `endpoints`)."""

    def __init__(self, endpoints: Sequence[str], creds: grpc.ChannelCredentials | None = None,
                 timeout_s: float = CALL_TIMEOUT_S, clock: Callable[[], float] = time.monotonic) -> None:
        target = channel_target(endpoints)
        self._channel = aio_channel(target, creds, CHANNEL_OPTIONS)
        self._kv = rpc.KVStub(self._channel)
        self._leases = rpc.LeaseStub(self._channel)
        self._watch = rpc.WatchStub(self._channel)
        self.timeout_s = timeout_s
        self.clock = clock

    async def close(self) -> None:
        await self._channel.close()

    async def grant(self, ttl_s: int) -> Granted:
        sent_at = self.clock()
        try:
            reply = await self._leases.LeaseGrant(rpc.LeaseGrantRequest(TTL=ttl_s), timeout=self.timeout_s)
        except grpc.aio.AioRpcError as exc:
            raise _unavailable(exc, "lease grant") from None
        if reply.error:
            raise EtcdUnavailable(f"lease grant refused: {reply.error}")
        return Granted(int(reply.ID), int(reply.TTL), sent_at)

    async def revoke(self, lease: int) -> None:
        try:
            await self._leases.LeaseRevoke(rpc.LeaseRevokeRequest(ID=lease), timeout=self.timeout_s)
        except grpc.aio.AioRpcError as exc:
            raise _unavailable(exc, f"revoke of lease {lease:x}") from None

    def keep_alive(self, lease: int) -> KeepAlive:
        return KeepAlive(self._leases, lease, self.clock)

    async def txn(self, txn: Txn) -> TxnResult:
        """Run `txn`; LeaseGone when a put names a lease etcd no longer has (nothing was done)."""
        request = rpc.TxnRequest(compare=[_compare(c) for c in txn.compare], success=[_op(o) for o in txn.success],
                                 failure=[_op(o) for o in txn.failure])
        try:
            reply = await self._kv.Txn(request, timeout=self.timeout_s)
        except grpc.aio.AioRpcError as exc:
            raise _unavailable(exc, "transaction") from None
        found = None
        for response in reply.responses:
            if response.WhichOneof("response") == "response_range" and response.response_range.kvs:
                found = _record(response.response_range.kvs[0])
        return TxnResult(bool(reply.succeeded), found, int(reply.header.revision))

    async def put(self, key: str, value: str, lease: int = 0) -> int:
        """Write `key` (on `lease`, if not 0); the revision. LeaseGone if etcd has no such lease."""
        return (await self.txn(Txn((), (Put(key, value, lease),)))).revision

    async def get_prefix(self, prefix: str) -> Snapshot:
        start = prefix.encode()
        try:
            reply = await self._kv.Range(rpc.RangeRequest(key=start, range_end=prefix_end(start)),
                                         timeout=self.timeout_s)
        except grpc.aio.AioRpcError as exc:
            raise _unavailable(exc, f"listing {prefix}") from None
        return Snapshot(int(reply.header.revision), {kv.key.decode(): _record(kv) for kv in reply.kvs})

    async def watch_prefix(self, prefix: str, after_revision: int) -> AsyncIterator[list[Event]]:
        """Batches of changes under `prefix` after `after_revision`, until the stream fails
        (EtcdUnavailable: list again and watch from the listing's revision)."""
        start = prefix.encode()
        call = self._watch.Watch()
        try:
            create = rpc.WatchCreateRequest(key=start, range_end=prefix_end(start), start_revision=after_revision + 1)
            await call.write(rpc.WatchRequest(create_request=create))
            while True:
                reply = await call.read()
                if reply is grpc.aio.EOF:
                    raise EtcdUnavailable(f"watch of {prefix} ended")
                if reply.canceled or reply.compact_revision:
                    raise EtcdUnavailable(f"watch of {prefix} cancelled (compacted at {reply.compact_revision})")
                events = [Event(ev.kv.key.decode(), _record(ev.kv) if ev.type == 0 else None, int(ev.kv.mod_revision))
                          for ev in reply.events]
                if events:
                    yield events
        except grpc.aio.AioRpcError as exc:
            raise _unavailable(exc, f"watch of {prefix}") from None
        except asyncio.InvalidStateError:  # grpc's "RPC already finished"
            raise EtcdUnavailable(f"watch of {prefix} ended") from None
        finally:
            call.cancel()
