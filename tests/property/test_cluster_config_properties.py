"""Cluster files: the highest-precedence source that sets a key wins (defaults < TOML < env < --set
< flags); `config show` output reads back to an equal config; every planned node gets distinct
ports and flags its own role accepts; supervisord reads every command back unchanged."""

from __future__ import annotations

import shlex
import tempfile
from pathlib import Path
from typing import Any

import tomli_w
from hypothesis import given, settings
from hypothesis import strategies as st
from supervisor.options import ServerOptions

from logstream.cluster import load_cluster, plan_nodes, to_toml, token_path
from logstream.config.flags import load_settings
from logstream.config.settings import MediatorSettings, StreamerSettings
from logstream.config.units import format_duration, format_size, parse_size
from logstream.supervisor.render import render, run_paths
from logstream.node.token_file import ensure_token

counts = st.integers(min_value=1, max_value=6)
sizes = st.integers(min_value=1, max_value=10**12).map(format_size) | st.just("-1B")
durations = st.integers(min_value=1, max_value=10**6).map(lambda ms: format_duration(ms / 1000))


@st.composite
def cluster_tables(draw: st.DrawFn) -> dict[str, Any]:
    count = draw(counts)
    first = draw(st.integers(min_value=1024, max_value=60000))
    mediator_port = draw(st.integers(min_value=1024, max_value=65535).filter(lambda p: not first <= p < first + count))
    interval = draw(st.integers(min_value=100, max_value=60_000))
    data: dict[str, Any] = {
        "cluster": {"name": draw(st.from_regex(r"[a-z][a-z0-9_-]{0,12}", fullmatch=True))},
        "mediator": {"port": mediator_port, "health_interval": format_duration(interval / 1000),
                     "grace": draw(durations)},
        "streamers": {"count": count, "port": first, "size": draw(sizes), "console": draw(st.booleans()),
                      "keep": draw(st.integers(0, 100)), "fsync": draw(st.sampled_from(["never", "always", "interval"]))},
    }
    names = draw(st.lists(st.integers(1, count), unique=True, max_size=count))
    overrides = []
    for index in names:
        table: dict[str, Any] = {"name": f"s{index}"}
        if draw(st.booleans()):
            table["size"] = draw(sizes)
        if draw(st.booleans()):
            table["console"] = draw(st.booleans())
        if draw(st.booleans()):
            table["idle_close"] = draw(durations)
        overrides.append(table)
    if overrides:
        data["streamer"] = overrides
    return data


@settings(max_examples=40)
@given(cluster_tables())
def test_shown_config_reads_back_equal(data: dict[str, Any]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        first = Path(folder) / "a.toml"
        first.write_text(tomli_w.dumps(data))
        config = load_cluster(first, environ={})
        second = Path(folder) / "b.toml"
        second.write_text(to_toml(config))
        assert load_cluster(second, environ={}) == config


@settings(max_examples=25)
@given(cluster_tables())
def test_planned_nodes_have_distinct_ports_and_valid_flags(data: dict[str, Any]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        file = Path(folder) / "a.toml"
        file.write_text(tomli_w.dumps(data))
        config = load_cluster(file, environ={})
        nodes = plan_nodes(config, Path(folder))
        assert [node.name for node in nodes] == ["mediator"] + [f"s{i}" for i in range(1, data["streamers"]["count"] + 1)]
        assert len({node.port for node in nodes}) == len(nodes)
        ensure_token(token_path(config, Path(folder)))  # as `logstream run` does before starting them
        for node in nodes:
            model = MediatorSettings if node.role == "mediator" else StreamerSettings
            parsed = load_settings(model, list(node.flags), "test", "")  # type: ignore[type-var]
            assert parsed.port == node.port
    by_name = {table["name"]: table for table in data.get("streamer", [])}
    for node in nodes[1:]:
        expected = by_name.get(node.name, {}).get("size", data["streamers"]["size"])
        assert f"-size={format_size(parse_size(expected))}" in node.flags


SOURCES = ("toml", "env", "set", "flag")


@given(st.fixed_dictionaries({source: st.none() | counts for source in SOURCES}))
def test_the_highest_source_that_sets_a_key_wins(values: dict[str, int | None]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        file = Path(folder) / "a.toml"
        file.write_text("" if values["toml"] is None else f"[streamers]\ncount = {values['toml']}\n")
        env = {} if values["env"] is None else {"LOGSTREAM_STREAMERS__COUNT": str(values["env"])}
        sets = [] if values["set"] is None else [f"streamers.count={values['set']}"]
        flags = {} if values["flag"] is None else {"streamers.count": values["flag"]}
        config = load_cluster(file, sets, flags, environ=env)
    expected = next((values[s] for s in reversed(SOURCES) if values[s] is not None), 3)
    assert config.streamers.count == expected


path_text = st.text(
    st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\x00"), min_size=1, max_size=30
).filter(lambda text: text.strip() == text and text not in (".", ".."))


@settings(max_examples=25)
@given(path_text)
def test_supervisord_reads_every_command_back(text: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        cwd = Path(folder)
        config = load_cluster(None, [f"streamers.path={text}", "streamers.count=1"], environ={})
        nodes = plan_nodes(config, cwd)
        paths = run_paths(cwd / "run")
        paths.logs.mkdir(parents=True)
        paths.conf.write_text(render(config.cluster.name, nodes, paths, cwd, "/venv/bin/python"))
        options = ServerOptions()
        options.realize(args=["-c", str(paths.conf)])
        commands = {p.name: p.command for g in options.process_group_configs for p in g.process_configs}
        for node in nodes:
            assert shlex.split(commands[node.name]) == node.argv("/venv/bin/python")
