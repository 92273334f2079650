"""A real etcd for tests: one member on loopback, its data in a temporary folder, stopped at the end.

etcd cannot bind port 0 and report its port, so two free ports are picked (bound to 0, read,
closed) and handed to it; if another process takes one meanwhile, etcd exits at start and is
started again on fresh ports (START_TRIES times, then the test fails with etcd's output).
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

START_TRIES = 4
READY_TIMEOUT_S = 20.0


def etcd_binary() -> str:
    path = shutil.which("etcd")
    if path is None:
        raise RuntimeError("etcd is not installed: `apt-get install etcd-server` (.ci/run does it)")
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _ready(port: int) -> bool:
    """etcd answers its health endpoint (the client URL serves HTTP too) with health true."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"GET /health HTTP/1.0\r\n\r\n")
            data = b""
            while chunk := sock.recv(4096):
                data += chunk
    except OSError:
        return False
    return b'"health":"true"' in data


class EtcdServer:
    """A running etcd; `endpoint` is 127.0.0.1:<client port>."""

    def __init__(self, data_dir: Path, name: str = "test") -> None:
        self.data_dir = data_dir
        self.name = name
        self.lines: list[str] = []
        self.proc: subprocess.Popen[bytes] | None = None
        self.client_port = 0
        self.stopped = False
        self._reader: threading.Thread

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.client_port}"

    def _read(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            self.lines.append(raw.decode(errors="replace").rstrip("\n"))

    def start(self) -> EtcdServer:
        binary = etcd_binary()
        for _attempt in range(START_TRIES):
            client, peer = free_port(), free_port()
            if client == peer:
                continue
            shutil.rmtree(self.data_dir, ignore_errors=True)
            args = [
                binary, "--name", self.name, "--data-dir", str(self.data_dir),
                "--listen-client-urls", f"http://127.0.0.1:{client}",
                "--advertise-client-urls", f"http://127.0.0.1:{client}",
                "--listen-peer-urls", f"http://127.0.0.1:{peer}",
                "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
                "--initial-cluster", f"{self.name}=http://127.0.0.1:{peer}",
                # Short election timeout: etcd's smallest lease TTL is 1.5 election timeouts.
                "--heartbeat-interval", "50", "--election-timeout", "500",
                "--logger", "zap", "--log-level", "warn",
            ]
            proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            self._reader = threading.Thread(target=self._read, args=(proc,), daemon=True)
            self._reader.start()
            deadline = time.monotonic() + READY_TIMEOUT_S
            while time.monotonic() < deadline and proc.poll() is None:
                if _ready(client):
                    self.proc, self.client_port = proc, client
                    return self
                time.sleep(0.05)
            if proc.poll() is None:  # alive but never ready: not a port race
                proc.kill()
                self._reap(proc)
                raise AssertionError(f"etcd not ready within {READY_TIMEOUT_S}s:\n" + "\n".join(self.lines[-30:]))
            self._reap(proc)  # exited at start: most likely a port taken meanwhile; fresh ports
        raise AssertionError(f"etcd did not start in {START_TRIES} tries:\n" + "\n".join(self.lines[-30:]))

    def pause(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.proc is None or self.stopped:
            return
        self.stopped = True
        self.proc.send_signal(signal.SIGCONT)
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self._reap(self.proc)

    def _reap(self, proc: subprocess.Popen[bytes]) -> None:
        proc.wait()
        self._reader.join(timeout=5)
        assert proc.stdout is not None
        proc.stdout.close()
