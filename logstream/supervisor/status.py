"""A cluster started with `logstream run`, as seen by supervisord (states, pids) and by its mediator
(streamers alive, files, lines): one dict and an exit code; `commands/status.py` prints it."""

from __future__ import annotations

import xmlrpc.client
from pathlib import Path
from typing import Any

import grpc

from logstream.cluster import ClusterConfig, mediator_address
from logstream.node.cluster_status import StatusError, fetch_status
from logstream.supervisor.control import paths_for, socket_answers, supervisor_rpc

# Exit codes: everything up; something is down or unreachable.
OK, DEGRADED = 0, 1


def _credentials(config: ClusterConfig, cwd: Path) -> grpc.ChannelCredentials | None:
    tls = config.tls
    if tls is None or tls.crt is None:
        return None
    from logstream.node.tls import channel_credentials

    files = [None if p is None else (p if p.is_absolute() else cwd / p) for p in (tls.ca, tls.crt, tls.pk)]
    return channel_credentials(*files)


def _uptime(info: dict[str, Any]) -> str:
    if info["statename"] != "RUNNING" or not info.get("start"):
        return "-"
    seconds = max(0, int(info["now"]) - int(info["start"]))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def supervisor_view(config: ClusterConfig, cwd: Path | None = None) -> list[dict[str, Any]]:
    """One entry per node supervisord runs here: name, state, pid, uptime_s, and the name
    `supervisorctl` knows it by (`streamers:s1`: a bare `s1` is "no such process")."""
    with supervisor_rpc(paths_for(config, cwd), timeout_s=5.0) as rpc:
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


def cluster_view(config: ClusterConfig, cwd: Path | None = None,
                 not_running: str | None = None) -> tuple[dict[str, Any], int]:
    """Both views in one dict (`cluster`, `run_dir`, `processes`, `mediator_address`, and `mediator`
    or `mediator_error`, `supervisord_error` when it cannot be asked) and OK or DEGRADED. Relative
    paths count from `cwd` (default: here); `not_running` says where supervisord was looked for."""
    cwd = cwd or Path.cwd()
    paths = paths_for(config, cwd)
    result: dict[str, Any] = {"cluster": config.cluster.name, "run_dir": str(paths.run_dir)}
    code = OK
    if socket_answers(paths):
        try:
            result["processes"] = supervisor_view(config, cwd)
        except (OSError, xmlrpc.client.Error) as exc:
            result["processes"], result["supervisord_error"] = [], str(exc)
            code = DEGRADED
    else:
        result["processes"], result["supervisord_error"] = [], not_running or f"not running (no supervisord at {paths.sock})"
        code = DEGRADED
    if any(p["state"] != "RUNNING" for p in result["processes"]):
        code = DEGRADED
    target = mediator_address(config)
    result["mediator_address"] = target
    try:
        result["mediator"] = fetch_status(target, _credentials(config, cwd))
    except StatusError as exc:  # reported beside supervisord's view, not raised
        code = DEGRADED
        result["mediator_error"] = str(exc).splitlines()[0]
    if "mediator" in result and not all(s.get("alive") for s in result["mediator"].get("streamers", [])):
        code = DEGRADED
    return result, code
