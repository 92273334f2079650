"""Registration with the mediator: Register with retries and capped backoff, again when unpinged."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Iterator

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from logstream.node import tls
from logstream.node.auth import Metadata
from logstream._proto import logstream_pb2 as pb
from logstream._proto import logstream_pb2_grpc as pb_grpc
from logstream.streamer.lease import Lease

logger = logging.getLogger(__name__)

REGISTER_TIMEOUT_S = 5.0
# A stopping streamer waits no longer than this for each step of its leave: a mediator that does not
# answer (gone, or an older one) only means its keys wait for the lease as after a failure.
LEAVE_TIMEOUT_S = 1.0
BACKOFF_FIRST_S = 0.2
BACKOFF_MAX_S = 5.0
CHECK_EVERY_S = 0.25


def backoff_delays(first_s: float = BACKOFF_FIRST_S, cap_s: float = BACKOFF_MAX_S) -> Iterator[float]:
    """first, 2*first, 4*first, ... capped, each with up to 20% jitter."""
    delay = first_s
    while True:
        yield delay * (1 + random.random() * 0.2)
        delay = min(cap_s, delay * 2)


async def register_once(stub: pb_grpc.RegisterStub, streamer_id: str, addr: str, metadata: Metadata = ()) -> None:
    """One Register call; raises RuntimeError (or grpc's error) unless the mediator says "Success"."""
    reply = await stub.Register(pb.RegisterRequest(id=streamer_id, addr=addr), timeout=REGISTER_TIMEOUT_S,
                                metadata=metadata)
    if reply.res != "Success":
        raise RuntimeError(f"mediator answered {reply.res!r}")


async def register_until_success(stub: pb_grpc.RegisterStub, mediator: str, streamer_id: str, addr: str,
                                 metadata: Metadata = (), cap_s: float = BACKOFF_MAX_S) -> None:
    attempts = 0
    for delay in backoff_delays(cap_s=cap_s):
        attempts += 1
        try:
            await register_once(stub, streamer_id, addr, metadata)
            logger.info("registered with mediator %s as %s (%s)%s", mediator, streamer_id, addr,
                        f" after {attempts} attempts" if attempts > 1 else "")
            return
        except (grpc.aio.AioRpcError, RuntimeError) as exc:
            reason = f"{exc.code().name}: {exc.details()}" if isinstance(exc, grpc.aio.AioRpcError) else str(exc)
            # A mediator still starting (as under `logstream run`) fails the first tries: say so
            # quietly once, then warn on the fifth failure and every tenth after it.
            level = logging.INFO if attempts == 1 else logging.WARNING if attempts % 10 == 5 else logging.DEBUG
            logger.log(level, "registration with mediator %s failed (attempt %d): %s; retrying in %.1fs",
                       mediator, attempts, reason, delay)
        await asyncio.sleep(delay)


async def mediator_gone(health: health_pb2_grpc.HealthStub) -> None:
    """Return when the mediator goes away: its health Watch stream ends or breaks (a stop, a
    crash). A restarted mediator is then registered with at once, not after a missed ping. A
    stream that never delivered an answer (the Go original has no health service) tells nothing."""
    watching = False
    try:
        async for _reply in health.Watch(health_pb2.HealthCheckRequest(service="")):
            watching = True  # NOT_SERVING (a task restarting, a graceful stop) is not gone yet
    except grpc.aio.AioRpcError:
        pass
    if not watching:  # no health service, or it refuses us: only missed pings will tell
        await asyncio.Event().wait()


async def keep_registered(mediator: str, creds: grpc.ChannelCredentials | None, streamer_id: str, addr: str,
                          lease: Lease, metadata: Metadata = (),
                          on_registered: Callable[[grpc.aio.Channel], Awaitable[None]] | None = None) -> None:
    """Register (the calls carry `metadata`: the cluster token), then register again whenever the
    mediator missed a ping (1.2 intervals unpinged) or its connection ended; retries back off to at
    most 0.5 s while the mediator was seen in the last minute. `on_registered(channel)` runs after
    each success.

    Runs until cancelled.
    """
    channel = tls.secure_or_insecure_channel(mediator, creds)
    try:
        stub = pb_grpc.RegisterStub(channel)  # type: ignore[no-untyped-call]
        health = health_pb2_grpc.HealthStub(channel)
        while True:
            await register_until_success(stub, mediator, streamer_id, addr, metadata,
                                         lease.register_backoff_cap_s(BACKOFF_MAX_S))
            lease.registered()
            if on_registered is not None:
                await on_registered(channel)
            # Owned by this task: cancelled and awaited below, whatever happens.
            gone = asyncio.create_task(mediator_gone(health), name="mediator-watch")
            try:
                while not lease.should_reregister() and not gone.done():
                    await asyncio.sleep(CHECK_EVERY_S)
            finally:
                gone.cancel()
                await asyncio.wait({gone})
            if gone.cancelled() or gone.exception() is not None:
                logger.warning("not pinged by mediator %s for %.1fs: registering again", mediator,
                               lease.unpinged_s())
            else:
                logger.warning("connection to mediator %s ended: registering again", mediator)
    finally:
        await channel.close()


async def leave(mediator: str, creds: grpc.ChannelCredentials | None, streamer_id: str, addr: str,
                metadata: Metadata, files_closed: bool) -> None:
    """One step of leaving the mediator on purpose (LeaveRequest): before stopping (`files_closed`
    False: route nothing more here), and after every file was flushed and closed (True: the keys
    are free). Best effort: any failure leaves the keys to the mediator's lease rules."""
    channel = tls.secure_or_insecure_channel(mediator, creds)
    try:
        stub = pb_grpc.RegisterStub(channel)  # type: ignore[no-untyped-call]
        reply = await stub.Leave(pb.LeaveRequest(id=streamer_id, addr=addr, files_closed=files_closed),
                                 timeout=LEAVE_TIMEOUT_S, metadata=metadata)
        logger.debug("left mediator %s (%s): %d keys", mediator, "files closed" if files_closed else "stopping",
                     reply.keys)
    except grpc.aio.AioRpcError as exc:
        logger.info("could not tell mediator %s that this streamer %s: %s (its keys wait for the lease)",
                    mediator, "closed its files" if files_closed else "is stopping", exc.code().name)
    finally:
        await channel.close()
