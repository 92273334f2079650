"""However `logstream run` ends (SIGHUP from a closed terminal, or SIGKILL), supervisord and every
node it started are gone afterwards: checked by their pids, with a bounded wait that fails loudly.
An unwritable logs folder is refused before anything starts. A streamer stopped on purpose leaves
the mediator: its keys move at once, and a clean stop prints no warning."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from logstream.cluster import load_cluster
from logstream.node.cluster_status import fetch_status
from logstream.supervisor.control import paths_for, supervisor_rpc
from netports import reserve_ports
from test_run import READY, Run, send, write_cluster
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


def read_only_run(logs: Path, args: list[str]) -> list[str]:
    """`logstream run ARGS` with `logs` not writable: by its mode bits for a user, by a read-only bind
    mount in a private mount namespace for root (which ignores mode bits)."""
    command = [sys.executable, "-m", "logstream", "run", *args]
    if os.geteuid() != 0:
        logs.chmod(0o555)
    else:
        if shutil.which("unshare") is None or subprocess.run(
                ["unshare", "-m", "true"], capture_output=True).returncode != 0:
            pytest.skip("running as root, and no mount namespace for a read-only bind (unshare -m)")
        command = ["unshare", "-m", "sh", "-c", 'mount --bind -o ro "$0" "$0" && exec "$@"', str(logs), *command]
    return command


def test_run_and_supervisord_killed_together_leave_no_node(tmp_path: Path, runs: list[Run]) -> None:
    """Nothing is left to stop the nodes in order: each gets SIGTERM as supervisord dies."""
    file, _, _ = write_cluster(tmp_path, count=2)
    run = Run(tmp_path, [str(file)])
    runs.append(run)
    run.wait_for(READY)
    pids = started_pids(tmp_path, run, ["mediator", "s1", "s2"])
    os.kill(run.proc.pid, signal.SIGKILL)
    os.kill(pids["supervisord"], signal.SIGKILL)
    assert run.wait() == -signal.SIGKILL
    assert_all_gone(pids)


def test_an_unwritable_logs_folder_is_refused_before_start(tmp_path: Path) -> None:
    file, _, _ = write_cluster(tmp_path, count=1)
    logs = tmp_path / "logs"
    logs.mkdir()
    command = read_only_run(logs, [str(file)])
    try:
        done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=30,
                              env={**os.environ, "XDG_RUNTIME_DIR": str(tmp_path / "xdg")})
    finally:
        logs.chmod(0o755)
    assert done.returncode == 2, done.stdout + done.stderr
    [line] = done.stderr.splitlines()  # one line, naming the key, the folder and the cause
    assert line.startswith("logstream run: error: streamers.path: logs cannot be written: "), done.stderr
    assert not (tmp_path / "run" / "supervisord.conf").exists()  # nothing was started


def lease_cluster(tmp_path: Path) -> tuple[Path, int]:
    """Two streamers with 30s leases: a key fenced on a stopped streamer would wait over 30s."""
    mediator, *streamers = reserve_ports(3)
    tables = "".join(f"[[streamer]]\nname = 's{i}'\nport = {port}\n" for i, port in enumerate(streamers, start=1))
    file = tmp_path / "cluster.toml"
    file.write_text(f"[cluster]\nname = 'e2e'\nrun_dir = 'run'\n[mediator]\nport = {mediator}\nhealth_interval = '3s'\nlease = '30s'\n"
                    f"[streamers]\ncount = 2\npath = 'logs'\n{tables}")
    return file, mediator


def keys_of(target: str, streamer: str) -> list[str]:
    view = fetch_status(target)
    return next(s["files"] for s in view["streamers"] if s["id"] == streamer)


def test_a_streamer_stopped_on_purpose_hands_its_keys_over_at_once(tmp_path: Path, runs: list[Run]) -> None:
    file, port = lease_cluster(tmp_path)
    target = f"127.0.0.1:{port}"
    run = Run(tmp_path, [str(file)])
    runs.append(run)
    run.wait_for(READY)
    send(target, [("k", f"f{i}", "before") for i in range(12)])
    moving = keys_of(target, "s1")
    assert moving, "rendezvous placement gave s1 none of 12 keys"
    mark = len(run.lines)
    started = time.monotonic()
    with supervisor_rpc(paths_for(load_cluster(file), tmp_path)) as rpc:
        rpc.stopProcess("streamers:s1")  # SIGTERM, as supervisord stops a node; no restart
    send(target, [("k", key.split("/")[1], "after") for key in moving])
    took = time.monotonic() - started
    for key in moving:
        assert (tmp_path / "logs" / f"{key}.log").read_text() == "before\nafter\n"
    # Without the leave, s1's keys wait until its 30s lease has surely lapsed (the sends time out).
    assert took < 15.0, f"s1's keys moved only after {took:.1f}s"
    print(f"s1's keys moved {took:.2f}s after its stop began")
    assert keys_of(target, "s2") and all(key in keys_of(target, "s2") for key in moving)
    after = run.lines[mark:]
    assert not [line for line in after if " WARNING " in line or " ERROR " in line], "\n".join(after)
    run.proc.send_signal(signal.SIGINT)
    assert run.wait() == 130


def test_a_clean_stop_of_run_prints_no_warning(tmp_path: Path, runs: list[Run]) -> None:
    file, port = lease_cluster(tmp_path)
    run = Run(tmp_path, [str(file)])
    runs.append(run)
    run.wait_for(READY)
    send(f"127.0.0.1:{port}", [("k", f"f{i}", "x") for i in range(8)])
    mark = len(run.lines)
    started = time.monotonic()
    run.proc.send_signal(signal.SIGINT)
    assert run.wait() == 130
    print(f"clean stop took {time.monotonic() - started:.2f}s")  # (-s shows it; 7.2s before the leave)
    after = run.lines[mark:]
    assert not [line for line in after if " WARNING " in line or " ERROR " in line], "\n".join(after)
    for name in ("s1", "s2"):  # each left on purpose: its keys were freed, not fenced
        assert any(re.search(rf"mediator +\| .* streamer {name}@\S+ left: \d+ keys free", line) for line in after), \
            "\n".join(after)
