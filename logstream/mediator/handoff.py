"""A hand-off's I/O: wait until the old owner has no line of the keys in flight, then ask it to release them."""

from __future__ import annotations

import asyncio

import grpc

from logstream._proto import logstream_pb2 as pb
from logstream.mediator.config import RouterConfig
from logstream.mediator.link import StreamerLink
from logstream.mediator.ownership import Handoff


async def release(link: StreamerLink | None, plan: Handoff, mediator_id: str, config: RouterConfig) -> str | None:
    """None once the source released `plan.keys` (nothing of them can be written there any
    more); else why not (its lease must then lapse before the keys move)."""
    if link is None:
        return "streamer gone"
    try:
        async with asyncio.timeout(config.forward_timeout_s + config.ping_timeout_s):
            await link.drained(plan.keys)
            await link.control.Release(
                pb.ReleaseRequest(keys=[pb.FileKey(path=k.path, filename=k.filename) for k in plan.keys],
                                  mediator_id=mediator_id),
                timeout=config.ping_timeout_s, metadata=link.metadata,
            )
    except grpc.aio.AioRpcError as exc:
        if exc.code() == grpc.StatusCode.UNIMPLEMENTED:
            # An older streamer without leases writes only what it is sent, and nothing of these
            # keys is in flight any more: moving them is safe.
            return None
        return f"release failed: {exc.code().name}: {exc.details()}"
    except TimeoutError:
        return "release timed out"
    return None
