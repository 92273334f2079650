"""Ask a mediator for its view of the cluster (`ClusterStatus.Status`): the JSON shape and the table."""

from __future__ import annotations

from typing import Any

import grpc

from logstream._proto import logstream_pb2 as pb
from logstream._proto import logstream_pb2_grpc as pb_grpc
from logstream.node.channel import sync_channel


class StatusError(Exception):
    """The mediator could not be asked (unreachable, TLS mismatch, timeout)."""


def fetch_status(target: str, creds: grpc.ChannelCredentials | None = None, timeout_s: float = 5.0) -> dict[str, Any]:
    """The mediator's `ClusterStatus.Status` in the JSON shape `logstream status --json` prints:
    `{"mediator", "mediator_id", "streamers": [{"id", "addr", "alive", "files", "lines", "bytes",
    "last_seen_s"}], "counters": {...}}`; StatusError when the mediator cannot be asked."""
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
        "mediator": target,
        "mediator_id": reply.mediator_id,
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
        "counters": dict(sorted(reply.counters.items())),
    }


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
    """A readable table of `fetch_status`'s result."""
    rows = [("ID", "ADDRESS", "ALIVE", "FILES", "LINES", "BYTES", "LAST PING")]
    for s in status.get("streamers", []):
        seen = "-" if s.get("last_seen_s") is None else f"{s['last_seen_s']:.1f}s ago"
        rows.append((s["id"], s["addr"], "yes" if s["alive"] else "no", str(len(s["files"])),
                     str(s["lines"]), str(s["bytes"]), seen))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [f"mediator {status.get('mediator', '?')} (id {status.get('mediator_id', '?')})"]
    lines += ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows]
    if len(rows) == 1:
        lines.append("(no streamer registered)")
    counters = status.get("counters", {})
    if counters:
        lines.append("counters: " + ", ".join(f"{name} {value}" for name, value in counters.items()))
    return "\n".join(lines)
