"""The node processes `logstream bench` starts itself: launched, their port read from their output, stopped."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from logstream.config.flags import UsageError

_LISTENING = re.compile(r"(?<!debug server )listening on (\S+):(\d+)")


class NodeProc:
    """One `logstream streamer|mediator` process; `wait_listening` gives the port it reports."""

    def __init__(self, args: list[str], name: str) -> None:
        self.name = name
        self.proc = subprocess.Popen([sys.executable, "-m", "logstream", *args], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.lines: list[str] = []
        self._ready = threading.Event()
        self.port = 0
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            line = raw.decode(errors="replace").rstrip()
            self.lines.append(line)
            match = _LISTENING.search(line)
            if match and not self.port:
                self.port = int(match.group(2))
                self._ready.set()
        self._ready.set()

    def wait_listening(self, timeout_s: float = 30.0) -> int:
        self._ready.wait(timeout_s)
        if not self.port:
            self.stop()
            raise UsageError(f"{self.name} did not start: " + " | ".join(self.lines[-5:]))
        return self.port

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


def count_lines(folder: Path) -> int:
    """Newlines in every .log file under `folder`, rotated ones too."""
    total = 0
    for path in folder.rglob("*.log"):
        with open(path, "rb") as file:
            while block := file.read(1 << 22):
                total += block.count(b"\n")
    return total


def wait_cluster(mediator: str, count: int, timeout_s: float = 30.0) -> None:
    """Until the mediator reports `count` live streamers."""
    import grpc

    from logstream._proto import logstream_pb2 as pb
    from logstream._proto import logstream_pb2_grpc as pb_grpc
    from logstream.node.channel import sync_channel

    deadline = time.monotonic() + timeout_s
    with sync_channel(mediator) as channel:
        stub = pb_grpc.ClusterStatusStub(channel)  # type: ignore[no-untyped-call]
        while time.monotonic() < deadline:
            try:
                status = stub.Status(pb.StatusRequest(), timeout=2)
                if sum(1 for s in status.streamers if s.alive) >= count:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.2)
    raise UsageError(f"the mediator at {mediator} did not report {count} live streamers within {timeout_s}s")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds the process has used so far (/proc/<pid>/stat); 0.0 once it is gone."""
    import os

    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as file:
            fields = file.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # after the command's closing parenthesis: state is field 3, utime 14 and stime 15 (man 5 proc)
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
