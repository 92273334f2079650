"""`logstream run` of an etcd-mode cluster file against a real etcd on loopback: two mediators and
two streamers (each with its own root) start and are announced ready once every streamer holds an
etcd lease; `logstream status FILE --json` lists both mediators with their addresses and the
ownership table read from etcd; SIGTERM stops everything, leaving no process."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import jsonschema
import pytest
from etcd_server import EtcdServer
from test_run import Run, runs  # noqa: F401 - the fixture

from logstream._proto import logstream_pb2 as pb
from logstream._proto import logstream_pb2_grpc as pb_grpc
from logstream.commands import status
from logstream.node.auth import call_metadata
from logstream.node.token_file import read_token
from logstream.node.status_schema import CLUSTER
from netports import reserve_ports
from watched import wait_gone

pytestmark = pytest.mark.e2e

READY = r'logstream: cluster "etcd-e2e" ready in (\d+\.\d)s: etcd (\S+), mediators (\S+), (\S+), 2 streamers'


@pytest.fixture
def etcd_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdServer]:
    # Outside tmp_path: the check that the run left no process behind looks for tmp_path.
    server = EtcdServer(tmp_path_factory.mktemp("etcd")).start()
    try:
        yield server
    finally:
        server.stop()


def test_run_an_etcd_cluster_with_two_mediators_and_show_its_ownership_table(
        tmp_path: Path, runs: list[Run], etcd_server: EtcdServer,  # noqa: F811
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    m1, m2, s1, s2 = reserve_ports(4)
    file = tmp_path / "cluster.toml"
    file.write_text(
        "[cluster]\nname = 'etcd-e2e'\nrun_dir = 'run'\n"
        f"[etcd]\nendpoints = {json.dumps(etcd_server.endpoints)}\nttl = '2s'\n"
        f"[mediator]\ncount = 2\nport = {m1}\ngrace = '500ms'\n"
        f"[[mediators]]\nname = 'm2'\nport = {m2}\n"
        f"[streamers]\ncount = 2\nport = {s1}\ngrace = '500ms'\n"
        f"[[streamer]]\nname = 's1'\npath = 'root-s1'\n"
        f"[[streamer]]\nname = 's2'\nport = {s2}\npath = 'root-s2'\n")
    run = Run(tmp_path, [str(file)])
    runs.append(run)
    ready = run.wait_for(READY)
    assert ready.group(2, 3, 4) == (",".join(etcd_server.endpoints), f"127.0.0.1:{m1}", f"127.0.0.1:{m2}")

    token = read_token(tmp_path / "run" / "cluster.token")
    with grpc.insecure_channel(f"127.0.0.1:{s1}") as channel:
        stub = pb_grpc.LogStreamerStub(channel)  # type: ignore[no-untyped-call]
        stub.Log(pb.LogRequest(path="app", filename="a", line="hello"), metadata=call_metadata(token=token),
                 timeout=10)
    assert (tmp_path / "root-s1" / "app" / "a.log").read_text() == "hello\n"

    monkeypatch.chdir(tmp_path)
    deadline = time.monotonic() + 20
    while True:  # supervisord counts a node RUNNING only after startsecs
        capsys.readouterr()
        code = status.cluster_main(str(file), ["--json"])
        view = json.loads(capsys.readouterr().out)
        if code == 0:
            break
        assert time.monotonic() < deadline, view
        time.sleep(0.2)
    assert [(m["name"], m["addr"]) for m in view["mediators"]] == [("m1", f"127.0.0.1:{m1}"), ("m2", f"127.0.0.1:{m2}")]
    assert all(m["error"] is None and m["mediator_id"] for m in view["mediators"])
    assert [p["name"] for p in view["supervisord"]["processes"]] == ["m1", "m2", "s1", "s2"]
    jsonschema.validate(view, CLUSTER)
    etcd = view["etcd"]
    assert etcd["cluster"] == "etcd-e2e" and etcd["endpoints"] == etcd_server.endpoints
    assert etcd["members"] == {"s1": f"127.0.0.1:{s1}", "s2": f"127.0.0.1:{s2}"}
    assert etcd["owners"] == [{"path": "app", "filename": "a", "owner": "s1"}]
    capsys.readouterr()
    assert status.cluster_main(str(file), []) == 0
    table = capsys.readouterr().out
    assert "owned keys: 1" in table and f"mediator m2 127.0.0.1:{m2} (id " in table

    run.proc.send_signal(signal.SIGTERM)
    assert run.wait() == 143
    assert wait_gone(tmp_path) == []
    # The streamers revoked their leases on the way out: their records are gone from etcd at once.
    deadline = time.monotonic() + 5
    while True:
        code = status.cluster_main(str(file), ["--json"])
        after = json.loads(capsys.readouterr().out)["etcd"]
        if after.get("members") == {} and after.get("owners") == []:
            break
        assert time.monotonic() < deadline, after
        time.sleep(0.1)


def test_run_starts_a_managed_etcd_before_the_nodes_and_stops_it_with_them(
        tmp_path: Path, runs: list[Run],  # noqa: F811
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from netports import reserve_consecutive_ports

    client, _peer = reserve_consecutive_ports(2)
    mediator, s1 = reserve_ports(2)
    file = tmp_path / "cluster.toml"
    file.write_text(
        "[cluster]\nname = 'managed'\nrun_dir = 'run'\n"
        f"[etcd]\nmembers = 1\nport = {client}\nttl = '2s'\n"
        f"[mediator]\nport = {mediator}\ngrace = '500ms'\n"
        f"[streamers]\ncount = 1\nport = {s1}\npath = 'logs'\ngrace = '500ms'\n")
    run = Run(tmp_path, [str(file)])
    runs.append(run)
    ready = run.wait_for(r'logstream: cluster "managed" ready in (\d+\.\d)s: etcd (\S+) \(started here\), '
                         r'mediator (\S+), 1 streamer')
    assert ready.group(2, 3) == (f"127.0.0.1:{client}", f"127.0.0.1:{mediator}")
    assert (tmp_path / "run" / "etcd" / "e1").is_dir()
    token = read_token(tmp_path / "run" / "cluster.token")
    with grpc.insecure_channel(f"127.0.0.1:{s1}") as channel:
        stub = pb_grpc.LogStreamerStub(channel)  # type: ignore[no-untyped-call]
        stub.Log(pb.LogRequest(path="app", filename="a", line="hello"), metadata=call_metadata(token=token),
                 timeout=10)
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    status.cluster_main(str(file), ["--json"])
    view = json.loads(capsys.readouterr().out)
    assert [p["name"] for p in view["supervisord"]["processes"]] == ["e1", "mediator", "s1"]
    assert view["etcd"]["owners"] == [{"path": "app", "filename": "a", "owner": "s1"}]
    run.proc.send_signal(signal.SIGINT)
    assert run.wait() == 130
    out = "\n".join(run.lines)
    assert out.index("stopped: s1 (exit status 0)") < out.index("stopped: e1")  # etcd last
    assert wait_gone(tmp_path) == []  # etcd too: its command line names its data dir in tmp_path
