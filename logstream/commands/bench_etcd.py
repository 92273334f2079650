"""The one-member etcd `logstream bench` starts for its etcd-mode clusters, data in the bench's folder."""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

from logstream.cluster.plan import ETCD_PROGRAM
from logstream.config.flags import UsageError

START_TRIES = 4
READY_TIMEOUT_S = 20.0


def require_etcd() -> str:
    """The etcd program's path; UsageError (one line) when there is none on the PATH."""
    path = shutil.which(ETCD_PROGRAM)
    if path is None:
        raise UsageError(f"etcd mode (--etcd, --workers, or --mediators above 1) starts a local etcd, but there is no "
                         f"`{ETCD_PROGRAM}` program on the PATH: install it (Debian, Ubuntu: apt-get install "
                         "etcd-server)")
    return path


def free_ports(count: int) -> list[int]:
    """`count` distinct ports that were free a moment ago (etcd cannot bind port 0 and report it)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sockets.append(sock)
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _healthy(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"GET /health HTTP/1.0\r\n\r\n")
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
    except OSError:
        return False
    return b'"health":"true"' in data


class LocalEtcd:
    """One etcd member on loopback. Its ports are picked free and handed to it; should another
    process take one meanwhile, etcd exits at start and is started again on fresh ports."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.client_port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.lines: list[str] = []
        self._reader: threading.Thread | None = None

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.client_port}"

    def _read(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            self.lines.append(raw.decode(errors="replace").rstrip())

    def start(self) -> LocalEtcd:
        program = require_etcd()
        for _attempt in range(START_TRIES):
            shutil.rmtree(self.data_dir, ignore_errors=True)
            client, peer, metrics = free_ports(3)
            self.client_port = client
            self.lines = []
            self.proc = subprocess.Popen(
                [program, "--name", "bench", "--data-dir", str(self.data_dir),
                 "--listen-client-urls", f"http://127.0.0.1:{client}",
                 "--advertise-client-urls", f"http://127.0.0.1:{client}",
                 "--listen-peer-urls", f"http://127.0.0.1:{peer}",
                 "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
                 "--listen-metrics-urls", f"http://127.0.0.1:{metrics}",
                 "--initial-cluster", f"bench=http://127.0.0.1:{peer}", "--initial-cluster-state", "new",
                 "--logger", "zap", "--log-level", "error"],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            self._reader = threading.Thread(target=self._read, args=(self.proc,), daemon=True)
            self._reader.start()
            deadline = time.monotonic() + READY_TIMEOUT_S
            while time.monotonic() < deadline and self.proc.poll() is None:
                if _healthy(metrics):
                    return self
                time.sleep(0.05)
            exited = self.proc.poll() is not None
            self.stop()
            if not exited:
                break  # alive but never healthy: not a port race
        raise UsageError(f"the bench's etcd did not start: {' | '.join(self.lines[-3:]) or 'no output'}")

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._reader is not None:
            self._reader.join(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
