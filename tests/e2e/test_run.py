"""The real `logstream run` with real mediator and streamers in tmp_path: ready -> lines sent
through the mediator -> files present -> `logstream status FILE` shows every node -> a streamer
killed with SIGKILL is restarted and registers again -> SIGINT exits 130 leaving no process;
`logstream stop FILE` stops a running cluster; a mutual-TLS cluster works end to end."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import jsonschema
import pytest

from logstream._proto import logstream_pb2, logstream_pb2_grpc
from logstream.commands import status
from logstream.node.status_schema import CLUSTER
from netports import reserve_ports
from watched import Watched, kill_leftovers, wait_gone

pytestmark = pytest.mark.e2e

READY = r'logstream: cluster "(\w+)" ready in (\d+\.\d)s: mediator (\S+)(?: \(remote\))?, (\d+) streamers?'


def write_cluster(tmp_path: Path, count: int = 3, extra: str = "") -> tuple[Path, int, list[int]]:
    """A cluster file on free ports. Streamer ports are given per node (free ports need not be
    consecutive), which also exercises the [[streamer]] overrides."""
    mediator, *streamers = reserve_ports(count + 1)
    tables = "".join(f"[[streamer]]\nname = 's{i}'\nport = {port}\n" for i, port in enumerate(streamers, start=1))
    path = tmp_path / "cluster.toml"
    path.write_text(
        f"[cluster]\nname = 'e2e'\nrun_dir = 'run'\n"
        f"[mediator]\nport = {mediator}\nhealth_interval = '500ms'\ngrace = '500ms'\n"
        f"[streamers]\ncount = {count}\nport = {streamers[0]}\npath = 'logs'\ngrace = '500ms'\n"
        f"{extra}{tables}"
    )
    return path, mediator, streamers


class Run(Watched):
    """`logstream run ARGS` as a subprocess."""

    def __init__(self, cwd: Path, args: list[str], env: dict[str, str] | None = None) -> None:
        # `run` records where it started under XDG_RUNTIME_DIR: keep the tests' records in tmp.
        super().__init__([sys.executable, "-m", "logstream", "run", *args], cwd,
                         {"XDG_RUNTIME_DIR": str(cwd / "xdg"), **(env or {})})


@pytest.fixture
def runs(tmp_path: Path) -> Iterator[list[Run]]:
    started: list[Run] = []
    yield started
    for run in started:
        run.kill()
    kill_leftovers(tmp_path)


def send(target: str, lines: list[tuple[str, str, str]], creds: grpc.ChannelCredentials | None = None) -> None:
    channel = grpc.insecure_channel(target) if creds is None else grpc.secure_channel(target, creds)
    with channel:
        stub = logstream_pb2_grpc.LogStreamerStub(channel)  # type: ignore[no-untyped-call]
        for path, filename, line in lines:
            reply = stub.Log(logstream_pb2.LogRequest(path=path, filename=filename, line=line), timeout=10)
            assert reply.res


def cluster_status(tmp_path: Path, file: Path, monkeypatch: pytest.MonkeyPatch,
                   capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, object]]:
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    code = status.cluster_main(str(file), ["--json"])
    return code, json.loads(capsys.readouterr().out)


def wait_all_alive(tmp_path: Path, file: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                   names: list[str], timeout_s: float = 20.0) -> dict[str, object]:
    deadline = time.monotonic() + timeout_s
    view: dict[str, object] = {}
    while time.monotonic() < deadline:
        code, view = cluster_status(tmp_path, file, monkeypatch, capsys)
        alive = {s["id"] for s in view["mediators"][0]["streamers"] if s["alive"]}  # type: ignore[index]
        if code == 0 and alive == set(names):
            return view
        time.sleep(0.2)
    raise AssertionError(f"not all of {names} alive: {view}")


def test_run_send_status_sigkill_restart_and_sigint(
    tmp_path: Path, runs: list[Run], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    file, mediator_port, streamer_ports = write_cluster(tmp_path)
    run = Run(tmp_path, [str(file)])
    runs.append(run)
    ready = run.wait_for(READY)
    assert ready.group(1, 3, 4) == ("e2e", f"127.0.0.1:{mediator_port}", "3")
    summary = ready.string
    for name, port in zip(("s1", "s2", "s3"), streamer_ports):
        assert f"{name} 127.0.0.1:{port}" in summary
    assert summary.endswith("logs in ./logs")
    assert len([line for line in run.lines if " ready in " in line]) == 1

    # Lines sent through the mediator land in files under the log root.
    lines = [(f"app{i % 3}", f"file{i % 5}", f"line {i}") for i in range(40)]
    send(f"127.0.0.1:{mediator_port}", lines)
    for path, filename in {(p, f) for p, f, _ in lines}:
        written = (tmp_path / "logs" / path / f"{filename}.log").read_text().splitlines()
        assert written == [line for p, f, line in lines if (p, f) == (path, filename)]

    # logstream status FILE: supervisord's processes and the mediator's streamers.
    view = wait_all_alive(tmp_path, file, monkeypatch, capsys, ["s1", "s2", "s3"])
    jsonschema.validate(view, CLUSTER)
    processes = view["supervisord"]["processes"]  # type: ignore[index]
    assert [(p["name"], p["state"]) for p in processes] == [
        ("mediator", "RUNNING"), ("s1", "RUNNING"), ("s2", "RUNNING"), ("s3", "RUNNING")]
    assert {s["addr"] for s in view["mediators"][0]["streamers"]} == {  # type: ignore[index]
        f"127.0.0.1:{port}" for port in streamer_ports}
    capsys.readouterr()
    assert status.cluster_main(str(file), []) == 0
    table = capsys.readouterr().out
    for name in ("mediator", "s1", "s2", "s3"):
        assert re.search(rf"^{name}\s+RUNNING\s+\d+", table, re.M), table

    # SIGKILL a streamer: supervisord restarts it and it registers again.
    victim = next(p for p in processes if p["name"] == "s2")
    mark = len(run.lines)
    os.kill(victim["pid"], signal.SIGKILL)
    run.wait_for(r"exited: s2 \(terminated by SIGKILL; not expected\)", start=mark)
    run.wait_for(r"spawned: 's2' with pid", start=mark)
    run.wait_for(r"mediator +\| .*s2@127\.0\.0\.1:\d+ registered", start=mark)
    view = wait_all_alive(tmp_path, file, monkeypatch, capsys, ["s1", "s2", "s3"])
    assert next(p for p in view["supervisord"]["processes"] if p["name"] == "s2")["pid"] != victim["pid"]  # type: ignore[index]
    send(f"127.0.0.1:{mediator_port}", [("after", "restart", "still writing")])
    assert (tmp_path / "logs" / "after" / "restart.log").read_text() == "still writing\n"

    run.proc.send_signal(signal.SIGINT)
    assert run.wait() == 130
    out = "\n".join(run.lines)
    assert out.index("stopped: s1 (exit status 0)") < out.index("stopped: mediator (exit status 0)")
    assert wait_gone(tmp_path) == []
    assert not (tmp_path / "run" / "supervisor.sock").exists()


def test_logstream_stop_stops_a_running_cluster(tmp_path: Path, runs: list[Run]) -> None:
    file, _, _ = write_cluster(tmp_path, count=1)
    run = Run(tmp_path, [str(file)])
    runs.append(run)
    run.wait_for(READY)
    done = subprocess.run([sys.executable, "-m", "logstream", "stop", str(file)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert 'logstream stop: cluster "e2e" stopped in' in done.stdout
    assert run.wait() == 0
    assert wait_gone(tmp_path) == []


def test_stop_status_and_restart_from_another_folder(tmp_path: Path) -> None:
    """The cluster file's relative run_dir counts from where `run` started; the other commands,
    typed elsewhere with another path to the same file, find it through run's record."""
    project, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    project.mkdir()
    elsewhere.mkdir()
    file, _, _ = write_cluster(project, count=1)
    env = {**os.environ, "XDG_RUNTIME_DIR": str(tmp_path / "xdg")}
    relative = os.path.join("..", "project", file.name)

    def logstream(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "logstream", *args], cwd=elsewhere, env=env,
                              capture_output=True, text=True, timeout=60)

    nothing = logstream("stop", relative)  # nothing runs yet: say where we looked
    assert nothing.returncode == 1
    assert str(elsewhere / "run" / "supervisor.sock") in nothing.stderr, nothing.stderr
    run = Run(project, [file.name], env={"XDG_RUNTIME_DIR": str(tmp_path / "xdg")})
    try:
        run.wait_for(READY)
        status_out = logstream("status", relative, "--json")
        view = json.loads(status_out.stdout)  # (exit 1 while supervisord still says STARTING)
        assert view["run_dir"] == str(project / "run") and view["supervisord"]["error"] is None, view
        assert [p["name"] for p in view["supervisord"]["processes"]] == ["mediator", "s1"]
        assert all(p["state"] in ("STARTING", "RUNNING") for p in view["supervisord"]["processes"]), view
        restarted = logstream("restart", relative, "s1")
        assert restarted.returncode == 0, restarted.stderr
        stopped = logstream("stop", relative)
        assert stopped.returncode == 0, stopped.stderr
        assert 'logstream stop: cluster "e2e" stopped in' in stopped.stdout
        assert run.wait() == 0
        assert wait_gone(tmp_path) == []
    finally:
        run.kill()
        kill_leftovers(tmp_path)


