"""Deployment beside supervisord, with the real `supervisorctl`: the group `logstream export
--format supervisord` writes runs under an existing supervisord that `[include]`s it (its nodes take
writes, supervisorctl knows them as `logstream-NAME:NODE`); and `logstream status FILE` prints the
names supervisorctl accepts for a cluster under `logstream run`."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import tempfile
import time
import xmlrpc.client
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from supervisor.xmlrpc import SupervisorTransport

from logstream._proto import logstream_pb2, logstream_pb2_grpc
from netports import reserve_ports
from watched import Watched, kill_leftovers, wait_gone

pytestmark = pytest.mark.e2e

READY = r'logstream: cluster "\w+" ready in'
RUNNING_TIMEOUT_S = 30.0


def write_cluster(folder: Path, count: int) -> tuple[Path, int]:
    mediator, *streamers = reserve_ports(count + 1)  # a file names its ports in advance
    tables = "".join(f"[[streamer]]\nname = 's{i}'\nport = {port}\n" for i, port in enumerate(streamers, start=1))
    path = folder / "cluster.toml"
    path.write_text(f"[cluster]\nname = 'e2e'\nrun_dir = 'run'\n"
                    f"[mediator]\nport = {mediator}\nhealth_interval = '500ms'\ngrace = '500ms'\n"
                    f"[streamers]\ncount = {count}\nport = {streamers[0]}\npath = 'logs'\ngrace = '500ms'\n{tables}")
    return path, mediator


def supervisorctl(conf: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "supervisor.supervisorctl", "-c", str(conf), *args],
                          capture_output=True, text=True, timeout=60)


def send(target: str, path: str, filename: str, line: str) -> None:
    with grpc.insecure_channel(target) as channel:
        stub = logstream_pb2_grpc.LogStreamerStub(channel)  # type: ignore[no-untyped-call]
        assert stub.Log(logstream_pb2.LogRequest(path=path, filename=filename, line=line), timeout=10).res


@pytest.fixture
def short_dir() -> Iterator[Path]:
    # A unix socket path must stay under ~100 bytes: pytest's tmp_path can be longer.
    with tempfile.TemporaryDirectory(prefix="lsx") as folder:
        yield Path(folder)


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[list[Watched]]:
    started: list[Watched] = []
    yield started
    for proc in started:
        proc.kill()
    kill_leftovers(tmp_path)


def wait_states(sock: Path, wanted: dict[str, str]) -> dict[str, str]:
    deadline = time.monotonic() + RUNNING_TIMEOUT_S
    states: dict[str, str] = {}
    while time.monotonic() < deadline:
        # A fresh connection each time: the transport cannot reuse one after a failed request.
        rpc = xmlrpc.client.ServerProxy("http://127.0.0.1", transport=SupervisorTransport(None, None, f"unix://{sock}"))
        try:
            infos = rpc.supervisor.getAllProcessInfo()
        except OSError:  # supervisord is not listening yet
            time.sleep(0.2)
            continue
        finally:
            rpc("close")()
        states = {f"{p['group']}:{p['name']}": p["statename"] for p in infos}
        if states == wanted:
            return states
        time.sleep(0.2)
    raise AssertionError(f"supervisord's processes are {states}, not {wanted}")


def test_the_exported_group_runs_under_an_existing_supervisord(tmp_path: Path, short_dir: Path,
                                                              procs: list[Watched]) -> None:
    file, mediator_port = write_cluster(tmp_path, count=2)
    done = subprocess.run([sys.executable, "-m", "logstream", "export", str(file), "--format", "supervisord",
                           "--out", "conf.d"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    sock = short_dir / "sd.sock"
    main = tmp_path / "supervisord.conf"  # an operator's own supervisord, knowing nothing of logstream
    main.write_text(
        f"[supervisord]\nlogfile={tmp_path}/supervisord.log\npidfile={tmp_path}/supervisord.pid\n"
        f"[unix_http_server]\nfile={sock}\n"
        "[rpcinterface:supervisor]\nsupervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n"
        f"[supervisorctl]\nserverurl=unix://{sock}\n"
        f"[include]\nfiles = {tmp_path}/conf.d/*.conf\n")
    supervisord = Watched([sys.executable, "-m", "supervisor.supervisord", "-n", "-c", str(main)], tmp_path)
    procs.append(supervisord)
    try:
        wait_states(sock, {"logstream-e2e:mediator": "RUNNING", "logstream-e2e:s1": "RUNNING",
                          "logstream-e2e:s2": "RUNNING"})
        listed = supervisorctl(main, "status")
        for name in ("mediator", "s1", "s2"):
            assert re.search(rf"^logstream-e2e:{name}\s+RUNNING", listed.stdout, re.M), listed.stdout
        deadline = time.monotonic() + RUNNING_TIMEOUT_S
        while True:  # the streamers register within a health interval or two
            try:
                send(f"127.0.0.1:{mediator_port}", "exported", "app", "through an included group")
                break
            except grpc.RpcError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        assert (tmp_path / "logs" / "exported" / "app.log").read_text() == "through an included group\n"
        assert (tmp_path / "run" / "logs" / "mediator.log").stat().st_size > 0

        stopped = supervisorctl(main, "stop", "logstream-e2e:*")
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr
        for name in ("mediator", "s1", "s2"):
            assert f"logstream-e2e:{name}: stopped" in stopped.stdout
        wait_states(sock, {"logstream-e2e:mediator": "STOPPED", "logstream-e2e:s1": "STOPPED",
                          "logstream-e2e:s2": "STOPPED"})
    finally:
        supervisord.proc.send_signal(signal.SIGTERM)
    assert supervisord.wait() == 0
    assert wait_gone(tmp_path) == []


def test_status_prints_the_names_the_real_supervisorctl_takes(tmp_path: Path, procs: list[Watched]) -> None:
    file, _ = write_cluster(tmp_path, count=1)
    run = Watched([sys.executable, "-m", "logstream", "run", str(file)], tmp_path)
    procs.append(run)
    run.wait_for(READY)
    status = subprocess.run([sys.executable, "-m", "logstream", "status", str(file)], cwd=tmp_path,
                            capture_output=True, text=True, timeout=60)
    assert re.search(r"^s1\s+(STARTING|RUNNING)\s+\d+\s+\S+\s+streamers:s1$", status.stdout, re.M), status.stdout
    assert re.search(r"^mediator\s+(STARTING|RUNNING)\s+\d+\s+\S+\s+mediator$", status.stdout, re.M), status.stdout
    conf = tmp_path / "run" / "supervisord.conf"
    assert f"supervisorctl -c {conf}" in status.stdout

    assert supervisorctl(conf, "stop", "s1").returncode != 0  # the bare node name is no process of supervisord's
    stopped = supervisorctl(conf, "stop", "streamers:s1")
    assert stopped.returncode == 0 and "s1: stopped" in stopped.stdout, stopped.stdout + stopped.stderr
    assert re.search(r"^streamers:s1\s+STOPPED", supervisorctl(conf, "status").stdout, re.M)

    run.proc.send_signal(signal.SIGTERM)
    assert run.wait() == 143
    assert wait_gone(tmp_path) == []
