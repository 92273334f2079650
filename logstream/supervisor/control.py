"""A running cluster's supervisord, from outside: its XML-RPC over the unix socket, whether it answers, its pid."""

from __future__ import annotations

import os
import socket
import sys
import xmlrpc.client
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from supervisor.xmlrpc import SupervisorTransport

from logstream.cluster import ClusterConfig
from logstream.supervisor.render import RunPaths, run_paths


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
    """The run directory's files of `config` (a relative run_dir counts from `cwd`, default: here)."""
    run_dir = config.cluster.run_dir.expanduser()
    return run_paths(run_dir if run_dir.is_absolute() else (cwd or Path.cwd()) / run_dir)
