"""The cluster file's etcd mode: `[etcd]` (an existing etcd's endpoints, or 1 or 3 managed members),
several mediators (`[mediator] count`, `[[mediators]]`), what each node is started with, the
supervisord programs (etcd first), configs/ha.toml, and the checks that refuse what cannot run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import jsonschema
import pytest
from supervisor.options import ServerOptions

from logstream.cluster import ConfigError, check_files, load_cluster, plan_nodes, to_toml
from logstream.config.flags import load_settings
from logstream.config.settings import MediatorSettings, StreamerSettings
from logstream.node.token_file import ensure_token
from logstream.supervisor.render import process_name, render, run_paths
from logstream.node.status_schema import CLUSTER

REPO = Path(__file__).resolve().parents[2]
HA = REPO / "configs" / "ha.toml"


def problems(sets: list[str], file: Path | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_cluster(file, sets, environ={})
    return caught.value.problems


def flags_of(node: object) -> dict[str, str]:
    return dict(flag.split("=", 1) for flag in node.flags if "=" in flag)  # type: ignore[attr-defined]


def test_ha_toml_passes_config_check_and_plans_three_etcd_members_two_mediators_three_streamers(
        tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "logstream", "config", "check", str(HA)], capture_output=True,
                          text=True, timeout=60, cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert "3 members" in done.stdout and "2 mediators and 3 streamers" in done.stdout
    config = load_cluster(HA, environ={})
    assert check_files(config, tmp_path) == []
    nodes = plan_nodes(config, tmp_path)
    assert [(n.name, n.role, n.port) for n in nodes] == [
        ("e1", "etcd", 2479), ("e2", "etcd", 2481), ("e3", "etcd", 2483),
        ("m1", "mediator", 8200), ("m2", "mediator", 8201),
        ("s1", "streamer", 8280), ("s2", "streamer", 8281), ("s3", "streamer", 8282)]
    e2 = flags_of(nodes[1])
    assert e2["--name"] == "e2" and e2["--data-dir"] == str(tmp_path / ".logstream/ha/etcd/e2")
    assert e2["--listen-client-urls"] == "http://127.0.0.1:2481"
    assert e2["--listen-peer-urls"] == "http://127.0.0.1:2482"
    assert e2["--initial-cluster"] == ("e1=http://127.0.0.1:2480,e2=http://127.0.0.1:2482,"
                                       "e3=http://127.0.0.1:2484")
    assert nodes[0].argv("/py")[0] == "etcd"
    s1 = flags_of(nodes[5])
    assert s1["-etcd"] == "127.0.0.1:2479,127.0.0.1:2481,127.0.0.1:2483"
    assert (s1["-cluster"], s1["-etcd-ttl"]) == ("ha", "5s") and "-mediator" not in s1
    m2 = flags_of(nodes[4])
    assert flags_of(nodes[3])["-id"] == "m1" and m2["-id"] == "m2"
    # The mediators route by etcd too: the same endpoints and cluster, no lease ledger of their own.
    assert (m2["-etcd"], m2["-cluster"], m2["-reuse-port"]) == (s1["-etcd"], "ha", "false")
    assert "-lease-file" not in m2
    # Every node's flags are what its role accepts (the etcd members aside: etcd's own).
    ensure_token(Path(s1["-token-file"]))
    for node in nodes[3:]:
        model = MediatorSettings if node.role == "mediator" else StreamerSettings
        settings = load_settings(model, list(node.flags), "test", "")  # type: ignore[type-var]
        assert settings.port == node.port


def test_an_existing_etcd_is_dialled_not_started_and_its_cluster_name_defaults_to_the_clusters() -> None:
    config = load_cluster(None, ["cluster.name=prod", "etcd.endpoints=10.0.0.1:2379,10.0.0.2:2379"], environ={})
    nodes = plan_nodes(config, Path("/x"))
    assert [n.name for n in nodes] == ["mediator", "s1", "s2", "s3"]
    assert flags_of(nodes[1])["-etcd"] == "10.0.0.1:2379,10.0.0.2:2379"
    assert flags_of(nodes[1])["-cluster"] == "prod"
    named = load_cluster(None, ["cluster.name=prod", "etcd.endpoints=etcd.internal:2379", "etcd.cluster=blue"],
                         environ={})
    assert flags_of(plan_nodes(named, Path("/x"))[1])["-cluster"] == "blue"
    assert load_cluster(None, ["etcd.endpoints=etcd.internal:2379"], environ={}).etcd_names() == []


def test_without_etcd_the_nodes_are_planned_exactly_as_before() -> None:
    nodes = plan_nodes(load_cluster(None, environ={}), Path("/x"))
    assert [n.name for n in nodes] == ["mediator", "s1", "s2", "s3"]
    assert flags_of(nodes[1])["-mediator"] == "127.0.0.1:8000"
    assert not any(flag.startswith(("-etcd", "-cluster")) for node in nodes for flag in node.flags)
    assert flags_of(nodes[0])["-lease-file"].endswith("/mediator.lease")


def test_several_mediators_without_etcd_are_refused_in_one_line() -> None:
    assert problems(["mediator.count=2"]) == [
        "--set mediator.count=2: mediator.count: 2 mediators need an [etcd] section (the embedded mediator "
        "keeps the cluster's state itself: only one can run)"]


@pytest.mark.parametrize(("sets", "key"), [
    (["etcd.members=2"], "etcd.members"),
    (["etcd.members=1", "etcd.endpoints=127.0.0.1:2379"], "give etcd.endpoints"),
    (["etcd.ttl=1500ms", "etcd.members=1"], "etcd.ttl"),
    (["etcd.endpoints=a.example:2379,b.example:2379"], "etcd.endpoints"),
    (["etcd.endpoints=127.0.0.1:99999"], "etcd.endpoints"),
])
def test_an_etcd_section_that_cannot_work_is_one_line_naming_its_key(sets: list[str], key: str) -> None:
    found = problems(sets)
    assert len(found) == 1 and f": {key}" in found[0], found


def test_an_etcd_section_with_neither_endpoints_nor_members_is_refused(tmp_path: Path) -> None:
    file = tmp_path / "c.toml"
    file.write_text("[etcd]\nttl = '3s'\n")
    (line,) = problems([], file)
    assert line.startswith(f"{file}: give etcd.endpoints = [...]") and "etcd.members = 1 or 3" in line


def test_mediators_count_ports_up_and_take_their_own_overrides(tmp_path: Path) -> None:
    file = tmp_path / "c.toml"
    file.write_text("[etcd]\nmembers = 1\n[mediator]\ncount = 3\nport = 9000\n"
                    "[[mediators]]\nname = 'm3'\nport = 9100\nbatch_lines = 7\n")
    config = load_cluster(file, environ={})
    mediators = [n for n in plan_nodes(config, tmp_path) if n.role == "mediator"]
    assert [(n.name, n.port, n.address) for n in mediators] == [
        ("m1", 9000, "127.0.0.1:9000"), ("m2", 9001, "127.0.0.1:9001"), ("m3", 9100, "127.0.0.1:9100")]
    assert flags_of(mediators[2])["-batch-lines"] == "7" and flags_of(mediators[0])["-batch-lines"] == "20000"
    shown = tmp_path / "shown.toml"
    shown.write_text(to_toml(config))  # `config show`: written and read back alike
    assert load_cluster(shown, environ={}) == config
    assert load_cluster(None, [], environ={}).mediator_names() == ["mediator"]


@pytest.mark.parametrize(("text", "fragment"), [
    ("[etcd]\nmembers = 1\n[mediator]\ncount = 2\n[[mediators]]\nname = 'm5'\n", "no mediator 'm5'"),
    ("[[mediators]]\nname = 'm1'\n", "set [mediator] itself"),
    ("[etcd]\nmembers = 1\n[mediator]\ncount = 2\n[[mediators]]\nname = 'm2'\n[[mediators]]\nname = 'm2'\n",
     "two [[mediators]] tables"),
    ("[etcd]\nmembers = 1\nport = 8080\n", "port 8080 of streamer s1 is also the port of etcd member e1"),
    ("[etcd]\nmembers = 1\n[mediator]\ncount = 2\nport = 8079\n", "port 8080 of streamer s1 is also the port of mediator m2"),
    ("[etcd]\nmembers = 1\n[mediator]\ncount = 2\n[[mediators]]\nname = 'm2'\nport = 8000\n",
     "port 8000 of mediator m2 is also the port of mediator m1"),
])
def test_mediator_tables_and_ports_that_clash_are_refused(tmp_path: Path, text: str, fragment: str) -> None:
    file = tmp_path / "c.toml"
    file.write_text(text)
    found = problems([], file)
    assert any(fragment in line for line in found), found


def test_a_managed_etcd_serves_client_tls_from_the_tls_section(tmp_path: Path) -> None:
    config = load_cluster(None, ["etcd.members=1", "tls.ca=c/ca.crt", "tls.crt=c/n.crt", "tls.pk=c/n.key"],
                          environ={})
    (member,) = [n for n in plan_nodes(config, tmp_path) if n.role == "etcd"]
    flags = flags_of(member)
    assert flags["--listen-client-urls"] == "https://127.0.0.1:2379"
    assert flags["--cert-file"] == str(tmp_path / "c/n.crt") and flags["--key-file"] == str(tmp_path / "c/n.key")
    assert flags["--trusted-ca-file"] == str(tmp_path / "c/ca.crt") and "--client-cert-auth" in member.flags
    server_only = load_cluster(None, ["etcd.members=1", "tls.ca=c/ca.crt", "tls.crt=c/n.crt", "tls.pk=c/n.key",
                                      "tls.verify_clients=false"], environ={})
    (member,) = [n for n in plan_nodes(server_only, tmp_path) if n.role == "etcd"]
    assert "--client-cert-auth" not in member.flags and "--cert-file" in flags_of(member)


def test_supervisord_starts_etcd_first_then_the_mediators_then_the_streamers(tmp_path: Path) -> None:
    config = load_cluster(HA, environ={})
    nodes = plan_nodes(config, tmp_path)
    paths = run_paths(tmp_path / "run")
    paths.logs.mkdir(parents=True)
    paths.conf.write_text(render(config.cluster.name, nodes, paths, tmp_path, "/venv/bin/python"))
    options = ServerOptions()
    options.realize(args=["-c", str(paths.conf)])
    groups = {group.name: group for group in options.process_group_configs}
    assert {name: groups[name].priority for name in ("e1", "e2", "e3", "m1", "m2", "streamers")} == {
        "e1": 0, "e2": 0, "e3": 0, "m1": 1, "m2": 1, "streamers": 2}
    (e1,) = groups["e1"].process_configs
    assert e1.command.split()[0] == "etcd" and "--name=e1" in e1.command
    assert [process_name(n) for n in ("e1", "m2", "mediator", "s3")] == ["e1", "m2", "mediator", "streamers:s3"]


def test_run_without_an_etcd_program_says_so_and_exits_2(tmp_path: Path) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    done = subprocess.run([sys.executable, "-m", "logstream", "run", str(HA), "--run-dir", str(tmp_path / "run")],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path,
                          env={**os.environ, "PATH": str(empty)})
    assert done.returncode == 2
    (line,) = done.stderr.splitlines()
    assert line.startswith("logstream run: error: ") and "no `etcd` program on the PATH" in line
    assert "apt-get install etcd-server" in line
    assert not (tmp_path / "run" / "supervisord.conf").exists()  # nothing was started


@pytest.mark.parametrize("fmt", ["systemd", "supervisord", "k8s"])
def test_export_refuses_an_etcd_mode_cluster_in_one_line(tmp_path: Path, fmt: str) -> None:
    done = subprocess.run([sys.executable, "-m", "logstream", "export", "--format", fmt, "--out",
                           str(tmp_path / "out"), str(HA)], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert done.returncode == 2
    (line,) = done.stderr.splitlines()
    assert "export writes a single-mediator cluster without [etcd] only" in line
    assert not (tmp_path / "out").exists()


def test_set_patches_one_mediators_table_as_it_does_a_streamers() -> None:
    config = load_cluster(HA, ["mediators.m2.port=8300", "streamer.s1.size=2MB"], environ={})
    nodes = {n.name: n for n in plan_nodes(config, Path("/x"))}
    assert (nodes["m1"].port, nodes["m2"].port) == (8200, 8300)
    assert flags_of(nodes["s1"])["-size"] == "2MB"
    assert problems(["mediators.m2.port=abc"], HA) == [
        "--set mediators.m2.port=abc: mediators[0].port: Input should be a valid integer, unable to parse string "
        "as an integer (got 'abc')"]
    (line,) = problems(["mediators.m2=1"], HA)
    assert "per-node keys are mediators.NAME.KEY=VALUE" in line


def test_status_of_an_etcd_cluster_that_is_not_running_names_every_mediator_and_etcd(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from netports import refusing_port

    from logstream.commands.status import cluster_main

    monkeypatch.chdir(tmp_path)
    with refusing_port() as etcd, refusing_port() as m1, refusing_port() as m2:
        file = tmp_path / "c.toml"
        file.write_text(f"[cluster]\nrun_dir = 'run'\n[etcd]\nendpoints = ['127.0.0.1:{etcd}']\n"
                        f"[mediator]\ncount = 2\nport = {m1}\n[[mediators]]\nname = 'm2'\nport = {m2}\n")
        started = time.monotonic()
        assert cluster_main(str(file), ["--json"]) == 1
        view = json.loads(capsys.readouterr().out)
        assert [(m["name"], m["addr"], m["error"] is not None) for m in view["mediators"]] == [
            ("m1", f"127.0.0.1:{m1}", True), ("m2", f"127.0.0.1:{m2}", True)]
        assert view["etcd"]["endpoints"] == [f"127.0.0.1:{etcd}"] and view["etcd"]["error"]
        assert view["etcd"]["owners"] is None and view["etcd"]["members"] is None
        jsonschema.validate(view, CLUSTER)
        assert cluster_main(str(file), []) == 1
        text = capsys.readouterr().out
        assert f"mediator m2 127.0.0.1:{m2}: unreachable" in text
        assert f"etcd 127.0.0.1:{etcd} (records under /logstream/local/): unreachable" in text
        assert time.monotonic() - started < 20


def test_workers_share_their_mediators_port_in_etcd_mode_only(tmp_path: Path) -> None:
    config = load_cluster(HA, ["mediator.workers=2"], environ={})
    mediators = [n for n in plan_nodes(config, tmp_path) if n.role == "mediator"]
    assert [(n.name, n.port) for n in mediators] == [("m1", 8200), ("m1-2", 8200), ("m2", 8201), ("m2-2", 8201)]
    flags = [flags_of(n) for n in mediators]
    assert [f["-id"] for f in flags] == ["m1", "m1-2", "m2", "m2-2"]
    assert all(f["-reuse-port"] == "true" for f in flags)
    ensure_token(Path(flags[0]["-token-file"]))
    for node in mediators:  # each process's flags are what the mediator accepts
        assert load_settings(MediatorSettings, list(node.flags), "test", "").reuse_port  # type: ignore[type-var]
    assert problems(["mediator.workers=2"]) == [
        "--set mediator.workers=2: mediator.workers: 2 processes per mediator need an [etcd] section "
        "(only a stateless router may share its port)"]
