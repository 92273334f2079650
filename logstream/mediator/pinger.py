"""Health checks of streamers: numbered lease-granting pings, and plain pings that look for a removed one.

Only I/O and the check of each answer; the router applies what they found to the cluster state.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass

import grpc

from logstream._proto import logstream_pb2 as pb
from logstream._proto import logstream_pb2_grpc as pb_grpc
from logstream.mediator.config import RouterConfig
from logstream.mediator.link import StreamerLink
from logstream.mediator.membership import Holder
from logstream.node import tls
from logstream.node.wire import wrap_int32

logger = logging.getLogger(__name__)

# A removed streamer's address is pinged again with backoff up to this delay, for this long.
REDISCOVER_MAX_DELAY_S = 30.0
REDISCOVER_FOR_S = 3600.0


@dataclass(frozen=True)
class Answered:
    """Both pings of a health check answered in time. `sent`: a time no later than the streamer's
    answer to the second (its report of open files counts back from then)."""

    first: pb.PingResponse
    last: pb.PingResponse
    sent: float


@dataclass(frozen=True)
class PingFailed:
    """A health check that failed. `unanswered`: no answer came (an RPC error), which a streamer
    being admitted may be forgiven; a wrong answer or a cancelled call never is."""

    reason: str
    unanswered: bool = False


def _operands() -> tuple[int, int]:
    return random.randint(-(2**31), 2**31 - 1), random.randint(-(2**31), 2**31 - 1)


class Pinger:
    """Numbered pings (docs/cluster-protocol.md): the first of a check tests health and is
    answered in time; the second acks it, which starts the streamer's lease from the first one's
    receipt. `before_send(holder)` runs before each ping that may grant a lease."""

    def __init__(self, config: RouterConfig, mediator_id: str, clock: Callable[[], float],
                 before_send: Callable[[Holder], None]) -> None:
        self._config = config
        self._mediator_id = mediator_id
        self._clock = clock
        self._before_send = before_send
        self._lease_ms = int(config.lease_s * 1000)
        self._interval_ms = int(config.health_interval_s * 1000)
        # Numbered across all links of this mediator, not per link: a streamer that re-registers
        # gets a new link, and a late ping of its old link must not reuse a number the new link
        # acks (its later receipt would stretch the lease past the mediator's bound).
        self._seq = 0

    async def check(self, holder: Holder, link: StreamerLink) -> Answered | PingFailed:
        first = await self._once(holder, link)
        if isinstance(first, PingFailed):
            return first
        sent = self._clock()
        last = await self._once(holder, link)  # acks the first: the lease starts
        if isinstance(last, PingFailed):
            return last
        return Answered(first, last, sent)

    async def _once(self, holder: Holder, link: StreamerLink) -> pb.PingResponse | PingFailed:
        a, b = _operands()
        self._seq += 1
        seq = self._seq
        request = pb.PingRequest(a=a, b=b, streamerId=holder.id, lease_ms=self._lease_ms,
                                 mediator_id=self._mediator_id, interval_ms=self._interval_ms,
                                 seq=seq, acked_seq=link.acked_seq)
        self._before_send(holder)
        try:
            reply = await link.pinger.Ping(request, timeout=self._config.ping_timeout_s, metadata=link.metadata)
        except grpc.aio.AioRpcError as exc:
            return PingFailed(f"ping failed: {exc.code().name}: {exc.details()}", unanswered=True)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # this ping itself was cancelled (shutdown)
            # grpc cancels a call whose channel is closed (the link was closed by a failure or a
            # re-registration): a failed ping of that streamer, and nothing more.
            logger.info("ping to %s cancelled: its channel was closed", holder)
            return PingFailed("ping cancelled: its channel was closed")
        if reply.res != wrap_int32(a * b):
            return PingFailed(f"ping answered {reply.res}, not {wrap_int32(a * b)}")
        if reply.streamer_id and reply.streamer_id != holder.id:
            return PingFailed(f"another streamer ({reply.streamer_id!r}) answers at {holder.addr}")
        link.acked_seq = max(link.acked_seq, seq)  # answered before its deadline
        return reply  # type: ignore[no-any-return]


async def answers_again(holder: Holder, creds: grpc.ChannelCredentials | None,
                        metadata: tuple[tuple[str, str], ...], ping_timeout_s: float, first_delay_s: float,
                        clock: Callable[[], float]) -> bool:
    """Ping a removed streamer's address with backoff until it answers as itself (True), or for
    REDISCOVER_FOR_S (False). These pings carry no lease and no number: they grant nothing, and
    the fence on its keys still ends when the mediator expects."""
    channel = tls.secure_or_insecure_channel(holder.addr, creds)
    pinger = pb_grpc.PingerStub(channel)  # type: ignore[no-untyped-call]
    delay_s = first_delay_s
    give_up = clock() + REDISCOVER_FOR_S
    try:
        while clock() < give_up:
            await asyncio.sleep(delay_s)
            delay_s = min(delay_s * 2, REDISCOVER_MAX_DELAY_S)
            a, b = _operands()
            try:
                reply = await pinger.Ping(pb.PingRequest(a=a, b=b, streamerId=holder.id),
                                          timeout=ping_timeout_s, metadata=metadata)
            except grpc.aio.AioRpcError:
                continue
            if reply.res == wrap_int32(a * b) and reply.streamer_id in ("", holder.id):
                return True
            # else someone else answers there
        return False
    finally:
        await channel.close()
