"""However `logstream run` ends (SIGHUP from a closed terminal, or SIGKILL), supervisord and every
node it started are gone afterwards: checked by their pids, with a bounded wait that fails loudly."""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from test_run import READY, Run, write_cluster
from watched import kill_leftovers

pytestmark = pytest.mark.e2e


@pytest.fixture
def runs(tmp_path: Path) -> Iterator[list[Run]]:
    started: list[Run] = []
    yield started
    for run in started:
        run.kill()
    kill_leftovers(tmp_path)


def running(pid: int) -> bool:
    """Whether `pid` exists and is not a zombie (an orphan's zombie waits for its new parent)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def started_pids(tmp_path: Path, run: Run, names: list[str]) -> dict[str, int]:
    """supervisord's pid (its pid file) and each node's (supervisord's `spawned:` lines)."""
    pids = {"supervisord": int((tmp_path / "run" / "supervisord.pid").read_text())}
    for name in names:
        pids[name] = int(run.wait_for(rf"spawned: '{re.escape(name)}' with pid (\d+)").group(1))
    assert all(running(pid) for pid in pids.values()), pids
    return pids


def assert_all_gone(pids: dict[str, int], timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        left = {name: pid for name, pid in pids.items() if running(pid)}
        if not left:
            return
        time.sleep(0.1)
    raise AssertionError(f"still running {timeout_s:.0f}s after `run` ended: {left}")


@pytest.mark.parametrize("signum", [signal.SIGHUP, signal.SIGKILL])
def test_run_ended_by_a_signal_leaves_no_process(tmp_path: Path, runs: list[Run], signum: int) -> None:
    file, _, _ = write_cluster(tmp_path, count=2)
    run = Run(tmp_path, [str(file)])
    runs.append(run)
    run.wait_for(READY)
    pids = started_pids(tmp_path, run, ["mediator", "s1", "s2"])
    os.kill(run.proc.pid, signum)
    assert run.wait() == (128 + signum if signum == signal.SIGHUP else -signum)
    assert_all_gone(pids)
    if signum == signal.SIGHUP:  # handled like SIGTERM: an ordered stop
        out = "\n".join(run.lines)
        assert "SIGHUP: stopping the streamers, then the mediator" in out
        assert out.index("stopped: s1 (exit status 0)") < out.index("stopped: mediator (exit status 0)")
