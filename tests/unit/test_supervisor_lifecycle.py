"""The run loop with a real supervisord and real (small, fake-node) programs: ordered stop, exit
codes 130/143, restarts after SIGKILL, stop/restart/status over XML-RPC, a refused second run, and
no process left behind, even when a node ignores SIGTERM or supervisord itself hangs."""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import jsonschema
import pytest

from logstream.commands import status
from logstream.commands import run
from logstream.commands import control
from logstream.supervisor import manager
from logstream.node.status_schema import CLUSTER as CLUSTER_SCHEMA
from netports import RefusingPort
from watched import Watched, kill_leftovers, wait_gone

FAKE_NODE = """\
import os, signal, sys, time
name = next(a[4:] for a in sys.argv if a.startswith("-id="))
if name in os.environ.get("FAKE_CRASH", "").split(","):
    sys.exit("fake crash")
print(f"fake {name} listening on 127.0.0.1:0 pid {os.getpid()}", flush=True)
print(f"fake {name} says hello on stderr", file=sys.stderr, flush=True)
stop = False
def on_term(*_):
    global stop
    stop = True
if name not in os.environ.get("FAKE_HANG", "").split(","):
    signal.signal(signal.SIGTERM, on_term)
else:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
while not stop:
    time.sleep(0.05)
print(f"fake {name} bye", flush=True)
"""

DRIVER = """\
import sys
from pathlib import Path
from logstream.cluster import load_cluster, plan_nodes
from logstream.supervisor.render import run_paths
from logstream.supervisor.manager import Runner

cwd = Path.cwd()
config = load_cluster(sys.argv[1], sys.argv[3:])
paths = run_paths(cwd / config.cluster.run_dir)
nodes = plan_nodes(config, cwd)

def ready():
    logs = [paths.node_log(n.name) for n in nodes]
    return all(p.exists() and "listening" in p.read_text() for p in logs)

sys.exit(Runner(config, nodes, paths, cwd, python=sys.argv[2], ready=ready).run())
"""

CLUSTER = """\
[cluster]
name = "fake"
run_dir = "run"
[mediator]
port = {mediator_port}
grace = "100ms"
[streamers]
count = 2
grace = "100ms"
path = "logs"
"""


class Driven(Watched):
    """`logstream run`'s Runner in a subprocess, driving fake nodes. The fake mediator serves no
    status; its port is held here, bound and never listening, so asking it is refused whatever
    else runs on this machine (not only when nothing happens to listen on the default port)."""

    def __init__(self, tmp_path: Path, env: dict[str, str] | None = None) -> None:
        fake = tmp_path / "fakepy"
        fake.write_text(f"#!{sys.executable}\n{FAKE_NODE}")
        fake.chmod(0o755)
        self._mediator_port = RefusingPort()
        port = self._mediator_port.port
        (tmp_path / "driver.py").write_text(DRIVER)
        (tmp_path / "cluster.toml").write_text(CLUSTER.format(mediator_port=port))
        self.tmp_path = tmp_path
        super().__init__([sys.executable, str(tmp_path / "driver.py"), "cluster.toml", str(fake)], tmp_path, env)

    def kill(self) -> None:
        super().kill()
        self._mediator_port.close()


@pytest.fixture
def cleanup(tmp_path: Path) -> Iterator[list[Driven]]:
    started: list[Driven] = []
    yield started
    for driven in started:
        driven.kill()
    kill_leftovers(tmp_path)


def start(tmp_path: Path, cleanup: list[Driven], env: dict[str, str] | None = None) -> Driven:
    driven = Driven(tmp_path, env)
    cleanup.append(driven)
    driven.wait_for(r'logstream: cluster "fake" ready in \d+\.\ds')
    return driven


