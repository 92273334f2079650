"""Ask a mediator for its view of the cluster (`ClusterStatus.Status`): the JSON shape and the table."""

from __future__ import annotations

from typing import Any

import grpc

from logstream._proto import logstream_pb2 as pb
from logstream._proto import logstream_pb2_grpc as pb_grpc
from logstream.node.channel import sync_channel
from logstream.node.status_schema import SCHEMA_VERSION, snake_case


class StatusError(Exception):
    """The mediator could not be asked (unreachable, TLS mismatch, timeout)."""


def fetch_status(target: str, creds: grpc.ChannelCredentials | None = None, timeout_s: float = 5.0,
                 name: str | None = None) -> dict[str, Any]:
    """The mediator's `ClusterStatus.Status` as one `status_schema.MEDIATOR` object (`error` null);
    StatusError when the mediator cannot be asked. `name` is its node name in a cluster file."""
    channel = sync_channel(target, creds)
    try:
        stub = pb_grpc.ClusterStatusStub(channel)  # type: ignore[no-untyped-call]
        reply: pb.StatusResponse = stub.Status(pb.StatusRequest(), timeout=timeout_s)
    except grpc.RpcError as exc:
        code = exc.code() if isinstance(exc, grpc.Call) else None
        details = exc.details() if isinstance(exc, grpc.Call) else str(exc)
        if code == grpc.StatusCode.UNIMPLEMENTED and serves_streamer_control(channel, timeout_s):
            raise StatusError(f"{target} is a streamer, not a mediator (it has no ClusterStatus service); give "
                              "-mediator the address of its mediator (the streamer's -mediator flag)") from None
        raise StatusError(f"cannot get status from mediator {target}: "
                          f"{code.name if code else 'error'}: {details}") from None
    finally:
        channel.close()
    return {
        **unreachable(target, None, name),
        "mediator_id": reply.mediator_id or None,
        "streamers": [
            {
                "id": s.id,
                "addr": s.addr,
                "alive": s.alive,
                "files": [f"{k.path}/{k.filename}" if k.path else k.filename for k in s.files],
                "lines": s.lines,
                "bytes": s.bytes,
                "last_seen_s": None if s.last_seen_s < 0 else round(s.last_seen_s, 3),
            }
            for s in reply.streamers
        ],
        # snake_case whatever the mediator's version (before schema 1 it sent `requests_LogBatch`)
        "counters": dict(sorted((snake_case(key), value) for key, value in reply.counters.items())),
    }


def unreachable(target: str, error: str | None, name: str | None = None) -> dict[str, Any]:
    """The `status_schema.MEDIATOR` object of a mediator that could not be asked (`error`): what it
    would have said is null or empty."""
    return {"schema": SCHEMA_VERSION, "name": name, "addr": target, "mediator_id": None, "error": error,
            "streamers": [], "counters": {}}


def mediator_view(target: str, creds: grpc.ChannelCredentials | None = None, timeout_s: float = 5.0,
                  name: str | None = None) -> dict[str, Any]:
    """As `fetch_status`, but a mediator that cannot be asked is an object with `error` set (the
    error's first line), not an exception."""
    try:
        return fetch_status(target, creds, timeout_s, name)
    except StatusError as exc:
        return unreachable(target, str(exc).splitlines()[0], name)


def serves_streamer_control(channel: grpc.Channel, timeout_s: float) -> bool:
    """Whether the server behind `channel` has a streamer's StreamerControl service: any answer to
    `Stats` but UNIMPLEMENTED (PERMISSION_DENIED from a guarded streamer counts: the service exists)."""
    stub = pb_grpc.StreamerControlStub(channel)  # type: ignore[no-untyped-call]
    try:
        stub.Stats(pb.StatsRequest(), timeout=timeout_s)
    except grpc.RpcError as exc:
        code = exc.code() if isinstance(exc, grpc.Call) else None
        return code not in (grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.UNAVAILABLE,
                            grpc.StatusCode.DEADLINE_EXCEEDED, None)
    return True


def format_table(status: dict[str, Any]) -> str:
    """A readable table of one `status_schema.MEDIATOR` object."""
    named = f"{status['name']} " if status.get("name") not in (None, "mediator") else ""
    if status.get("error"):
        return f"mediator {named}{status['addr']}: unreachable: {status['error']}"
    rows = [("ID", "ADDRESS", "ALIVE", "FILES", "LINES", "BYTES", "LAST PING")]
    for s in status["streamers"]:
        seen = "-" if s["last_seen_s"] is None else f"{s['last_seen_s']:.1f}s ago"
        rows.append((s["id"], s["addr"], "yes" if s["alive"] else "no", str(len(s["files"])),
                     str(s["lines"]), str(s["bytes"]), seen))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [f"mediator {named}{status['addr']} (id {status['mediator_id'] or '?'})"]
    lines += ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows]
    if len(rows) == 1:
        lines.append("(no streamer registered)")
    counters = status["counters"]
    if counters:
        lines.append("counters: " + ", ".join(f"{name} {value}" for name, value in counters.items()))
    return "\n".join(lines)
