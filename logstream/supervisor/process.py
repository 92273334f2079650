"""The processes of a run: following the output files supervisord writes for each node, the
environment the nodes get, which ports are free, and whether a pid is still one of our nodes."""

from __future__ import annotations

import errno
import os
import signal
import socket
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO

from logstream.cluster import Node
from logstream.node.parent import prctl_function, set_parent_death_signal

# Variables of the role settings would leak into every node below the cluster file's flags.
_NODE_ENV_PREFIXES = ("LOGSTREAM_STREAMER_", "LOGSTREAM_MEDIATOR_")


def busy_ports(nodes: Sequence[Node]) -> list[str]:
    """Ports some other process already listens on (or addresses this machine does not have)."""
    problems = []
    for node in nodes:
        candidates = [(node.host, node.port, "port")]
        if node.pprof_port is not None:
            candidates.append((node.pprof_host, node.pprof_port, "pport"))
        for host, port, key in candidates:
            section = node.name if node.name == "mediator" else f"{node.role} {node.name}"
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            probe = socket.socket(family, socket.SOCK_STREAM)
            try:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                probe.bind((host, port))
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    problems.append(f"{section}: {key} {host}:{port} is already in use by another process")
                elif exc.errno == errno.EADDRNOTAVAIL:
                    problems.append(f"{section}: {host} is not an address of this machine "
                                    f"(run the other hosts' nodes there with --only)")
                else:
                    problems.append(f"{section}: cannot listen on {host}:{port}: {exc.strerror or exc}")
            finally:
                probe.close()
    return problems


class Follower:
    """Reads the lines appended to one file (supervisord's log for a node), across rotations."""

    def __init__(self, path: Path, from_start: bool = False) -> None:
        self.path = path
        self._file: IO[bytes] | None = None
        self._inode: int | None = None
        self._partial = b""
        self._skip_to_end = not from_start

    def _open(self) -> bool:
        try:
            handle = self.path.open("rb")
        except OSError:
            return False
        if self._skip_to_end:  # output of earlier runs is in the file; follow from now on
            handle.seek(0, os.SEEK_END)
            self._skip_to_end = False
        self._file, self._inode = handle, os.fstat(handle.fileno()).st_ino
        return True

    def poll(self, final: bool = False) -> list[str]:
        if self._file is None and not self._open():
            self._skip_to_end = False  # the file did not exist yet: everything in it is new
            return []
        assert self._file is not None
        lines = self._read()
        try:
            stat = self.path.stat()
            rotated = stat.st_ino != self._inode or stat.st_size < self._file.tell()
        except OSError:
            rotated = False
        if rotated:  # supervisord rotated or truncated the log: finish the old file, open the new one
            self._file.close()
            self._file = None
            if self._open():
                lines += self._read()
        if final and self._partial:
            lines.append(self._partial.decode(errors="replace"))
            self._partial = b""
        return lines

    def _read(self) -> list[str]:
        assert self._file is not None
        data = self._partial + self._file.read()
        *complete, self._partial = data.split(b"\n")
        return [line.decode(errors="replace").rstrip("\r") for line in complete]

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def clean_environment() -> dict[str, str]:
    """This process's environment without the role settings' variables."""
    return {key: value for key, value in os.environ.items() if not key.upper().startswith(_NODE_ENV_PREFIXES)}


def die_with_parent(signum: int = signal.SIGTERM) -> Callable[[], None] | None:
    """A `preexec_fn` that makes the child get `signum` when this process dies, however it dies
    (SIGKILL included): Linux's parent-death signal, which survives the exec. None elsewhere.

    Chosen over a watchdog process or thread: the kernel delivers it, so nothing of ours must
    outlive us to do it. SIGTERM (not SIGKILL) lets supervisord stop its nodes in order first.
    """
    prctl = prctl_function()  # resolved before the fork: the child only calls it
    if prctl is None:
        return None
    parent = os.getpid()

    def preexec() -> None:
        set_parent_death_signal(prctl, signum)
        if os.getppid() != parent:  # we died between the fork and the prctl: the signal never comes
            os.kill(os.getpid(), signum)

    return preexec


def alive(pid: int) -> bool:
    """Whether a process `pid` exists (one of another user's counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def is_our_node(pid: int, name: str) -> bool:
    """Whether `pid` is still the node we saw spawned (not a recycled pid)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return alive(pid) and sys.platform != "linux"
    return b"logstream" in cmdline and f"-id={name}".encode() in cmdline or (
        name == "mediator" and b"mediator" in cmdline and b"logstream" in cmdline
    ) or (cmdline[0].endswith(b"etcd") and f"--name={name}".encode() in cmdline)  # a managed etcd member