def test_a_mutual_tls_cluster(tmp_path: Path, runs: list[Run], tls_files: object) -> None:
    files = tls_files
    extra = (f"[tls]\nca = '{files.ca}'\ncrt = '{files.node_crt}'\npk = '{files.node_key}'\n")  # type: ignore[attr-defined]
    file, mediator_port, _ = write_cluster(tmp_path, count=2, extra=extra)
    run = Run(tmp_path, [str(file)])
    runs.append(run)
    run.wait_for(READY)
    creds = grpc.ssl_channel_credentials(
        root_certificates=Path(files.ca).read_bytes(),  # type: ignore[attr-defined]
        private_key=Path(files.client_key).read_bytes(),  # type: ignore[attr-defined]
        certificate_chain=Path(files.client_crt).read_bytes(),  # type: ignore[attr-defined]
    )
    send(f"127.0.0.1:{mediator_port}", [("tls", "app", "over mutual TLS")], creds)
    assert (tmp_path / "logs" / "tls" / "app.log").read_text() == "over mutual TLS\n"
    with pytest.raises(grpc.RpcError):  # no client certificate: refused
        send(f"127.0.0.1:{mediator_port}", [("tls", "app", "anonymous")],
             grpc.ssl_channel_credentials(root_certificates=Path(files.ca).read_bytes()))  # type: ignore[attr-defined]
    run.proc.send_signal(signal.SIGTERM)
    assert run.wait() == 143
    assert wait_gone(tmp_path) == []


