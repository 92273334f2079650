"""The mediator's answer to ClusterStatus/Status: its streamers, their keys, its counters."""

from __future__ import annotations

from collections.abc import Iterable

from logstream._proto import logstream_pb2 as pb
from logstream.mediator.counters import Counters
from logstream.mediator.membership import Holder, State
from logstream.mediator.state import ClusterState


def status_response(state: ClusterState, counters: Counters, removed: Iterable[tuple[Holder, float]],
                    mediator_id: str, now: float) -> pb.StatusResponse:
    """Members by id (with their keys and last reported counters), then removed streamers that
    have not come back."""
    streamers = []
    for member in state.members():
        keys = state.keys_of(member.holder)
        streamers.append(pb.StreamerStatus(
            id=member.holder.id, addr=member.holder.addr, alive=member.state is State.LIVE,
            files=[pb.FileKey(path=k.path, filename=k.filename) for k in keys],
            lines=member.lines, bytes=member.bytes,
            last_seen_s=-1.0 if member.last_ok is None else now - member.last_ok,
        ))
    for holder, _when in sorted(removed):
        if not state.knows_id(holder.id):
            streamers.append(pb.StreamerStatus(id=holder.id, addr=holder.addr, alive=False, last_seen_s=-1.0))
    values = counters.as_map()
    values["streamers_live"] = len(state.live())
    values["keys_owned"], values["keys_waiting"] = state.key_counts()
    return pb.StatusResponse(mediator_id=mediator_id, streamers=streamers, counters=values)
