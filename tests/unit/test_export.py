"""`logstream export`: each format written and validated by the tool that reads it
(`systemd-analyze verify`, supervisord's own parser, the Kubernetes JSON schemas), the YAML
writer read back by PyYAML, and the command's errors (one line, exit 2, nothing left behind)."""

from __future__ import annotations

import configparser
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml as pyyaml
from hypothesis import given
from hypothesis import strategies as st
from supervisor.options import ServerOptions

from logstream.cluster import load_cluster, plan_nodes
from logstream.commands import export
from logstream.commands.main import main as logstream_main
from logstream.export import k8s, systemd, yaml
from logstream.supervisor.render import STOP_MARGIN_S, render, run_paths

K8S_VERSION = "1.37"


def cluster_file(folder: Path, extra: str = "") -> Path:
    path = folder / "cluster.toml"
    path.write_text("[cluster]\nname = 'prod'\nrun_dir = 'run'\n[mediator]\ngrace = '2s'\n"
                    f"[streamers]\ncount = 2\npath = 'logs'\ngrace = '3s'\n{extra}")
    return path


def run_export(folder: Path, args: list[str], monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.chdir(folder)
    return logstream_main(["export", *args])


def read_unit(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(path)
    return parser


# ---- YAML writer ------------------------------------------------------------------------------

scalars = st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.text()
documents = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                         | st.dictionaries(st.text(min_size=1), inner, max_size=4), max_leaves=20)


@given(documents)
def test_yaml_reads_back_as_written(value: Any) -> None:
    assert pyyaml.safe_load(yaml.dump(value)) == value


def test_yaml_quotes_what_yaml_would_otherwise_read_as_another_type() -> None:
    tricky = {"on": "off", "octal": "0700", "float": "1e3", "null": "~", "yes": ["no", "true"], "": ""}
    assert pyyaml.safe_load(yaml.dump(tricky)) == tricky
    assert [d for d in pyyaml.safe_load_all(yaml.dump_all([{"a": 1}, {"b": [{"c": []}]}]))] == [
        {"a": 1}, {"b": [{"c": []}]}]


# ---- systemd ----------------------------------------------------------------------------------

def verify(folder: Path) -> subprocess.CompletedProcess[str]:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed here: the units are not verified")
    units = sorted(str(path) for path in folder.iterdir())
    # It reports problems as lines on stderr (exit code 0 for mere warnings): expect none at all.
    return subprocess.run([analyze, "verify", *units], capture_output=True, text=True, timeout=60)


def test_systemd_units_verify_and_order_the_mediator_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    file = cluster_file(tmp_path)
    assert run_export(tmp_path, [str(file), "--format", "systemd", "--out", "units"], monkeypatch) == 0
    out = tmp_path / "units"
    assert sorted(p.name for p in out.iterdir()) == [
        "logstream-prod-mediator.service", "logstream-prod-s1.service", "logstream-prod-s2.service",
        "logstream-prod.target"]
    done = verify(out)
    assert done.returncode == 0 and done.stdout + done.stderr == "", done.stdout + done.stderr

    nodes = {node.name: node for node in plan_nodes(load_cluster(file, environ={}), tmp_path)}
    target = read_unit(out / "logstream-prod.target")
    assert target["Unit"]["Wants"].split() == [f"logstream-prod-{n}.service" for n in ("mediator", "s1", "s2")]
    for name, node in nodes.items():
        unit = read_unit(out / f"logstream-prod-{name}.service")
        service = unit["Service"]
        assert shlex.split(service["ExecStart"]) == node.argv(sys.executable)
        assert Path(shlex.split(service["ExecStart"])[0]).is_absolute()
        assert service["Restart"] == "on-failure" and service["RestartSec"] == "2s"
        assert service["KillSignal"] == "SIGTERM"
        assert service["TimeoutStopSec"] == f"{int(node.grace_s) + STOP_MARGIN_S}s"
        assert service["WorkingDirectory"] == str(tmp_path)
        assert unit["Unit"]["PartOf"] == "logstream-prod.target"
        assert unit["Install"]["WantedBy"] == "logstream-prod.target"
        if name != "mediator":
            assert "logstream-prod-mediator.service" in unit["Unit"]["After"].split()
            assert unit["Unit"]["Wants"] == "logstream-prod-mediator.service"
    assert "logstream-prod-mediator.service" not in read_unit(out / "logstream-prod-mediator.service")["Unit"]["After"]
    assert (tmp_path / "run" / "cluster.token").is_file()  # the -token-file every unit names


def test_systemd_verify_catches_a_broken_unit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The check above could fail: a bad value in one unit is reported."""
    file = cluster_file(tmp_path)
    assert run_export(tmp_path, [str(file), "--format", "systemd", "--out", "units"], monkeypatch) == 0
    unit = tmp_path / "units" / "logstream-prod-s1.service"
    unit.write_text(unit.read_text().replace("Restart=on-failure", "Restart=sometimes"))
    done = verify(tmp_path / "units")
    assert "logstream-prod-s1.service" in done.stdout + done.stderr


@pytest.mark.parametrize("arg", ["100%", "$HOME", "a b", 'q"uote', "back\\slash", "${X}", "%n"])
def test_exec_start_words_are_quoted_so_systemd_keeps_them(arg: str) -> None:
    word = systemd.quote_arg(arg)
    assert word.startswith('"') and word.endswith('"')
    # systemd's rules: specifiers %% -> %, variables $$ -> $, then C escapes inside the quotes.
    inner = word[1:-1]
    assert "%" not in inner.replace("%%", "") and "$" not in inner.replace("$$", "")
    assert shlex.split(word.replace("%%", "%").replace("$$", "$"))[0] == arg


@given(st.text(alphabet=st.characters(exclude_characters="\n\r\x00")))
def test_any_exec_start_word_reads_back(arg: str) -> None:
    """The same model of systemd's reading as above, for any one-line word."""
    word = systemd.quote_arg(arg)
    assert shlex.split(word.replace("%%", "%").replace("$$", "$")) == [arg]


def test_odd_paths_still_verify(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    odd = tmp_path / "a%b c$d"
    odd.mkdir()
    file = cluster_file(odd)
    assert run_export(odd, [str(file), "--format", "systemd", "--out", "units"], monkeypatch) == 0
    done = verify(odd / "units")
    assert done.returncode == 0 and done.stdout + done.stderr == "", done.stdout + done.stderr


# ---- supervisord (parsed here; run for real in tests/e2e/test_export_supervisord.py) -----------

def test_supervisord_group_parses_as_an_include(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    file = cluster_file(tmp_path)
    assert run_export(tmp_path, [str(file), "--format", "supervisord", "--out", "conf.d"], monkeypatch) == 0
    group = tmp_path / "conf.d" / "logstream-prod.conf"
    text = group.read_text()
    assert "[supervisord]" not in text and "nodaemon" not in text and "[unix_http_server]" not in text
    main = tmp_path / "supervisord.conf"
    main.write_text(f"[supervisord]\nlogfile={tmp_path}/sd.log\npidfile={tmp_path}/sd.pid\n"
                    f"[include]\nfiles = {tmp_path}/conf.d/*.conf\n")
    options = ServerOptions()
    options.realize(args=["-c", str(main)])
    groups = {g.name: g for g in options.process_group_configs}
    assert list(groups) == ["logstream-prod"]
    processes = sorted(groups["logstream-prod"].process_configs, key=lambda p: p.priority)
    assert [(p.name, p.priority) for p in processes] == [("mediator", 1), ("s1", 2), ("s2", 2)]
    nodes = plan_nodes(load_cluster(file, environ={}), tmp_path)
    for process, node in zip(processes, nodes):
        assert shlex.split(process.command) == node.argv(sys.executable)
        assert process.stdout_logfile == str(tmp_path / "run" / "logs" / f"{node.name}.log")
        assert process.stopwaitsecs == int(node.grace_s) + STOP_MARGIN_S
    assert (tmp_path / "run" / "logs").is_dir()


def test_supervisord_group_has_the_program_settings_of_run_s_conf(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    # One program block (supervisor/render.program_settings) for both: only the group's own keys
    # (process_name), the priority and the environment (run adds the parent-death signal) differ.
    file = cluster_file(tmp_path)
    assert run_export(tmp_path, [str(file), "--format", "supervisord", "--out", "conf.d"], monkeypatch) == 0
    exported = configparser.ConfigParser(interpolation=None, strict=True)
    exported.read_string((tmp_path / "conf.d" / "logstream-prod.conf").read_text())
    nodes = plan_nodes(load_cluster(file, environ={}), tmp_path)
    ran = configparser.ConfigParser(interpolation=None, strict=True)
    ran.read_string(render("prod", nodes, run_paths(tmp_path / "run"), tmp_path, sys.executable))
    for node in nodes:
        mine, theirs = dict(exported[f"program:logstream-prod-{node.name}"]), dict(ran[f"program:{node.name}"])
        assert mine.pop("process_name") == node.name
        for key in ("priority", "environment"):
            mine.pop(key), theirs.pop(key)
        assert mine == theirs


# ---- Kubernetes -------------------------------------------------------------------------------

def manifests(folder: Path) -> list[dict[str, Any]]:
    return [doc for path in sorted(folder.glob("*.yaml")) for doc in pyyaml.safe_load_all(path.read_text())]


def by_kind(docs: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(doc["kind"], doc["metadata"]["name"]): doc for doc in docs}


def test_k8s_manifests_validate_against_the_schemas(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    tls_files: Any) -> None:
    extra = f"[tls]\nca = '{tls_files.ca}'\ncrt = '{tls_files.node_crt}'\npk = '{tls_files.node_key}'\n"
    file = cluster_file(tmp_path, "console = true\n" + extra)
    args = [str(file), "--format", "k8s", "--out", "k8s", "--image", "reg.example/logstream:1", "--storage", "5Gi"]
    assert run_export(tmp_path, args, monkeypatch) == 0
    docs = manifests(tmp_path / "k8s")
    for doc in docs:
        # strict: unknown fields are errors too (a typo would otherwise pass unnoticed)
        assert kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    objects = by_kind(docs)
    assert sorted(objects) == [
        ("Deployment", "logstream-prod-mediator"), ("Service", "logstream-prod-mediator"),
        ("Service", "logstream-prod-mediator-peers"), ("Service", "logstream-prod-streamers"),
        ("StatefulSet", "logstream-prod-streamer")]
    assert objects[("Service", "logstream-prod-mediator")]["spec"]["type"] == "ClusterIP"
    for name in ("logstream-prod-mediator-peers", "logstream-prod-streamers"):
        spec = objects[("Service", name)]["spec"]
        assert spec["clusterIP"] == "None" and spec["publishNotReadyAddresses"] is True

    deployment = objects[("Deployment", "logstream-prod-mediator")]["spec"]
    assert deployment["replicas"] == 1 and deployment["strategy"] == {"type": "Recreate"}
    statefulset = objects[("StatefulSet", "logstream-prod-streamer")]["spec"]
    assert statefulset["replicas"] == 2 and statefulset["serviceName"] == "logstream-prod-streamers"
    claim = statefulset["volumeClaimTemplates"][0]
    assert claim["metadata"]["name"] == "logs" and claim["spec"]["resources"]["requests"]["storage"] == "5Gi"

    for pod, grace in ((deployment["template"]["spec"], 2), (statefulset["template"]["spec"], 3)):
        assert pod["terminationGracePeriodSeconds"] == grace + STOP_MARGIN_S
        container = pod["containers"][0]
        assert container["image"] == "reg.example/logstream:1"
        # Probes on -metrics (no profiling behind it); the profiling server is not started.
        assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
        assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
        assert [p["name"] for p in container["ports"]] == ["grpc", "metrics"]
        assert {"name": "metrics", "containerPort": 9100, "protocol": "TCP"} in container["ports"]
        args = container["args"]
        assert not [arg for arg in args if arg.startswith(("-pprof", "-pport", "-phost=0.0.0.0"))], args
        assert {"-metrics=0.0.0.0:9100", "-host=0.0.0.0",
                "-token-file=/etc/logstream/token/cluster.token", "-ca=/etc/logstream/tls/ca.crt",
                "-crt=/etc/logstream/tls/tls.crt", "-pk=/etc/logstream/tls/tls.key"} <= set(args)
        secrets = {v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v}
        assert secrets == {"logstream-prod-token", "logstream-prod-tls"}
        assert not any(str(tmp_path) in arg for arg in args)  # no path of this machine inside a pod
    streamer_args = statefulset["template"]["spec"]["containers"][0]["args"]
    assert streamer_args[0] == "streamer"
    assert {"-id=$(POD_NAME)", "-mediator=logstream-prod-mediator-peers:8000", "-path=/var/lib/logstream/logs",
            "-advertise=$(POD_NAME).logstream-prod-streamers:8080", "-console=true"} <= set(streamer_args)


def test_k8s_schema_check_catches_a_wrong_field(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The check above could fail: a misspelt or mistyped field is rejected."""
    assert run_export(tmp_path, [str(cluster_file(tmp_path)), "--format", "k8s", "--out", "k8s"], monkeypatch) == 0
    statefulset = by_kind(manifests(tmp_path / "k8s"))[("StatefulSet", "logstream-prod-streamer")]
    statefulset["spec"]["replica"] = statefulset["spec"].pop("replicas")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(statefulset, K8S_VERSION, strict=True)
    statefulset["spec"]["replicas"] = "two"
    del statefulset["spec"]["replica"]
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(statefulset, K8S_VERSION, strict=True)


def test_k8s_literal_dollars_are_escaped_and_names_are_dns_labels() -> None:
    assert k8s.base_name("My_Cluster.eu") == "logstream-my-cluster-eu"
    with pytest.raises(k8s.ExportError):
        k8s.base_name("x" * 40)
    args = k8s._args("streamer", {"path": "/a$(HOME)"}, {"id": "$(POD_NAME)"})
    assert args == ["streamer", "-path=/a$$(HOME)", "-id=$(POD_NAME)"]


# ---- the command's errors -----------------------------------------------------------------------

def errors(capsys: pytest.CaptureFixture[str]) -> list[str]:
    return capsys.readouterr().err.strip().splitlines()


def test_a_bad_format_is_one_line_and_exit_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    file = cluster_file(tmp_path)
    assert run_export(tmp_path, [str(file), "--format", "nomad", "--out", "x"], monkeypatch) == 2
    [line] = errors(capsys)
    assert line.startswith("logstream export: error:") and "nomad" in line
    assert not (tmp_path / "x").exists()


def test_a_non_empty_out_dir_needs_force(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    file = cluster_file(tmp_path)
    out = tmp_path / "units"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    assert run_export(tmp_path, [str(file), "--format", "systemd", "--out", "units"], monkeypatch) == 2
    [line] = errors(capsys)
    assert "units" in line and "--force" in line
    assert [p.name for p in out.iterdir()] == ["mine.txt"]
    assert run_export(tmp_path, [str(file), "--format", "systemd", "--out", "units", "--force"], monkeypatch) == 0
    assert (out / "mine.txt").read_text() == "keep me" and (out / "logstream-prod.target").is_file()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".units")] == []


def test_an_out_file_and_a_bad_cluster_file_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    file = cluster_file(tmp_path)
    (tmp_path / "afile").write_text("")
    assert run_export(tmp_path, [str(file), "--format", "k8s", "--out", "afile"], monkeypatch) == 2
    assert "afile" in errors(capsys)[0]
    bad = tmp_path / "bad.toml"
    bad.write_text("[streamers]\ncount = 0\n")
    assert run_export(tmp_path, [str(bad), "--format", "k8s", "--out", "k8s"], monkeypatch) == 2
    [line] = errors(capsys)
    assert "streamers.count" in line
    assert run_export(tmp_path, [str(file), "--format", "systemd", "--out", "u", "--python", "python3"],
                      monkeypatch) == 2
    assert "--python" in errors(capsys)[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "bad.toml", "cluster.toml"]


def test_k8s_refuses_per_streamer_tables_and_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    file = cluster_file(tmp_path, "[[streamer]]\nname = 's2'\nsize = '10MB'\n")
    assert run_export(tmp_path, [str(file), "--format", "k8s", "--out", "k8s"], monkeypatch) == 2
    [line] = errors(capsys)
    assert "s2" in line and "[streamers]" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cluster.toml"]
    assert run_export(tmp_path, [str(file), "--format", "k8s", "--out", "k8s", "--storage", "lots"], monkeypatch) == 2


def test_a_failed_write_leaves_no_half_export(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    file = cluster_file(tmp_path)
    real = Path.write_text
    written: list[str] = []

    def fail_on_second(self: Path, *args: Any, **kwargs: Any) -> int:
        if self.suffix == ".service" and written:
            raise OSError(28, "No space left on device", str(self))
        written.append(self.name)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", fail_on_second)
    assert run_export(tmp_path, [str(file), "--format", "systemd", "--out", "units"], monkeypatch) == 2
    [line] = errors(capsys)
    assert "No space left on device" in line
    assert written and not (tmp_path / "units").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".units")] == []


def test_the_real_command_is_listed_and_exits_2(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "logstream", "export", "nofile.toml", "--format", "k8s", "--out", "o"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "nofile.toml" in done.stderr
    assert "export" in subprocess.run([sys.executable, "-m", "logstream", "--help"], capture_output=True,
                                      text=True, timeout=60).stdout


def test_k8s_container_args_are_flags_the_nodes_accept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      tls_files: Any) -> None:
    """What a pod would run, with the kubelet's $(POD_NAME) expansion and the mounts simulated in
    tmp_path, parsed by the nodes' own settings loader: every flag exists and validates."""
    from logstream.config.flags import load_settings
    from logstream.config.settings import MediatorSettings, StreamerSettings

    extra = f"[tls]\nca = '{tls_files.ca}'\ncrt = '{tls_files.node_crt}'\npk = '{tls_files.node_key}'\n"
    file = cluster_file(tmp_path, "size = '10MB'\n" + extra)
    assert run_export(tmp_path, [str(file), "--format", "k8s", "--out", "k8s"], monkeypatch) == 0
    objects = by_kind(manifests(tmp_path / "k8s"))
    mounts = {k8s.TOKEN_MOUNT: tmp_path / "token", k8s.TLS_MOUNT: tmp_path / "tls",
              k8s.LOGS_MOUNT: tmp_path / "pv", k8s.RUN_MOUNT: tmp_path / "empty"}
    for folder in mounts.values():
        folder.mkdir()
    (tmp_path / "token" / "cluster.token").write_text((tmp_path / "run" / "cluster.token").read_text())
    for key, source in (("ca.crt", tls_files.ca), ("tls.crt", tls_files.node_crt), ("tls.key", tls_files.node_key)):
        (tmp_path / "tls" / key).write_bytes(Path(source).read_bytes())

    def pod_args(kind: str, name: str, pod: str) -> list[str]:
        container = objects[(kind, name)]["spec"]["template"]["spec"]["containers"][0]
        out = []
        for arg in container["args"][1:]:
            arg = arg.replace("$(POD_NAME)", pod).replace("$$", "$")
            for mount, local in mounts.items():
                arg = arg.replace(mount, str(local))
            out.append(arg)
        return out

    for name in list(os.environ):
        if name.startswith("LOGSTREAM_"):
            monkeypatch.delenv(name)
    pod = "logstream-prod-streamer-1"
    streamer = load_settings(StreamerSettings, pod_args("StatefulSet", "logstream-prod-streamer", pod), "s", "")
    assert (streamer.id, streamer.advertise, streamer.mediator) == (
        pod, f"{pod}.logstream-prod-streamers:8080", "logstream-prod-mediator-peers:8000")
    assert (streamer.host, streamer.port, streamer.metrics, streamer.pprof) == ("0.0.0.0", 8080, "0.0.0.0:9100", False)
    assert (streamer.path, streamer.size, streamer.grace, streamer.tls_mode) == (
        tmp_path / "pv", 10_000_000, 3.0, "mutual")
    mediator = load_settings(MediatorSettings, pod_args("Deployment", "logstream-prod-mediator", "m-1"), "m", "")
    assert (mediator.host, mediator.port, mediator.metrics, mediator.pprof, mediator.grace) == (
        "0.0.0.0", 8000, "0.0.0.0:9100", False, 2.0)
    assert mediator.lease_file == tmp_path / "empty" / "mediator.lease"
    assert mediator.token_file == tmp_path / "token" / "cluster.token"


def test_k8s_keeps_profiling_where_the_cluster_file_puts_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """pprof asked for in the file stays on the pod's loopback (kubectl port-forward reaches it);
    a -metrics port in the file is the probes' port; one port for both is refused."""
    extra = "[mediator]\npprof = true\nmetrics = '127.0.0.1:9200'\n"
    file = tmp_path / "cluster.toml"
    file.write_text("[cluster]\nname = 'prod'\nrun_dir = 'run'\n[streamers]\ncount = 1\npath = 'logs'\npprof = true\n"
                    + extra)
    assert run_export(tmp_path, [str(file), "--format", "k8s", "--out", "k8s"], monkeypatch) == 0
    objects = by_kind(manifests(tmp_path / "k8s"))
    mediator = objects[("Deployment", "logstream-prod-mediator")]["spec"]["template"]["spec"]["containers"][0]
    streamer = objects[("StatefulSet", "logstream-prod-streamer")]["spec"]["template"]["spec"]["containers"][0]
    assert {"-pprof=true", "-pport=1111", "-phost=127.0.0.1", "-metrics=0.0.0.0:9200"} <= set(mediator["args"])
    assert {"name": "metrics", "containerPort": 9200, "protocol": "TCP"} in mediator["ports"]
    assert {"-pprof=true", "-pport=1112", "-phost=127.0.0.1", "-metrics=0.0.0.0:9100"} <= set(streamer["args"])
    assert not [arg for arg in mediator["args"] + streamer["args"] if arg.startswith("-phost=0.0.0.0")]
    file.write_text(file.read_text().replace("metrics = '127.0.0.1:9200'", "pport = 9100"))
    assert run_export(tmp_path, [str(file), "--format", "k8s", "--out", "k8s2"], monkeypatch) == 2


def test_the_dockerfile_probes_the_metrics_port_and_not_profiling() -> None:
    """No docker daemon here: the image's HEALTHCHECK is checked against the manifests' port instead."""
    dockerfile = (Path(__file__).resolve().parents[2] / "Dockerfile").read_text()
    lines = [line for line in dockerfile.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    assert f"HEALTHCHECK_URL=http://127.0.0.1:{k8s.METRICS_PORT}/healthz" in dockerfile
    expose = next(line for line in lines if line.startswith("EXPOSE")).split()[1:]
    assert str(k8s.METRICS_PORT) in expose and "1111" not in expose
    assert not [line for line in lines if "pprof" in line or "phost" in line]
    # The examples in the comments start -metrics on the probed port, never -pprof.
    examples = [line for line in dockerfile.splitlines() if line.startswith("#   docker run IMAGE ")]
    assert len(examples) == 2 and all(f"-metrics 0.0.0.0:{k8s.METRICS_PORT}" in line for line in examples)
    assert not [line for line in dockerfile.splitlines() if "-pprof" in line and "docker run" in line]