def test_only_runs_part_of_a_cluster_like_separate_hosts(tmp_path: Path, runs: list[Run]) -> None:
    file, mediator_port, streamer_ports = write_cluster(tmp_path, count=2)
    # Separate run dirs, one cluster token: the file the machines share (the first run makes it).
    token = ["--set", f"cluster.token_file={tmp_path / 'shared.token'}"]
    mediator = Run(tmp_path, [str(file), "--only", "mediator", "--run-dir", "host-a", *token])
    runs.append(mediator)
    ready = mediator.wait_for(READY)
    assert ready.string.endswith(f"mediator 127.0.0.1:{mediator_port}, 0 streamers (s1, s2 elsewhere)")
    streamers = Run(tmp_path, [str(file), "--only", "s1,s2", "--run-dir", "host-b", *token])
    runs.append(streamers)
    summary = streamers.wait_for(READY).string
    assert f"mediator 127.0.0.1:{mediator_port} (remote), 2 streamers (s1 127.0.0.1:{streamer_ports[0]}" in summary
    assert not any(" | " in line and line.startswith("mediator") for line in streamers.lines)
    send(f"127.0.0.1:{mediator_port}", [("only", "app", "across two supervisords")])
    assert (tmp_path / "logs" / "only" / "app.log").read_text() == "across two supervisords\n"
    streamers.proc.send_signal(signal.SIGTERM)
    mediator.proc.send_signal(signal.SIGTERM)
    assert (streamers.wait(), mediator.wait()) == (143, 143)
    assert wait_gone(tmp_path) == []
