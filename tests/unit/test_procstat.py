"""procstat reads a real process's open descriptors and peak RSS from /proc, and keeps the peak of its samples."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from logstream.node.procstat import Sampler, open_fds, peak_rss_kb, status_kb

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc is Linux's")

# A child that, on each line of stdin, opens 200 descriptors and fills 64 MiB, or closes them, or exits.
CHILD = """
import sys
held = []
print("ready", flush=True)
for command in sys.stdin:
    if command.strip() == "open":
        held = [open("/dev/null") for _ in range(200)]
        ballast = bytearray(64 << 20)
        ballast[::4096] = b"x" * len(ballast[::4096])  # touch every page so it is resident
    elif command.strip() == "close":
        for f in held:
            f.close()
        held, ballast = [], None
    print("done", flush=True)
"""


@contextmanager
def child() -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen([sys.executable, "-c", CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
        yield proc
    finally:
        proc.kill()
        proc.wait()
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.close()
        proc.stdout.close()


def tell(proc: subprocess.Popen[str], command: str) -> None:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(command + "\n")
    proc.stdin.flush()
    assert proc.stdout.readline() == "done\n"


def test_status_kb_reads_a_field() -> None:
    text = "Name:\tpython\nVmPeak:\t  300 kB\nVmHWM:\t   12345 kB\nVmRSS:\t 100 kB\nThreads:\t3\n"
    assert status_kb(text, "VmHWM") == 12345
    assert status_kb(text, "VmRSS") == 100
    assert status_kb(text, "VmSwap") is None
    assert status_kb(text, "Threads") is None  # not a kB figure


def test_a_gone_process_reads_as_unknown() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    assert open_fds(proc.pid) is None and peak_rss_kb(proc.pid) is None


def test_the_sampler_keeps_the_peak_of_a_real_process() -> None:
    with child() as proc:
        sampler = Sampler([("child", proc.pid)], interval_s=0.01)
        sampler.start()
        idle = sampler.figures[0].fds_start
        assert idle is not None and idle > 0
        tell(proc, "open")
        now = open_fds(proc.pid)
        assert now is not None and now >= idle + 200
        deadline = time.monotonic() + 10
        while (sampler.figures[0].fds_peak or 0) < idle + 200:
            assert time.monotonic() < deadline, "the sampler never saw the 200 descriptors"
            time.sleep(0.01)
        tell(proc, "close")
        [figures] = sampler.stop()
    assert open_fds(proc.pid) is None
    assert figures.name == "child" and figures.fds_start == idle
    assert figures.fds_peak is not None and figures.fds_peak >= idle + 200
    assert figures.rss_peak_kb is not None and figures.rss_peak_kb >= 64 << 10
    summary = figures.summary()
    assert summary["fds_peak"] == figures.fds_peak and summary["rss_peak_mb"] >= 64  # type: ignore[operator]
