"""supervisord.conf rendering, read back by supervisord's own option parser."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
from supervisor.datatypes import RestartUnconditionally
from supervisor.options import ServerOptions

from logstream.cluster import load_cluster, plan_nodes
from logstream.supervisor.render import STOP_MARGIN_S, escape, process_name, render, run_paths


def realize(tmp_path: Path, sets: list[str], cwd: Path | None = None) -> tuple[ServerOptions, list[list[str]]]:
    cwd = cwd or tmp_path
    config = load_cluster(None, sets, environ={})
    nodes = plan_nodes(config, cwd)
    paths = run_paths(cwd / "run")
    paths.logs.mkdir(parents=True)
    paths.conf.write_text(render(config.cluster.name, nodes, paths, cwd, "/venv/bin/python"))
    options = ServerOptions()
    options.realize(args=["-c", str(paths.conf)])
    return options, [node.argv("/venv/bin/python") for node in nodes]


def test_programs_priorities_and_stop_settings(tmp_path: Path) -> None:
    options, argvs = realize(tmp_path, ["streamers.grace=2s", "mediator.grace=500ms"])
    groups = {group.name: group for group in options.process_group_configs}
    assert groups["mediator"].priority == 1 and groups["streamers"].priority == 2
    assert [p.name for p in groups["streamers"].process_configs] == ["s1", "s2", "s3"]
    mediator = groups["mediator"].process_configs[0]
    s1 = groups["streamers"].process_configs[0]
    assert mediator.stopwaitsecs == 1 + STOP_MARGIN_S and s1.stopwaitsecs == 2 + STOP_MARGIN_S
    for process in (mediator, s1):
        assert process.autorestart is RestartUnconditionally
        assert process.stopasgroup and process.killasgroup and process.redirect_stderr
        assert process.stdout_logfile == str(tmp_path / "run" / "logs" / f"{process.name}.log")
    assert shlex.split(s1.command) == argvs[1]
    assert options.nodaemon and options.logfile == str(tmp_path / "run" / "supervisord.log")
    assert options.server_configs[0]["file"] == str(tmp_path / "run" / "supervisor.sock")


def test_percent_signs_spaces_and_quotes_survive(tmp_path: Path) -> None:
    odd = tmp_path / "a%b c'd"
    odd.mkdir()
    options, argvs = realize(tmp_path, ["streamers.path=l%(here)s o'g %%"], cwd=odd)
    streamers = {g.name: g for g in options.process_group_configs}["streamers"]
    s1 = streamers.process_configs[0]
    assert shlex.split(s1.command) == argvs[1]
    assert f"-path={odd}/l%(here)s o'g %%" in argvs[1]
    assert s1.stdout_logfile == str(odd / "run" / "logs" / "s1.log")
    assert s1.directory == str(odd)


def test_line_breaks_are_refused() -> None:
    with pytest.raises(ValueError, match="line break"):
        escape("a\nb")


def test_long_run_dirs_get_a_short_socket() -> None:
    deep = Path("/tmp") / ("x" * 120)
    paths = run_paths(deep)
    assert len(str(paths.sock)) < 100 and paths.sock.parent == Path("/tmp")
    assert run_paths(deep) == paths  # the same run dir always finds the same socket
    assert run_paths(Path("/srv/run")).sock == Path("/srv/run/supervisor.sock")


def test_process_names() -> None:
    assert process_name("mediator") == "mediator" and process_name("s2") == "streamers:s2"
