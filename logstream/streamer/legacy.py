"""Whether our mediator is the Go original (it grants no leases): asked once per registration.

The signal is definite and cannot be forged by a ping: the original's mediator serves no
`ClusterStatus`, so `Status` answers UNIMPLEMENTED. Under such a mediator the streamer runs in
legacy mode: file locks are the only guard, and it takes writes from anyone, as the original did.
"""

from __future__ import annotations

import logging

import grpc

from logstream._proto import logstream_pb2 as pb
from logstream._proto import logstream_pb2_grpc as pb_grpc
from logstream.node.auth import Metadata
from logstream.streamer.lease import Lease

logger = logging.getLogger(__name__)

PROBE_TIMEOUT_S = 5.0


def legacy_from_status(code: grpc.StatusCode | None) -> bool | None:
    """What a Status call's outcome says (None: it succeeded): True for the original (UNIMPLEMENTED),
    False for ours, None when it says nothing (a timeout, a refused connection)."""
    if code is None:
        return False
    if code == grpc.StatusCode.UNIMPLEMENTED:
        return True
    return None


async def probe(channel: grpc.aio.Channel, metadata: Metadata = ()) -> bool | None:
    """Ask the mediator behind `channel`; see `legacy_from_status`."""
    stub = pb_grpc.ClusterStatusStub(channel)  # type: ignore[no-untyped-call]
    try:
        # cached: the answer does not matter, only that there is one; spare the mediator asking
        # every streamer for counters each time one registers.
        await stub.Status(pb.StatusRequest(cached=True), timeout=PROBE_TIMEOUT_S, metadata=metadata)
    except grpc.aio.AioRpcError as exc:
        return legacy_from_status(exc.code())
    return legacy_from_status(None)


def apply(lease: Lease, legacy: bool | None, mediator: str) -> None:
    """Enter or leave legacy mode as the probe says (an unknown answer changes nothing); says so once."""
    if legacy is None or legacy == lease.legacy:
        return
    lease.legacy = legacy
    if legacy:
        logger.warning("mediator %s grants no leases (the original's protocol): legacy mode; this streamer "
                       "takes writes from anyone and only its file locks keep two writers apart", mediator)
    else:
        logger.warning("mediator %s grants leases: leaving legacy mode; writes only from it, under its lease",
                       mediator)
