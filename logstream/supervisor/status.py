"""`logstream status FILE`: supervisord's view of the nodes (states, pids) and the mediator's
view of the streamers (alive, files, lines), as a table or one JSON object."""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import sys
import xmlrpc.client
from pathlib import Path
from typing import Any, NoReturn

from ..config.cluster import ClusterConfig, ConfigError, load_cluster, mediator_address
from ..config.flags import UsageError
from .control import paths_for, socket_answers, supervisor_rpc

# Exit codes: everything up; something is down or unreachable.
OK, DEGRADED = 0, 1


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def _credentials(config: ClusterConfig) -> Any:
    tls = config.tls
    if tls is None or tls.crt is None:
        return None
    from ..tls import channel_credentials

    cwd = Path.cwd()
    files = [None if p is None else (p if p.is_absolute() else cwd / p) for p in (tls.ca, tls.crt, tls.pk)]
    return channel_credentials(*files)


def _fetch_fallback(target: str, creds: Any) -> dict[str, Any]:
    """The mediator's ClusterStatus.Status as a dict (used until status_cli.fetch_status exists)."""
    import grpc

    from .._proto import logstream_pb2, logstream_pb2_grpc

    channel = grpc.insecure_channel(target) if creds is None else grpc.secure_channel(target, creds)
    try:
        stub = logstream_pb2_grpc.ClusterStatusStub(channel)  # type: ignore[no-untyped-call]
        reply = stub.Status(logstream_pb2.StatusRequest(), timeout=5.0)
    finally:
        channel.close()
    return {
        "mediator": target,
        "mediator_id": reply.mediator_id,
        "streamers": [
            {"id": s.id, "addr": s.addr, "alive": s.alive, "files": [f"{f.path}/{f.filename}".lstrip("/") for f in s.files],
             "lines": s.lines, "bytes": s.bytes, "last_seen_s": s.last_seen_s}
            for s in reply.streamers
        ],
        "counters": dict(reply.counters),
    }


def _format_fallback(status: dict[str, Any]) -> str:
    rows = [("ID", "ADDRESS", "ALIVE", "FILES", "LINES")]
    for s in status.get("streamers", []):
        rows.append((s["id"], s["addr"], "yes" if s["alive"] else "no", str(len(s["files"])), str(s["lines"])))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return f"mediator {status.get('mediator', '?')}\n" + "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows)


def mediator_status(target: str, creds: Any) -> dict[str, Any]:
    try:
        from ..status_cli import fetch_status  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        fetch = _fetch_fallback
    else:
        fetch = fetch_status
    result = fetch(target, creds)
    if inspect.isawaitable(result):
        result = asyncio.run(result)  # type: ignore[arg-type]
    return dict(result)


def format_mediator(status: dict[str, Any]) -> str:
    try:
        from ..status_cli import format_table  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return _format_fallback(status)
    return str(format_table(status))


def _uptime(info: dict[str, Any]) -> str:
    if info["statename"] != "RUNNING" or not info.get("start"):
        return "-"
    seconds = max(0, int(info["now"]) - int(info["start"]))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def supervisor_view(config: ClusterConfig) -> list[dict[str, Any]]:
    """One entry per node supervisord runs here: name, state, pid, uptime_s."""
    with supervisor_rpc(paths_for(config), timeout_s=5.0) as rpc:
        infos = rpc.getAllProcessInfo()
    processes = []
    for info in infos:
        processes.append({
            "name": info["name"], "group": info["group"], "state": info["statename"], "pid": info["pid"],
            "uptime_s": max(0, int(info["now"]) - int(info["start"])) if info["statename"] == "RUNNING" else 0,
            "uptime": _uptime(info), "description": info["description"],
        })
    order = {name: i for i, name in enumerate(config.node_names())}
    return sorted(processes, key=lambda p: order.get(p["name"], len(order)))


def cluster_status_main(path: str, argv: list[str]) -> int:
    """`logstream status FILE [--set k=v]... [--json]`."""
    parser = _Parser(prog="logstream status", allow_abbrev=False,
                     description="supervisord's view and the mediator's view of a cluster started with `logstream run`")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE")
    parser.add_argument("--run-dir", metavar="DIR")
    parser.add_argument("--json", action="store_true", help="one JSON object")
    args = parser.parse_args(argv)
    try:
        config = load_cluster(path, args.set, {"cluster.run_dir": args.run_dir} if args.run_dir else {})
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"logstream status: error: {problem}", file=sys.stderr)
        return 2
    paths = paths_for(config)
    result: dict[str, Any] = {"cluster": config.cluster.name, "run_dir": str(paths.run_dir)}
    code = OK
    if socket_answers(paths):
        try:
            result["processes"] = supervisor_view(config)
        except (OSError, xmlrpc.client.Error) as exc:
            result["processes"], result["supervisord_error"] = [], str(exc)
            code = DEGRADED
    else:
        result["processes"], result["supervisord_error"] = [], f"not running (no supervisord at {paths.sock})"
        code = DEGRADED
    if any(p["state"] != "RUNNING" for p in result["processes"]):
        code = DEGRADED
    target = mediator_address(config)
    result["mediator_address"] = target
    try:
        result["mediator"] = mediator_status(target, _credentials(config))
    except Exception as exc:  # any failure to reach the mediator is reported, not raised
        code = DEGRADED
        details = getattr(exc, "details", None)
        result["mediator_error"] = str(details() if callable(details) else exc).splitlines()[0]
    if "mediator" in result and not all(s.get("alive") for s in result["mediator"].get("streamers", [])):
        code = DEGRADED
    if args.json:
        print(json.dumps(result, indent=None, sort_keys=True, default=str))
        return code
    print(f"cluster \"{config.cluster.name}\" (run dir {paths.run_dir})")
    if result.get("supervisord_error"):
        print(f"supervisord: {result['supervisord_error']}")
    else:
        rows = [("NODE", "STATE", "PID", "UPTIME")] + [
            (p["name"], p["state"], str(p["pid"] or "-"), p["uptime"]) for p in result["processes"]
        ]
        widths = [max(len(row[i]) for row in rows) for i in range(4)]
        for row in rows:
            print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    print()
    if "mediator_error" in result:
        print(f"mediator {target}: unreachable: {result['mediator_error']}")
    else:
        print(format_mediator(result["mediator"]))
    return code
