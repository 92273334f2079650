"""`logstream send` following its input, with real processes on 127.0.0.1: a line written to the pipe is
on disk within a second (before EOF), SIGINT/SIGTERM deliver the lines read before them, retries last a
time (a mediator that starts late is waited for), and a file held by another writer is said so."""

from __future__ import annotations

import fcntl
import os
import pty
import signal
import struct
import subprocess
import termios
import time
from pathlib import Path

import pytest
from helpers import logstream_command, start_node
from netports import refusing_port, reserve_ports

pytestmark = pytest.mark.e2e


def _streamer(root: Path, *extra: str) -> list[str]:
    return ["streamer", "-host", "127.0.0.1", "-port", "0", "-path", str(root), "-id", "s1", *extra]


def _popen_send(args: list[str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen([*logstream_command(), "send", *args], stdin=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _wait_content(path: Path, expected: str, within_s: float) -> float:
    """Seconds until `path` holds exactly `expected`; fails loudly after `within_s`."""
    started = time.monotonic()
    while time.monotonic() - started < within_s:
        if path.exists() and path.read_text() == expected:
            return time.monotonic() - started
        time.sleep(0.01)
    raise AssertionError(f"{path} does not hold {expected!r} within {within_s}s: "
                         f"{path.read_text() if path.exists() else 'missing'!r}")


def _unread(proc: subprocess.Popen[bytes]) -> int:
    """Bytes written to the process's stdin pipe that it has not read yet (FIONREAD works on either end)."""
    assert proc.stdin is not None
    raw = fcntl.ioctl(proc.stdin.fileno(), termios.FIONREAD, struct.pack("i", 0))
    return int(struct.unpack("i", raw)[0])


def _wait_read(proc: subprocess.Popen[bytes], within_s: float = 10.0) -> None:
    deadline = time.monotonic() + within_s
    while _unread(proc):
        assert time.monotonic() < deadline, "send did not read its stdin"
        time.sleep(0.01)


def test_a_line_is_on_disk_within_a_second_before_eof(tmp_path: Path) -> None:
    root = tmp_path / "logs"
    with start_node(_streamer(root)) as node:
        with _popen_send(["-target", node.address, "-filename", "tail"]) as proc:
            assert proc.stdin is not None and proc.stderr is not None
            proc.stdin.write(b"first\n")
            proc.stdin.flush()
            _wait_content(root / "tail.log", "first\n", within_s=10.0)  # includes the interpreter's start
            expected = "first\n"
            for line in ("second", "third"):  # a running send: within a second each
                proc.stdin.write(f"{line}\n".encode())
                proc.stdin.flush()
                expected += f"{line}\n"
                _wait_content(root / "tail.log", expected, within_s=1.0)
            assert proc.poll() is None  # still following: no EOF yet
            proc.stdin.close()
            assert proc.wait(15) == 0
            assert proc.stderr.read().decode() == f"sent 3 lines to {node.address}\n"
        assert node.stop() == 0


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_sends_what_was_read_then_exits_128_plus_it(tmp_path: Path, sig: signal.Signals) -> None:
    root = tmp_path / "logs"
    with start_node(_streamer(root)) as node:
        # neither the interval nor the batch size would send these lines: only the signal does
        with _popen_send(["-target", node.address, "-filename", "held", "-flush-interval", "1h"]) as proc:
            assert proc.stdin is not None and proc.stderr is not None
            proc.stdin.write(b"a\nb\nc\n")
            proc.stdin.flush()
            _wait_read(proc)
            assert not (root / "held.log").exists()
            proc.send_signal(sig)
            assert proc.wait(15) == 128 + sig
            err = proc.stderr.read().decode()
        assert (root / "held.log").read_text() == "a\nb\nc\n"
        assert err.count("\n") == 1 and sig.name in err and "3 lines" in err
        assert node.stop() == 0


def test_retries_wait_for_a_mediator_that_starts_late(tmp_path: Path) -> None:
    [port] = reserve_ports(1)
    target = f"127.0.0.1:{port}"
    with _popen_send(["-target", target, "-path", "late", "-filename", "f", "-retry-for", "30s", "x", "y"]) as proc:
        try:
            time.sleep(3.0)  # longer than the old 5 attempts (at most 1.5 s of backoff) took to give up
            assert proc.poll() is None, "send gave up before the mediator started"
            with start_node(["mediator", "-host", "127.0.0.1", "-port", str(port), "-health-interval", "1s"]) as med, \
                    start_node(_streamer(tmp_path / "logs", "-mediator", target)) as streamer:
                assert proc.wait(30) == 0
                assert (tmp_path / "logs/late/f.log").read_text() == "x\ny\n"
                assert streamer.stop() == 0 and med.stop() == 0
        finally:
            if proc.poll() is None:
                proc.kill()


def test_a_file_held_by_another_writer_is_said_so(tmp_path: Path) -> None:
    root = tmp_path / "logs"
    root.mkdir()
    with open(root / "busy.log", "ab") as held, start_node(_streamer(root)) as node:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        done = subprocess.run([*logstream_command(), "send", "-target", node.address, "-filename", "busy", "x"],
                              capture_output=True, text=True, timeout=30)
        assert done.returncode == 1 and done.stderr.count("\n") == 1
        assert "held by another writer" in done.stderr and "nothing was written" in done.stderr
        assert "(ABORTED: " in done.stderr
        assert node.stop() == 0
    assert (root / "busy.log").read_bytes() == b""


def test_a_held_file_through_the_mediator_is_said_so_before_the_deadline(tmp_path: Path) -> None:
    root = tmp_path / "logs"
    root.mkdir()
    with open(root / "busy.log", "ab") as held, \
            start_node(["mediator", "-host", "127.0.0.1", "-port", "0", "-health-interval", "1s"]) as mediator, \
            start_node(_streamer(root, "-mediator", mediator.address)) as streamer:
        mediator.wait_for(r"is live \(1 live\)", 20)
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        started = time.monotonic()
        done = subprocess.run([*logstream_command(), "send", "-target", mediator.address, "-filename", "busy",
                               "-timeout", "3s", "x"], capture_output=True, text=True, timeout=30)
        assert time.monotonic() - started < 15  # an answer, not a hang until some idle close
        assert done.returncode == 1 and done.stderr.count("\n") == 1, done.stderr
        assert "held by another writer" in done.stderr and "(ABORTED: " in done.stderr
        assert streamer.stop() == 0 and mediator.stop() == 0


def test_a_second_signal_ends_a_send_that_is_still_retrying() -> None:
    with refusing_port() as port, _popen_send(["-target", f"127.0.0.1:{port}", "-filename", "x.log",
                                                "-retry-for", "1m", "late"]) as proc:
        assert proc.stderr is not None
        assert b"warning" in proc.stderr.readline()  # printed once the signal handlers are in place
        proc.send_signal(signal.SIGINT)
        time.sleep(0.5)
        assert proc.poll() is None  # the first signal lets it deliver what was read: still retrying
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 130
        rest = proc.stderr.read().decode()
        assert rest.count("\n") == 1 and "second signal" in rest


def test_typing_at_a_terminal_sends_line_by_line(tmp_path: Path) -> None:
    root = tmp_path / "logs"
    master, slave = pty.openpty()
    try:
        with start_node(_streamer(root)) as node, \
                subprocess.Popen([*logstream_command(), "send", "-target", node.address, "-filename", "typed"],
                                 stdin=slave, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) as proc:
            os.write(master, b"hello\n")
            _wait_content(root / "typed.log", "hello\n", within_s=10.0)  # includes the interpreter's start
            os.write(master, b"world\n")
            _wait_content(root / "typed.log", "hello\nworld\n", within_s=1.0)
            os.write(master, b"\x04")  # Ctrl-D at the start of a line: end of input
            assert proc.wait(15) == 0
            assert proc.stderr is not None and proc.stderr.read().decode() == f"sent 2 lines to {node.address}\n"
            assert node.stop() == 0
    finally:
        os.close(master)
        os.close(slave)
