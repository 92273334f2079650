"""`logstream stop FILE` and `logstream restart FILE NODE`: supervisord's XML-RPC over its unix socket."""

from __future__ import annotations

import argparse
import os
import socket
import sys
import time
import xmlrpc.client
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from supervisor.xmlrpc import SupervisorTransport

from logstream.cluster.config import ClusterConfig, ConfigError, load_cluster
from logstream.config.flags import GoFlagParser, UsageError
from logstream.errors import report
from logstream.supervisor.render import RunPaths, process_name, run_paths


class NotRunning(UsageError):
    """No supervisord answers on the run directory's socket."""


@contextmanager
def supervisor_rpc(paths: RunPaths, timeout_s: float = 10.0) -> Iterator[Any]:
    """supervisord's `supervisor.*` XML-RPC namespace for `paths`; the connection is closed after."""
    proxy = supervisor_proxy(paths, timeout_s)
    try:
        yield proxy.supervisor
    finally:
        proxy("close")()


def supervisor_proxy(paths: RunPaths, timeout_s: float = 10.0) -> Any:
    """An XML-RPC proxy to the supervisord of `paths`, whose calls give up after `timeout_s`;
    call `proxy("close")()` when done."""
    transport = SupervisorTransport(None, None, paths.server_url)
    make_connection = transport._get_connection

    def get_connection() -> Any:
        connection = make_connection()
        connect = connection.connect

        def connect_with_timeout() -> None:
            connect()
            connection.sock.settimeout(timeout_s)

        connection.connect = connect_with_timeout
        return connection

    transport._get_connection = get_connection
    # The host part is ignored: the transport talks to the unix socket.
    return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport)


def socket_answers(paths: RunPaths) -> bool:
    """Whether something listens on the run directory's supervisord socket."""
    if not paths.sock.exists():
        return False
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(2.0)
    try:
        probe.connect(str(paths.sock))
    except OSError:
        return False
    finally:
        probe.close()
    return True


def supervisord_pid(paths: RunPaths) -> int | None:
    """The pid in the run directory's pid file, when that process is alive and is a supervisord
    of this run directory (a stale pid file may name a recycled pid)."""
    try:
        pid = int(paths.pid.read_text().strip())
    except (OSError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return pid if sys.platform != "linux" else None
    except OSError:
        return pid
    return pid if str(paths.conf).encode() in cmdline else None


def paths_for(config: ClusterConfig, cwd: Path | None = None) -> RunPaths:
    run_dir = config.cluster.run_dir.expanduser()
    return run_paths(run_dir if run_dir.is_absolute() else (cwd or Path.cwd()) / run_dir)


def _load(prog: str, argv: list[str], extra: list[str] = []) -> tuple[argparse.Namespace, ClusterConfig, RunPaths]:
    parser = GoFlagParser(prog=prog, allow_abbrev=False)
    parser.add_argument("file", metavar="FILE", help="the cluster file given to `logstream run`")
    for name in extra:
        parser.add_argument(name)
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="the same overrides given to `logstream run` (run_dir matters)")
    parser.add_argument("--run-dir", metavar="DIR", help="the run directory given to `logstream run`")
    parser.add_argument("--timeout", type=float, default=60.0, metavar="SECONDS",
                        help="how long to wait (default: 60)")
    args = parser.parse_args(argv)
    flags = {"cluster.run_dir": args.run_dir} if args.run_dir else {}
    config = load_cluster(args.file, args.set, flags)
    paths = paths_for(config)
    if not socket_answers(paths):
        raise NotRunning(f"no cluster is running from {paths.run_dir} (no supervisord at {paths.sock})")
    return args, config, paths


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
