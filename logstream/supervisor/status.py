"""A cluster started with `logstream run`, as seen by supervisord (states, pids), by each mediator
(streamers alive, files, lines) and, in etcd mode, by etcd (members, the ownership table): one dict
of `node/status_schema.CLUSTER`'s shape and an exit code; `commands/status.py` prints it."""

from __future__ import annotations

import xmlrpc.client
from pathlib import Path
from typing import Any

import grpc

from logstream.cluster import ClusterConfig, etcd_endpoints, mediator_addresses
from logstream.node.cluster_status import mediator_view
from logstream.node.status_schema import SCHEMA_VERSION
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
    """One `status_schema.PROCESS` per node supervisord runs here: name, state, pid and uptime_s
    (null unless running), and the name `supervisorctl` knows it by (`streamers:s1`: a bare `s1`
    is "no such process")."""
    with supervisor_rpc(paths_for(config, cwd), timeout_s=5.0) as rpc:
        infos = rpc.getAllProcessInfo()
    processes = []
    for info in infos:
        processes.append({
            "name": info["name"], "group": info["group"], "state": info["statename"], "pid": info["pid"] or None,
            "supervisorctl": info["name"] if info["group"] == info["name"] else f"{info['group']}:{info['name']}",
            "uptime_s": max(0, int(info["now"]) - int(info["start"])) if info["statename"] == "RUNNING" else None,
            "uptime": _uptime(info), "description": info["description"],
        })
    order = {name: i for i, name in enumerate(config.node_names())}
    return sorted(processes, key=lambda p: order.get(p["name"], len(order)))


def cluster_view(config: ClusterConfig, cwd: Path | None = None,
                 not_running: str | None = None) -> tuple[dict[str, Any], int]:
    """A `status_schema.CLUSTER` dict (`supervisord`, every mediator, `etcd` in etcd mode: each with
    its own `error`) and OK or DEGRADED. Relative paths count from `cwd` (default: here);
    `not_running` says where supervisord was looked for."""
    cwd = cwd or Path.cwd()
    paths = paths_for(config, cwd)
    supervisord: dict[str, Any] = {"conf": str(paths.conf), "error": None, "processes": []}
    code = OK
    if socket_answers(paths):
        try:
            supervisord["processes"] = supervisor_view(config, cwd)
        except (OSError, xmlrpc.client.Error) as exc:
            supervisord["error"] = str(exc)
    else:
        supervisord["error"] = not_running or f"not running (no supervisord at {paths.sock})"
    if supervisord["error"] is not None or any(p["state"] != "RUNNING" for p in supervisord["processes"]):
        code = DEGRADED
    creds = _credentials(config, cwd)
    # Reported beside supervisord's view, not raised.
    mediators = [mediator_view(target, creds, name=name)
                 for name, target in zip(config.mediator_names(), mediator_addresses(config))]
    if any(m["error"] is not None for m in mediators):
        code = DEGRADED
    # Without etcd, the one mediator's streamers must all be alive; in etcd mode a streamer is listed
    # only while it holds a lease.
    if config.etcd is None and not all(s["alive"] for m in mediators for s in m["streamers"]):
        code = DEGRADED
    etcd = None if config.etcd is None else etcd_view(config, creds)
    if etcd is not None and etcd["error"] is not None:
        code = DEGRADED
    result = {"schema": SCHEMA_VERSION, "cluster": config.cluster.name, "run_dir": str(paths.run_dir),
              "supervisord": supervisord, "mediators": mediators, "etcd": etcd}
    return result, code


def etcd_view(config: ClusterConfig, creds: grpc.ChannelCredentials | None, timeout_s: float = 3.0) -> dict[str, Any]:
    """etcd mode, a `status_schema.ETCD` dict: the endpoints, the cluster's name there, its members
    (streamer id -> address, each on its own lease), the ownership table (each key's owner) and the
    revision read; or `error` set and those null."""
    import asyncio

    from logstream.coord.etcd import Etcd, EtcdUnavailable
    from logstream.coord.protocol import cluster_prefix, members_prefix, owners_prefix, parse_owner_key

    endpoints, cluster = etcd_endpoints(config), config.etcd_cluster()
    view: dict[str, Any] = {"endpoints": endpoints, "cluster": cluster, "error": None, "members": None,
                            "owners": None, "revision": None}

    async def read() -> None:
        client = Etcd(endpoints, creds, timeout_s=timeout_s)
        try:
            snapshot = await client.get_prefix(cluster_prefix(cluster))
        finally:
            await client.close()
        members, owners = members_prefix(cluster), owners_prefix(cluster)
        view["members"] = {key[len(members):]: record.value for key, record in sorted(snapshot.records.items())
                           if key.startswith(members)}
        view["owners"] = [{"path": path, "filename": filename, "owner": record.value}
                          for key, record in sorted(snapshot.records.items()) if key.startswith(owners)
                          for path, filename in [parse_owner_key(cluster, key)]]
        view["revision"] = snapshot.revision

    try:
        asyncio.run(read())
    except EtcdUnavailable as exc:
        view.update(error=str(exc).splitlines()[0], members=None, owners=None, revision=None)
    return view
