"""`logstream run` refuses every invalid configuration with exit 2, one line per problem naming the
key path, and starts nothing; `logstream init` and `logstream config show|check`."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from logstream.commands.main import main as cli
from logstream.cluster import ClusterConfig, load_cluster
from logstream.commands.init import starter_text
from netports import reserve_ports


@pytest.fixture(autouse=True)
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    for name in ("LOGSTREAM_STREAMERS__COUNT", "LOGSTREAM_STREAMERS__SIZE"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def cluster_file(tmp_path: Path, extra: str = "") -> Path:
    mediator, first = reserve_ports(2)
    path = tmp_path / "cluster.toml"
    path.write_text(f"[cluster]\nrun_dir = 'run'\n[mediator]\nport = {mediator}\n"
                    f"[streamers]\ncount = 1\nport = {first}\npath = 'logs'\n{extra}")
    return path


@pytest.mark.parametrize(
    ("extra", "args", "expected"),
    [
        ("[tls]\nca = 'certs/ca.crt'\ncrt = 'certs/node.crt'\npk = 'certs/node.key'\n", [],
         "logstream run: error: tls.ca: no such file: certs/ca.crt"),
        ("", ["--set", "streamers.size=abc"], "logstream run: error: --set streamers.size=abc: streamers.size: not a size: 'abc'"),
        ("", ["--streamers", "0"], "logstream run: error: --streamers 0: streamers.count: Input should be greater than or equal to 1"),
        ("", ["--set", "mediator.colour=red"], "logstream run: error: --set mediator.colour=red: mediator.colour: unknown key"),
        ("", ["--only", "s7"], "logstream run: error: --only 's7': unknown node s7 (this cluster has mediator, s1)"),
        ("", ["--set", "streamers.count"], "logstream run: error: --set 'streamers.count': expected SECTION.KEY=VALUE"),
        ("[[streamer]]\nname = 's2'\n", [], "cluster.toml: streamer[0].name: no streamer 's2' (streamers.count = 1: s1..s1)"),
    ],
)
def test_invalid_runs_exit_2_and_start_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: str,
                                               args: list[str], expected: str) -> None:
    file = cluster_file(tmp_path, extra)
    assert cli(["run", str(file), *args]) == 2
    err = capsys.readouterr().err
    assert expected in err, err
    assert not (tmp_path / "run").exists() and not (tmp_path / "logs").exists()


def test_a_log_root_that_is_a_file_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "logs").write_text("")
    assert cli(["run", str(cluster_file(tmp_path))]) == 2
    assert "logstream run: error: streamers.path: logs is a file, not a folder" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_a_port_in_use_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert cli(["run", str(cluster_file(tmp_path)), "--set", f"mediator.port={port}"]) == 2
    assert f"logstream run: error: mediator: port 127.0.0.1:{port} is already in use" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_every_problem_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    file = cluster_file(tmp_path, "size = 'abc'\nkeep = -1\n")
    assert cli(["run", str(file)]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2 and all(line.startswith(f"logstream run: error: {file}: streamers.") for line in lines)


def test_the_real_command_exits_2(tmp_path: Path) -> None:
    file = cluster_file(tmp_path, "size = 'abc'\n")
    done = subprocess.run([sys.executable, "-m", "logstream", "run", str(file)], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2
    assert done.stderr == f"logstream run: error: {file}: streamers.size: not a size: 'abc' " \
                          "(expected e.g. 1MB, 512KiB, 1.5GB or -1B)\n"
    assert done.stdout == "" and not (tmp_path / "run").exists()


def test_init_writes_a_commented_file_that_loads_to_the_defaults(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(["init"]) == 0
    text = (tmp_path / "cluster.toml").read_text()
    assert text == starter_text("cluster.toml")
    assert "# how often each streamer is pinged\nhealth_interval = \"5s\"" in text
    assert "# [tls]" in text and "# [[streamer]]" in text
    assert load_cluster(tmp_path / "cluster.toml", environ={}) == ClusterConfig.model_validate({})
    assert cli(["init"]) == 2
    assert "cluster.toml already exists (use --force to overwrite it)" in capsys.readouterr().err
    (tmp_path / "cluster.toml").write_text("changed")
    assert cli(["init", "--force"]) == 0
    assert (tmp_path / "cluster.toml").read_text() == text
    assert cli(["init", "sub/dir/c.toml"]) == 0 and (tmp_path / "sub/dir/c.toml").is_file()


def test_config_show_prints_the_effective_config(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    file = cluster_file(tmp_path)
    monkeypatch.setenv("LOGSTREAM_STREAMERS__SIZE", "2MB")
    assert cli(["config", "show", str(file), "--set", "streamer.s1.console=true", "--streamers", "2"]) == 0
    shown = capsys.readouterr().out
    shown_file = tmp_path / "shown.toml"
    shown_file.write_text(shown)
    config = load_cluster(shown_file, environ={})
    assert (config.streamers.count, config.streamers.size, config.streamer[0].console) == (2, 2_000_000, True)
    assert 'size = "2MB"' in shown and "[[streamer]]" in shown


def test_config_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    file = cluster_file(tmp_path)
    assert cli(["config", "check", str(file)]) == 0
    assert cli(["config", "check", str(file), "--set", "tls.crt=x.crt", "--set", "tls.pk=x.key"]) == 2
    assert "logstream config check: error: tls.crt: no such file: x.crt" in capsys.readouterr().err


def test_a_path_supervisord_conf_cannot_hold_is_one_line_and_exit_2(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    # The manager raises its own RenderError; the CLI edge prints it like any user error.
    assert cli(["run", str(cluster_file(tmp_path)), "--path", "lo\ngs"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("logstream run: error: a line break cannot be written into supervisord.conf")
    assert not (tmp_path / "run" / "supervisord.pid").exists()
