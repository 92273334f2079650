"""A real etcd for tests: one member or a cluster of several on loopback, data in a temporary folder.

etcd cannot bind port 0 and report its port, so free ports are picked (bound to 0, read, closed)
and handed to it; if another process takes one meanwhile, a member exits at start and the whole
cluster is started again on fresh ports (START_TRIES times, then the test fails with etcd's output).
Readiness is each member's `/health` on a plaintext metrics port, so it works with client TLS too.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from logstream.commands.bench_etcd import free_ports  # etcd names its ports: they cannot be 0


START_TRIES = 4
READY_TIMEOUT_S = 20.0


def etcd_binary() -> str:
    path = shutil.which("etcd")
    if path is None:
        raise RuntimeError("etcd is not installed: `apt-get install etcd-server` (.ci/run does it)")
    return path


def _get(port: int, path: str) -> bytes:
    """The body (and headers) of GET `path` on 127.0.0.1:`port`; b"" when it cannot be had."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(f"GET {path} HTTP/1.0\r\n\r\n".encode())
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
    except OSError:
        return b""
    return data


def _healthy(port: int) -> bool:
    return b'"health":"true"' in _get(port, "/health")


@dataclass(frozen=True)
class EtcdTls:
    """Client TLS for etcd: its certificate and key, and (for mutual TLS) the CA clients must have."""

    crt: Path
    key: Path
    client_ca: Path | None = None


class EtcdMember:
    """One etcd process; `endpoint` is 127.0.0.1:<client port>."""

    def __init__(self, name: str, data_dir: Path, client: int, peer: int, metrics: int) -> None:
        self.name = name
        self.data_dir = data_dir
        self.client_port, self.peer_port, self.metrics_port = client, peer, metrics
        self.lines: list[str] = []
        self.proc: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.client_port}"

    def _read(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            self.lines.append(raw.decode(errors="replace").rstrip("\n"))

    def launch(self, initial_cluster: str, tls: EtcdTls | None) -> None:
        scheme = "https" if tls is not None else "http"
        args = [
            etcd_binary(), "--name", self.name, "--data-dir", str(self.data_dir),
            "--listen-client-urls", f"{scheme}://127.0.0.1:{self.client_port}",
            "--advertise-client-urls", f"{scheme}://127.0.0.1:{self.client_port}",
            "--listen-peer-urls", f"http://127.0.0.1:{self.peer_port}",
            "--initial-advertise-peer-urls", f"http://127.0.0.1:{self.peer_port}",
            "--listen-metrics-urls", f"http://127.0.0.1:{self.metrics_port}",
            "--initial-cluster", initial_cluster, "--initial-cluster-state", "new",
            # Short election timeout: etcd's smallest lease TTL is 1.5 election timeouts.
            "--heartbeat-interval", "50", "--election-timeout", "500",
            "--logger", "zap", "--log-level", "warn",
        ]
        if tls is not None:
            args += ["--cert-file", str(tls.crt), "--key-file", str(tls.key)]
            if tls.client_ca is not None:
                args += ["--client-cert-auth", "--trusted-ca-file", str(tls.client_ca)]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self._reader = threading.Thread(target=self._read, args=(self.proc,), daemon=True)
        self._reader.start()

    def healthy(self) -> bool:
        return _healthy(self.metrics_port)

    def is_leader(self) -> bool:
        return b"\netcd_server_is_leader 1" in _get(self.metrics_port, "/metrics")

    def exited(self) -> bool:
        return self.proc is not None and self.proc.poll() is not None

    def signal(self, signum: signal.Signals) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)

    def pause(self) -> None:
        self.signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.signal(signal.SIGCONT)

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        self.reap()

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            self.reap()
            return
        self.proc.send_signal(signal.SIGCONT)
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.reap()

    def reap(self) -> None:
        if self.proc is None:
            return
        self.proc.wait()
        if self._reader is not None:
            self._reader.join(timeout=5)
        assert self.proc.stdout is not None
        self.proc.stdout.close()


class EtcdServer:
    """A running etcd cluster of `size` members (one by default); `endpoint` is the first
    member's, `endpoints` all of them."""

    def __init__(self, data_dir: Path, size: int = 1, tls: EtcdTls | None = None) -> None:
        self.data_dir = data_dir
        self.size = size
        self.tls = tls
        self.members: list[EtcdMember] = []

    @property
    def endpoint(self) -> str:
        return self.members[0].endpoint

    @property
    def endpoints(self) -> list[str]:
        return [member.endpoint for member in self.members]

    def output(self) -> str:
        return "\n".join(f"[{m.name}] {line}" for m in self.members for line in m.lines[-20:])

    def start(self) -> EtcdServer:
        for _attempt in range(START_TRIES):
            shutil.rmtree(self.data_dir, ignore_errors=True)
            ports = free_ports(3 * self.size)
            self.members = [EtcdMember(f"m{n}", self.data_dir / f"m{n}", *ports[3 * n:3 * n + 3])
                            for n in range(self.size)]
            initial = ",".join(f"{m.name}=http://127.0.0.1:{m.peer_port}" for m in self.members)
            for member in self.members:
                member.launch(initial, self.tls)
            deadline = time.monotonic() + READY_TIMEOUT_S
            while time.monotonic() < deadline and not any(m.exited() for m in self.members):
                if all(m.healthy() for m in self.members):
                    return self
                time.sleep(0.05)
            raced = any(m.exited() for m in self.members)
            output = self.output()
            self.stop()
            if not raced:  # alive but never ready: not a port race
                raise AssertionError(f"etcd not ready within {READY_TIMEOUT_S}s:\n{output}")
            # a member exited at start: most likely a port taken meanwhile; fresh ports
        raise AssertionError(f"etcd did not start in {START_TRIES} tries:\n{self.output()}")

    def leader(self) -> EtcdMember:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            leaders = [m for m in self.members if not m.exited() and m.is_leader()]
            if len(leaders) == 1:
                return leaders[0]
            time.sleep(0.05)
        raise AssertionError(f"no single etcd leader within {READY_TIMEOUT_S}s:\n{self.output()}")

    def kill(self) -> None:
        """SIGKILL every member (their data directories stay: `restart` brings them back)."""
        for member in self.members:
            member.kill()

    def restart(self) -> None:
        """Start every member again on its data directory and ports; returns once all are healthy."""
        initial = ",".join(f"{m.name}=http://127.0.0.1:{m.peer_port}" for m in self.members)
        for member in self.members:
            member.launch(initial, self.tls)
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not all(m.healthy() for m in self.members):
            if time.monotonic() > deadline or any(m.exited() for m in self.members):
                raise AssertionError(f"etcd did not come back within {READY_TIMEOUT_S}s:\n{self.output()}")
            time.sleep(0.05)

    def pause(self) -> None:
        for member in self.members:
            member.pause()

    def resume(self) -> None:
        for member in self.members:
            member.resume()

    def stop(self) -> None:
        for member in self.members:
            member.stop()
