"""`logstream status FILE`: supervisord's view of the nodes (states, pids) and the mediator's
view of the streamers (alive, files, lines), as a table or one JSON object."""

from __future__ import annotations

import json
import sys
import xmlrpc.client
from pathlib import Path
from typing import Any

from logstream.cluster import ClusterConfig, ConfigError, load_cluster, mediator_address
from logstream.config.flags import GoFlagParser
from logstream.commands.status import StatusError, fetch_status, format_table
from logstream.supervisor.control import paths_for, socket_answers, supervisor_rpc

# Exit codes: everything up; something is down or unreachable.
OK, DEGRADED = 0, 1


def _credentials(config: ClusterConfig) -> Any:
    tls = config.tls
    if tls is None or tls.crt is None:
        return None
    from logstream.node.tls import channel_credentials

    cwd = Path.cwd()
    files = [None if p is None else (p if p.is_absolute() else cwd / p) for p in (tls.ca, tls.crt, tls.pk)]
    return channel_credentials(*files)


def _uptime(info: dict[str, Any]) -> str:
    if info["statename"] != "RUNNING" or not info.get("start"):
        return "-"
    seconds = max(0, int(info["now"]) - int(info["start"]))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def supervisor_view(config: ClusterConfig) -> list[dict[str, Any]]:
    """One entry per node supervisord runs here: name, state, pid, uptime_s, and the name
    `supervisorctl` knows it by (`streamers:s1`: a bare `s1` is "no such process")."""
    with supervisor_rpc(paths_for(config), timeout_s=5.0) as rpc:
        infos = rpc.getAllProcessInfo()
    processes = []
    for info in infos:
        processes.append({
            "name": info["name"], "group": info["group"], "state": info["statename"], "pid": info["pid"],
            "supervisorctl": info["name"] if info["group"] == info["name"] else f"{info['group']}:{info['name']}",
            "uptime_s": max(0, int(info["now"]) - int(info["start"])) if info["statename"] == "RUNNING" else 0,
            "uptime": _uptime(info), "description": info["description"],
        })
    order = {name: i for i, name in enumerate(config.node_names())}
    return sorted(processes, key=lambda p: order.get(p["name"], len(order)))


def cluster_status_main(path: str, argv: list[str]) -> int:
    """`logstream status FILE [--set k=v]... [--json]`."""
    parser = GoFlagParser(prog="logstream status", allow_abbrev=False,
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
        result["mediator"] = fetch_status(target, _credentials(config))
    except StatusError as exc:  # reported beside supervisord's view, not raised
        code = DEGRADED
        result["mediator_error"] = str(exc).splitlines()[0]
    if "mediator" in result and not all(s.get("alive") for s in result["mediator"].get("streamers", [])):
        code = DEGRADED
    if args.json:
        print(json.dumps(result, indent=None, sort_keys=True, default=str))
        return code
    print(f"cluster \"{config.cluster.name}\" (run dir {paths.run_dir})")
    if result.get("supervisord_error"):
        print(f"supervisord: {result['supervisord_error']}")
    else:
        rows = [("NODE", "STATE", "PID", "UPTIME", "SUPERVISORCTL")] + [
            (p["name"], p["state"], str(p["pid"] or "-"), p["uptime"], p["supervisorctl"]) for p in result["processes"]
        ]
        widths = [max(len(row[i]) for row in rows) for i in range(5)]
        for row in rows:
            print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
        print(f"(supervisorctl -c {paths.conf} stop|start|restart|tail NAME, with NAME as in SUPERVISORCTL)")
    print()
    if "mediator_error" in result:
        print(f"mediator {target}: unreachable: {result['mediator_error']}")
    else:
        print(format_table(result["mediator"]))
    return code
