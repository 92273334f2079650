"""`logstream run FILE`: check the cluster file, the ports and the run directory, then hand over to
the manager (`supervisor/manager.py`)."""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

from logstream.cluster import (
    ConfigError,
    Node,
    check_files,
    load_cluster,
    plan_nodes,
    select_nodes,
    token_path,
)
from logstream.cluster.plan import ETCD_PROGRAM
from logstream.commands.cluster_options import add_cluster_options, short_flags
from logstream.config.goflags import GoFlagParser
from logstream.errors import UserError, report
from logstream.node.token_file import TokenFileError, ensure_token
from logstream.supervisor.control import socket_answers, supervisord_pid
from logstream.supervisor.manager import Runner
from logstream.supervisor.process import busy_ports
from logstream.supervisor.render import run_paths
from logstream.supervisor.runs import record_run


def build_parser() -> argparse.ArgumentParser:
    parser = GoFlagParser(prog="logstream run", allow_abbrev=False,
                     description="Launch a cluster (a mediator and N streamers) under supervisord.")
    parser.add_argument("file", metavar="FILE", help="the cluster file (TOML), e.g. configs/local.toml")
    add_cluster_options(parser)
    parser.add_argument("--only", metavar="NODES",
                        help="run only these nodes here: `mediator` or `s1,s2` (clusters spread over hosts)")
    return parser


def missing_programs(nodes: list[Node]) -> str | None:
    """Why the nodes cannot be started here for want of a program (None: all are there)."""
    if any(node.role == "etcd" for node in nodes) and shutil.which(ETCD_PROGRAM) is None:
        return (f"this cluster starts its own etcd ([etcd] members), but there is no `{ETCD_PROGRAM}` program "
                "on the PATH: install it (Debian, Ubuntu: apt-get install etcd-server) or give "
                "[etcd] endpoints of an etcd that runs already")
    return None


def main(argv: list[str]) -> int:
    started = time.monotonic()
    args = build_parser().parse_args(argv)
    cwd = Path.cwd()
    try:
        config = load_cluster(args.file, args.set, short_flags(args))
        selected = select_nodes(config, args.only)
        problems = check_files(config, cwd, selected, writable=True)
        if problems:
            raise ConfigError(problems)
    except ConfigError as exc:
        return report("logstream run", exc)
    nodes = [node for node in plan_nodes(config, cwd) if node.name in selected]
    missing = missing_programs(nodes)
    if missing:
        return report("logstream run", UserError(missing))
    run_dir = config.cluster.run_dir.expanduser()
    paths = run_paths(run_dir if run_dir.is_absolute() else cwd / run_dir)
    pid = supervisord_pid(paths)
    if socket_answers(paths) or pid is not None:
        print(f"logstream run: error: a cluster is already running from {paths.run_dir} "
              f"(supervisord pid {pid or '?'}); stop it with `logstream stop {args.file}`", file=sys.stderr)
        return 2
    busy = busy_ports(nodes)
    if busy:
        return report("logstream run", UserError("\n".join(busy)))
    token = token_path(config, cwd)
    try:
        ensure_token(token)  # one per cluster, kept across restarts; nodes read it with -token-file
    except (OSError, TokenFileError) as exc:
        print(f"logstream run: error: cluster token {token}: {getattr(exc, 'strerror', None) or exc}", file=sys.stderr)
        return 2
    record_run(Path(args.file), cwd, paths.run_dir)  # so `stop`/`status`/`restart FILE` find it from anywhere
    return Runner(config, nodes, paths, cwd, started=started).run()
