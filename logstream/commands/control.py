"""`logstream stop FILE` and `logstream restart FILE NODE`: ask a running cluster's supervisord."""

from __future__ import annotations

import argparse
import sys
import time
import xmlrpc.client

from logstream.cluster import ClusterConfig, ConfigError, load_cluster
from logstream.config.goflags import GoFlagParser, UsageError
from logstream.errors import report
from logstream.supervisor.control import socket_answers, supervisor_rpc, supervisord_pid
from logstream.supervisor.render import RunPaths, process_name
from logstream.supervisor.runs import locate


class NotRunning(Exception):
    """No supervisord answers on the run directory's socket (exit 1, not a usage error)."""


def _load(prog: str, argv: list[str], extra: list[str] = []) -> tuple[argparse.Namespace, ClusterConfig, RunPaths]:
    parser = GoFlagParser(prog=prog, allow_abbrev=False)
    parser.add_argument("file", metavar="FILE", help="the cluster file given to `logstream run`")
    for name in extra:  # only restart's "node"
        parser.add_argument(name, metavar=name.upper(), help="the node to restart: mediator, or a streamer by its name in "
                            "the cluster file (s1, s2, ...; `logstream config show FILE` lists them)")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="the same overrides given to `logstream run` (run_dir matters)")
    parser.add_argument("--run-dir", metavar="DIR", help="the run directory given to `logstream run`")
    parser.add_argument("--timeout", type=float, default=60.0, metavar="SECONDS",
                        help="how long to wait (default: 60)")
    args = parser.parse_args(argv)
    flags = {"cluster.run_dir": args.run_dir} if args.run_dir else {}
    config = load_cluster(args.file, args.set, flags)
    located = locate(args.file, config)  # from this folder, or where `run FILE` recorded it was started
    if not located.running:
        raise NotRunning(f"no cluster is running ({located.tried()})")
    return args, config, located.paths


def stop_main(argv: list[str]) -> int:
    """Stop every node (streamers, then the mediator) and supervisord; wait until it is gone."""
    try:
        args, config, paths = _load("logstream stop", argv)
    except ConfigError as exc:
        return report("logstream stop", exc)
    except NotRunning as exc:
        print(f"logstream stop: {exc}", file=sys.stderr)
        return 1
    pid = supervisord_pid(paths)
    started = time.monotonic()
    try:
        with supervisor_rpc(paths) as rpc:
            rpc.shutdown()
    except (OSError, xmlrpc.client.Fault) as exc:
        print(f"logstream stop: supervisord at {paths.sock} did not accept shutdown: {exc}", file=sys.stderr)
        return 1
    deadline = started + args.timeout
    while time.monotonic() < deadline:
        if (pid is None or supervisord_pid(paths) is None) and not socket_answers(paths):
            print(f"logstream stop: cluster \"{config.cluster.name}\" stopped in {time.monotonic() - started:.1f}s")
            return 0
        time.sleep(0.1)
    print(f"logstream stop: cluster \"{config.cluster.name}\" still stopping after {args.timeout:.0f}s "
          f"(supervisord pid {pid})", file=sys.stderr)
    return 1


def restart_main(argv: list[str]) -> int:
    """Restart one node (`mediator`, `s1`, ...) of a running cluster."""
    try:
        args, config, paths = _load("logstream restart", argv, extra=["node"])
    except ConfigError as exc:
        return report("logstream restart", exc)
    except NotRunning as exc:
        print(f"logstream restart: {exc}", file=sys.stderr)
        return 1
    if args.node not in config.node_names():
        raise UsageError(f"no node {args.node!r} in cluster \"{config.cluster.name}\" "
                         f"(nodes: {', '.join(config.node_names())})")
    name = process_name(args.node)
    try:
        with supervisor_rpc(paths, timeout_s=args.timeout) as rpc:
            info = rpc.getProcessInfo(name)
            if info["statename"] in ("RUNNING", "STARTING", "BACKOFF"):
                rpc.stopProcess(name, True)
            rpc.startProcess(name, True)
            info = rpc.getProcessInfo(name)
    except xmlrpc.client.Fault as exc:
        print(f"logstream restart: {args.node}: {exc.faultString}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"logstream restart: supervisord at {paths.sock}: {exc}", file=sys.stderr)
        return 1
    print(f"logstream restart: {args.node} {info['statename'].lower()} (pid {info['pid']})")
    return 0