def test_a_running_cluster_restarts_serves_control_and_stops_on_sigint(
    tmp_path: Path, cleanup: list[Driven], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    driven = start(tmp_path, cleanup)
    driven.wait_for(r"^s1 +\| fake s1 says hello on stderr")  # stderr is followed too, with a prefix
    monkeypatch.chdir(tmp_path)

    # SIGKILL of a node: supervisord starts it again.
    first = int(driven.wait_for(r"spawned: 's1' with pid (\d+)").group(1))
    mark = len(driven.lines)
    os.kill(first, signal.SIGKILL)
    again = int(driven.wait_for(r"spawned: 's1' with pid (\d+)", start=mark).group(1))
    assert again != first
    driven.wait_for(r"s1 +\| fake s1 listening", start=mark)

    # logstream restart FILE NODE
    assert control.restart_main(["cluster.toml", "s2"]) == 0
    assert re.search(r"s2 running \(pid \d+\)", capsys.readouterr().out)

    # logstream status FILE: supervisord's view (the fake mediator serves no status: exit 1)
    assert status.cluster_main("cluster.toml", ["--json"]) == 1
    view = json.loads(capsys.readouterr().out)
    assert [(p["name"], p["state"]) for p in view["supervisord"]["processes"]] == [
        ("mediator", "RUNNING"), ("s1", "RUNNING"), ("s2", "RUNNING")]
    assert view["mediators"][0]["error"] and view["mediators"][0]["streamers"] == []
    jsonschema.validate(view, CLUSTER_SCHEMA)

    # A second run of the same run directory is refused, and changes nothing.
    assert run.main(["cluster.toml"]) == 2
    assert "a cluster is already running from" in capsys.readouterr().err

    driven.proc.send_signal(signal.SIGINT)
    assert driven.wait() == 130
    out = "\n".join(driven.lines)
    # streamers stop before the mediator
    assert out.index("stopped: s1") < out.index("stopped: mediator")
    assert out.index("stopped: s2") < out.index("stopped: mediator")
    assert 'logstream: cluster "fake" stopped' in out
    assert wait_gone(tmp_path) == []
    assert not (tmp_path / "run" / "supervisor.sock").exists()


def test_sigterm_exits_143_even_when_a_node_ignores_it(tmp_path: Path, cleanup: list[Driven]) -> None:
    driven = start(tmp_path, cleanup, env={"FAKE_HANG": "s2"})
    started = time.monotonic()
    driven.proc.send_signal(signal.SIGTERM)
    assert driven.wait() == 143
    # supervisord SIGKILLs s2 after its stopwaitsecs (grace 100ms -> 1 + 5 s)
    assert time.monotonic() - started < 6 + 1 + 6 + manager.KILL_MARGIN_S
    assert "stopped: s2 (terminated by SIGKILL)" in "\n".join(driven.lines)
    assert wait_gone(tmp_path) == []


def test_a_second_signal_kills_a_hung_supervisord_and_its_nodes(tmp_path: Path, cleanup: list[Driven]) -> None:
    driven = start(tmp_path, cleanup)
    supervisord = int((tmp_path / "run" / "supervisord.pid").read_text())
    os.kill(supervisord, signal.SIGSTOP)  # supervisord hangs: it will never stop the nodes
    driven.proc.send_signal(signal.SIGINT)
    driven.wait_for(r"stopping the streamers")
    driven.proc.send_signal(signal.SIGINT)
    assert driven.wait(timeout_s=10) == 130
    out = "\n".join(driven.lines)
    assert "a second signal: killing supervisord and every node" in out
    assert re.search(r"s1 \(pid \d+\) outlived supervisord: killing it", out)
    assert wait_gone(tmp_path) == []


def test_logstream_stop_stops_a_running_cluster(
    tmp_path: Path, cleanup: list[Driven], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    driven = start(tmp_path, cleanup)
    monkeypatch.chdir(tmp_path)
    assert control.stop_main(["cluster.toml"]) == 0
    assert 'logstream stop: cluster "fake" stopped in' in capsys.readouterr().out
    assert driven.wait() == 0
    assert wait_gone(tmp_path) == []
    # Nothing runs any more: stop and restart say so.
    assert control.stop_main(["cluster.toml"]) == 1
    assert f"no cluster is running (no supervisord at {tmp_path / 'run' / 'supervisor.sock'})" in capsys.readouterr().err


def test_a_node_that_cannot_start_is_reported(tmp_path: Path, cleanup: list[Driven]) -> None:
    driven = Driven(tmp_path, env={"FAKE_CRASH": "s1"})
    cleanup.append(driven)
    # which node, why (its last output line), where to look; then the rest is stopped and run fails
    driven.wait_for(r"logstream: s1 failed to start and supervisord gave up on it: fake crash "
                    r"\(see \./run/logs/s1\.log\); stopping the cluster", timeout_s=30)
    assert driven.wait() == 1
    assert wait_gone(tmp_path) == []
    assert not any("FILE" in line for line in driven.lines), driven.lines  # no placeholder in a hint
