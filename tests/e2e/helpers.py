"""Start a real `logstream` subprocess, wait for its "listening on HOST:PORT" line, stop it.

    node = start_node(["streamer", "-port", "0", "-path", str(tmp_path / "logs")])
    ... talk to 127.0.0.1:{node.port} ...
    assert node.stop() == 0

stderr is read in a thread and kept in `node.lines`; stdout too, in `node.out` (unless passed through).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

# The gRPC server's start-up line, not the debug server's ("debug server listening on http://...").
LISTENING = re.compile(r"(?<!debug server )listening on (\S+):(\d+)")
START_TIMEOUT_S = 20.0


class Node:
    """A running logstream process."""

    def __init__(self, args: Sequence[str], proc: subprocess.Popen[bytes]) -> None:
        self.args = list(args)
        self.proc = proc
        self.port = 0
        self.host = ""
        self.lines: list[str] = []
        self.out: list[bytes] = []
        self._changed = threading.Condition()
        self._threads = [threading.Thread(target=self._read_err, daemon=True)]
        if proc.stdout is not None:
            self._threads.append(threading.Thread(target=self._read_out, daemon=True))
        for thread in self._threads:
            thread.start()

    def _read_err(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            line = raw.decode(errors="replace").rstrip("\n")
            with self._changed:
                self.lines.append(line)
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def _read_out(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            with self._changed:
                self.out.append(raw)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def stderr(self) -> str:
        with self._changed:
            return "\n".join(self.lines)

    def wait_for(self, pattern: str | re.Pattern[str], timeout_s: float = START_TIMEOUT_S,
                 start: int = 0) -> re.Match[str]:
        """The first stderr line (from index `start`) matching `pattern`; AssertionError after timeout."""
        regex = re.compile(pattern) if isinstance(pattern, str) else pattern
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while True:
                for line in self.lines[start:]:
                    match = regex.search(line)
                    if match:
                        return match
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (self.proc.poll() is not None and not self._reading()):
                    raise AssertionError(
                        f"no line matching {regex.pattern!r} from logstream {' '.join(self.args)} "
                        f"(exit {self.proc.poll()}):\n{chr(10).join(self.lines)}"
                    )
                self._changed.wait(min(remaining, 0.1))

    def _reading(self) -> bool:
        return self._threads[0].is_alive()

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 15.0) -> int:
        """Send `sig` (if still running) and wait; the exit code. SIGKILL after `timeout_s`."""
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(sig)
            except ProcessLookupError:
                pass
        try:
            code = self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"logstream {' '.join(self.args)} did not exit within {timeout_s}s "
                                 f"of signal {sig}:\n{self.stderr}") from None
        for thread in self._threads:
            thread.join(5)
        for stream in (self.proc.stderr, self.proc.stdout):
            if stream is not None:
                stream.close()
        return code

    def __enter__(self) -> Node:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.stop(signal.SIGKILL)
        else:
            self.stop()


def logstream_command() -> list[str]:
    """How to run `logstream` with this interpreter (works without the console script too)."""
    return [sys.executable, "-m", "logstream"]


def run_logstream(args: Sequence[str], timeout_s: float = 30.0, env: dict[str, str] | None = None,
                  cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run a logstream command to completion; its exit code and output."""
    return subprocess.run([*logstream_command(), *args], capture_output=True, text=True, timeout=timeout_s,
                          env=env, cwd=cwd)


def start_node(args: Sequence[str], *, env: dict[str, str] | None = None, cwd: Path | None = None,
               wait: bool = True, timeout_s: float = START_TIMEOUT_S, capture_stdout: bool = True,
               preexec_fn: object = None) -> Node:
    """Start `logstream ARGS...`; with `wait`, return once it logged "listening on HOST:PORT"."""
    full_env = dict(os.environ if env is None else env)
    full_env.setdefault("PYTHONUNBUFFERED", "1")
    proc = subprocess.Popen(
        [*logstream_command(), *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE if capture_stdout else None,
        stderr=subprocess.PIPE,
        env=full_env,
        cwd=cwd,
        preexec_fn=preexec_fn,  # type: ignore[arg-type]
    )
    node = Node(args, proc)
    if wait:
        try:
            match = node.wait_for(LISTENING, timeout_s)
        except AssertionError:
            if proc.poll() is None:
                proc.kill()
            node.stop()
            raise
        node.host, node.port = match.group(1), int(match.group(2))
    return node
