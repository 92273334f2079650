"""`logstream status -mediator HOST:PORT [--json]`: the mediator's view of the cluster.

`fetch_status` and `format_table` are the library side, also used by `logstream status cluster.toml`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import grpc

from logstream._proto import logstream_pb2 as pb
from logstream._proto import logstream_pb2_grpc as pb_grpc
from logstream.config.flags import GoFlagParser, UsageError
from logstream.node.address import AddressError, parse_address
from logstream.node.net import CHANNEL_OPTIONS


class StatusError(Exception):
    """The mediator could not be asked (unreachable, TLS mismatch, timeout)."""


def fetch_status(target: str, creds: grpc.ChannelCredentials | None = None, timeout_s: float = 5.0) -> dict[str, Any]:
    """The mediator's `ClusterStatus.Status` as DESIGN §7's JSON shape:
    `{"mediator", "mediator_id", "streamers": [{"id", "addr", "alive", "files", "lines", "bytes",
    "last_seen_s"}], "counters": {...}}`; StatusError when the mediator cannot be asked."""
    if creds is None:
        channel = grpc.insecure_channel(target, options=CHANNEL_OPTIONS)
    else:
        channel = grpc.secure_channel(target, creds, options=CHANNEL_OPTIONS)
    try:
        stub = pb_grpc.ClusterStatusStub(channel)  # type: ignore[no-untyped-call]
        reply: pb.StatusResponse = stub.Status(pb.StatusRequest(), timeout=timeout_s)
    except grpc.RpcError as exc:
        code = exc.code() if isinstance(exc, grpc.Call) else None
        details = exc.details() if isinstance(exc, grpc.Call) else str(exc)
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


def _parser() -> argparse.ArgumentParser:
    parser = GoFlagParser(prog="logstream status", usage="logstream status FILE [--json]\n"
                          "       logstream status -mediator HOST:PORT [--json] [-ca CA -crt CRT -pk PK]",
                          description="Show a cluster's streamers, their files and "
                     "lines, and the mediator's counters, as the mediator sees them.", allow_abbrev=False)
    parser.add_argument("-mediator", "--mediator", "-target", "--target", dest="mediator", metavar="HOST:PORT",
                        required=True, help="the mediator's address")
    parser.add_argument("-json", "--json", action="store_true", help="print one JSON object")
    parser.add_argument("-ca", "--ca", type=Path, help="CA certificate that signed the mediator's certificate (TLS)")
    parser.add_argument("-crt", "--crt", type=Path, help="client certificate (mutual TLS)")
    parser.add_argument("-pk", "--pk", type=Path, help="client private key (mutual TLS)")
    parser.add_argument("-timeout", "--timeout", type=float, default=5.0, metavar="SECONDS",
                        help="give up after this long (default: 5)")
    return parser


def main(argv: list[str]) -> int:
    if argv and not argv[0].startswith("-"):  # `logstream status cluster.toml`: supervisord's view too
        from logstream.supervisor.status import cluster_status_main

        return cluster_status_main(argv[0], argv[1:])
    args = _parser().parse_args(argv)
    try:
        target = parse_address(args.mediator)
    except AddressError as exc:
        raise UsageError(f"-mediator: {exc}") from None
    from logstream.node.tls import channel_credentials

    creds = channel_credentials(args.ca, args.crt, args.pk)
    try:
        status = fetch_status(target, creds, args.timeout)
    except StatusError as exc:
        print(f"logstream status: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(status, indent=2) if args.json else format_table(status))
    return 0
