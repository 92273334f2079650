"""The streamer's cluster-facing services: Pinger (health checks and lease renewal from the
mediator) and StreamerControl (Release keys, Stats); the write path is in `service.py`."""

from __future__ import annotations

import logging
import math

import grpc

from logstream._proto import logstream_pb2 as pb
from logstream._proto import logstream_pb2_grpc as pb_grpc
from logstream.node.wire import wrap_int32
from logstream.streamer.errors import BadRequest
from logstream.streamer.service import NotClusterPeer, StreamerCore, abort_with
from logstream.streamer.writer import Writer

logger = logging.getLogger(__name__)


class PingerServicer(pb_grpc.PingerServicer):
    """Health check and lease renewal: always answers a*b wrapped to int32."""

    def __init__(self, core: StreamerCore) -> None:
        self._core = core

    async def Ping(self, request: pb.PingRequest, context: grpc.aio.ServicerContext) -> pb.PingResponse:
        try:
            peer = self._core.admit_control(context, "a lease-granting ping")
        except NotClusterPeer as exc:
            if request.lease_ms > 0:
                await abort_with(context, exc, self._core.refusals)
            # A plain compat ping from anyone is answered, but grants and releases nothing. Under the
            # original's mediator (legacy mode), whose pings cannot carry our token, it still shows
            # the mediator is there, so the streamer does not register again and again.
            if self._core.lease.legacy:
                self._core.lease.on_ping(0, "", 0)
            return pb.PingResponse(res=wrap_int32(request.a * request.b), streamer_id=self._core.node_id)
        remaining = context.time_remaining()
        # A ping for another id at this address (a registration the mediator is checking) names a
        # link that is not this streamer's: it must not end the current one.
        link = peer.link if request.streamerId in ("", self._core.node_id) else 0
        self._core.on_ping(request, in_time=remaining is None or remaining > 0, link=link)
        core = self._core
        return pb.PingResponse(res=wrap_int32(request.a * request.b), streamer_id=core.node_id,
                               stats=core.stats(with_files=False),
                               held=[pb.FileKey(path=p, filename=f) for p, f in core.held],
                               held_lease_ms=math.ceil(core.lease.left_s(core.held_lease_until) * 1000),
                               open=core.open_report())


class StreamerControlServicer(pb_grpc.StreamerControlServicer):
    """Cluster control from the mediator: Release keys, report Stats."""

    def __init__(self, core: StreamerCore) -> None:
        self._core = core

    async def Release(self, request: pb.ReleaseRequest, context: grpc.aio.ServicerContext) -> pb.ReleaseResponse:
        try:
            self._core.admit_control(context, "Release")
        except NotClusterPeer as exc:
            await abort_with(context, exc, self._core.refusals)
        keys = [(key.path, key.filename) for key in request.keys]
        core = self._core
        async with core.write_turn:  # not between two slices of a request
            released = core.writer.release(keys)
            if core.etcd is not None:  # after the last write and the file's close: the guarded deletes
                await core.etcd.release(_valid_keys(core.writer, keys))
        logger.info("released %d keys for mediator %s (%d files were open)",
                    len(keys), request.mediator_id or "?", released)
        return pb.ReleaseResponse(released=released)

    async def Stats(self, request: pb.StatsRequest, context: grpc.aio.ServicerContext) -> pb.StreamerStats:
        return self._core.stats()


def _valid_keys(writer: Writer, keys: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The normalised keys of `keys` that name a valid file (an invalid one was never held)."""
    valid: list[tuple[str, str]] = []
    for path, filename in keys:
        try:
            key = writer.target(path, filename).key
        except BadRequest:
            continue
        valid.append((key.path, key.filename))
    return valid
