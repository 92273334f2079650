"""ClusterConfig: one precedence (defaults < TOML < env < --set < short flags), one line per
problem naming its source and key path, and the node command lines it plans."""

from __future__ import annotations

from pathlib import Path

import pytest

from logstream.errors import UserError
from logstream.cluster.plan import UnknownNode
from logstream.cluster import (
    ClusterConfig,
    ConfigError,
    check_files,
    load_cluster,
    mediator_address,
    plan_nodes,
    select_nodes,
    to_toml,
    token_path,
)
from logstream.config.flags import UsageError, load_settings
from logstream.config.settings import MediatorSettings, StreamerSettings
from logstream.node.token_file import TokenFileError, ensure_token, read_token


def write(tmp_path: Path, text: str, name: str = "cluster.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def problems(file: Path | None, sets: list[str] | None = None, env: dict[str, str] | None = None,
             flags: dict[str, object] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_cluster(file, sets or [], flags, environ=env or {})
    return caught.value.problems


# --- precedence: one test per pair --------------------------------------------------------------


def test_defaults_lose_to_toml(tmp_path: Path) -> None:
    assert load_cluster(None, environ={}).streamers.count == 3
    file = write(tmp_path, "[streamers]\ncount = 5\n")
    assert load_cluster(file, environ={}).streamers.count == 5


def test_toml_loses_to_env(tmp_path: Path) -> None:
    file = write(tmp_path, "[streamers]\ncount = 5\n[mediator]\nhealth_interval = '2s'\n")
    config = load_cluster(file, environ={"LOGSTREAM_STREAMERS__COUNT": "6", "LOGSTREAM_MEDIATOR__HEALTH_INTERVAL": "1s"})
    assert (config.streamers.count, config.mediator.health_interval) == (6, 1.0)


def test_env_loses_to_set() -> None:
    config = load_cluster(None, ["streamers.count=7"], environ={"LOGSTREAM_STREAMERS__COUNT": "6"})
    assert config.streamers.count == 7


def test_defaults_lose_to_env() -> None:
    config = load_cluster(None, environ={"LOGSTREAM_STREAMERS__SIZE": "2MB"})
    assert config.streamers.size == 2_000_000


def test_defaults_lose_to_set() -> None:
    assert load_cluster(None, ["cluster.name=prod"], environ={}).cluster.name == "prod"


def test_toml_loses_to_set(tmp_path: Path) -> None:
    file = write(tmp_path, "[streamers]\npath = 'a'\nsize = '1MB'\n")
    config = load_cluster(file, ["streamers.path=b"], environ={})
    assert config.streamers.path == Path("b")
    assert config.streamers.size == 1_000_000  # untouched keys of the table survive the merge


def test_set_loses_to_short_flag() -> None:
    config = load_cluster(None, ["streamers.count=7"], {"streamers.count": 2}, environ={})
    assert config.streamers.count == 2


def test_env_loses_to_short_flag() -> None:
    config = load_cluster(None, [], {"streamers.count": 2}, environ={"LOGSTREAM_STREAMERS__COUNT": "6"})
    assert config.streamers.count == 2


def test_set_reaches_one_streamer_and_keeps_the_files_tables(tmp_path: Path) -> None:
    file = write(tmp_path, "[[streamer]]\nname = 's2'\nsize = '10MB'\nconsole = true\n")
    config = load_cluster(file, ["streamer.s2.size=20MB", "streamer.s3.keep=4"], environ={})
    by_name = {table.name: table for table in config.streamer}
    assert by_name["s2"].size == 20_000_000 and by_name["s2"].console is True
    assert by_name["s3"].keep == 4


def test_role_variables_do_not_leak_into_the_cluster() -> None:
    config = load_cluster(None, environ={"LOGSTREAM_STREAMER_PORT": "9", "LOGSTREAM_MEDIATOR_PORT": "9"})
    assert (config.mediator.port, config.streamers.port) == (8000, 8080)


# --- invalid configurations: one line each, naming source and key path ---------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[streamers]\nsize = 'abc'\n", "cluster.toml: streamers.size: not a size: 'abc'"),
        ("[mediator]\nhealth_interval = 'soon'\n", "cluster.toml: mediator.health_interval: not a duration: 'soon'"),
        ("[streamers]\ncolour = 'red'\n", "cluster.toml: streamers.colour: unknown key (known: "),
        ("[stremers]\ncount = 1\n", "cluster.toml: stremers: unknown key (known: cluster, mediator, streamers"),
        ("[streamers]\ncount = 0\n", "cluster.toml: streamers.count: Input should be greater than or equal to 1"),
        ("[streamers]\ncount = 'many'\n", "cluster.toml: streamers.count: expected a whole number, not the string 'many'"),
        ("[mediator]\nport = 8081\n", "streamers.port: port 8081 of streamer s2 is also the port of the mediator"),
        ("[mediator]\nport = 70000\n", "cluster.toml: mediator.port: Input should be less than or equal to 65535"),
        ("[streamers]\nport = 65535\n", "streamers.port: 3 streamers from port 65535 run past 65535"),
        ("[[streamer]]\nname = 's9'\n", "streamer[0].name: no streamer 's9' (streamers.count = 3: s1..s3)"),
        ("[[streamer]]\nname = 's1'\n[[streamer]]\nname = 's1'\n", "streamer[1].name: 's1' has two [[streamer]] tables"),
        ("[[streamer]]\nname = 's2'\nsize = '1XB'\n", "cluster.toml: streamer[0].size: unknown size unit 'XB'"),
        ("[[streamer]]\nname = 's2'\nport = 8080\n", "streamer.s2.port: port 8080 of streamer s2 is also the port of streamer s1"),
        # One machine named two ways (the advertised address brackets its IPv6 host; a bind does not).
        ("[mediator]\nhost = '::1'\nadvertise = '[::1]:8000'\n[streamers]\nhost = '::1'\nport = 7999\n",
         "streamers.port: port 8000 of streamer s2 is also the port of the mediator"),
        ("[tls]\ncrt = 'a.crt'\n", "tls.crt needs tls.pk too"),
        ("[tls]\nca = 'ca.crt'\n", "tls.ca needs tls.crt and tls.pk"),
        ("[mediator]\nhealth_interval = '5s'\nlease = '5s'\n", "mediator.lease: 5s must be longer than mediator.health_interval"),
        ("[cluster]\nname = 'has space'\n", "cluster.toml: cluster.name: String should match pattern"),
        ("streamers = 3\n", "cluster.toml: streamers: Input should be a valid dictionary"),
        ("[streamers\n", "cluster.toml: not valid TOML"),
    ],
)
def test_each_invalid_file_is_one_line_naming_the_key(tmp_path: Path, text: str, expected: str) -> None:
    found = problems(write(tmp_path, text))
    assert len(found) == 1, found
    assert expected in found[0], found


def test_every_problem_is_reported(tmp_path: Path) -> None:
    found = problems(write(tmp_path, "[streamers]\nsize = 'abc'\nport = 'x'\n[mediator]\nbogus = 1\n"))
    assert len(found) == 3
    assert all(line.startswith(f"{tmp_path / 'cluster.toml'}: ") for line in found)


def test_a_bad_value_names_the_variable_it_came_from(tmp_path: Path) -> None:
    file = write(tmp_path, "[streamers]\nsize = '1MB'\n")
    [line] = problems(file, env={"LOGSTREAM_STREAMERS__SIZE": "abc"})
    assert line.startswith("LOGSTREAM_STREAMERS__SIZE: streamers.size: not a size: 'abc'")


def test_a_bad_value_names_the_set_it_came_from(tmp_path: Path) -> None:
    file = write(tmp_path, "[streamers]\nsize = '1MB'\n")
    [line] = problems(file, ["streamers.size=abc"], env={"LOGSTREAM_STREAMERS__SIZE": "2MB"})
    assert line.startswith("--set streamers.size=abc: streamers.size: not a size")


def test_a_bad_short_flag_is_named() -> None:
    [line] = problems(None, flags={"streamers.count": 0})
    assert line.startswith("--streamers 0: streamers.count:")


@pytest.mark.parametrize("item", ["streamers.count", "count=5", "streamer.size=1MB", ".x=1", "streamers..count=1"])
def test_malformed_set_is_refused(item: str) -> None:
    [line] = problems(None, [item])
    assert line.startswith(f"--set {item!r}")


def test_unknown_set_key_is_refused() -> None:
    [line] = problems(None, ["streamers.colour=red"])
    assert line.startswith("--set streamers.colour=red: streamers.colour: unknown key")


def test_missing_and_folder_files(tmp_path: Path) -> None:
    assert problems(tmp_path / "nope.toml")[0].endswith("nope.toml: no such file (write a starter one with "
                                                       f"`logstream init {tmp_path / 'nope.toml'}`)")
    assert problems(tmp_path)[0].endswith("is a folder, not a cluster file")


def test_config_error_is_a_user_error() -> None:
    """The CLI prints every UserError as one line and exits 2."""
    assert issubclass(ConfigError, UserError)


# --- the file system checks ----------------------------------------------------------------------


def test_missing_certificates_are_named(tmp_path: Path) -> None:
    config = load_cluster(None, ["tls.ca=certs/ca.crt", "tls.crt=certs/node.crt", "tls.pk=certs/node.key"], environ={})
    found = check_files(config, tmp_path)
    assert [line.split(":")[0] for line in found] == ["tls.ca", "tls.crt", "tls.pk"]
    assert "no such file: certs/ca.crt" in found[0] and "logstream certs --out certs" in found[0]


def test_a_log_root_that_is_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "logs").write_text("not a folder")
    config = load_cluster(None, ["streamers.path=logs"], environ={})
    assert check_files(config, tmp_path) == ["streamers.path: logs is a file, not a folder"]
    nested = load_cluster(None, ["streamers.path=logs/app"], environ={})
    assert check_files(nested, tmp_path) == [f"streamers.path: logs/app has a file as parent ({tmp_path / 'logs'}), not a folder"]


def test_a_run_dir_that_is_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "run").write_text("")
    config = load_cluster(None, ["cluster.run_dir=run"], environ={})
    assert check_files(config, tmp_path) == ["cluster.run_dir: run is a file, not a folder"]


def test_only_local_streamers_paths_are_checked(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("")
    config = load_cluster(None, ["streamer.s2.path=f"], environ={})
    assert check_files(config, tmp_path, ["mediator", "s1"]) == []
    assert check_files(config, tmp_path, ["s2"]) == ["streamer.s2.path: f is a file, not a folder"]


# --- nodes ---------------------------------------------------------------------------------------


def test_nodes_count_ports_up_and_point_at_the_mediator(tmp_path: Path) -> None:
    config = load_cluster(None, ["streamers.count=4", "streamers.port=9000", "mediator.port=9100"], environ={})
    nodes = plan_nodes(config, tmp_path)
    assert [node.name for node in nodes] == ["mediator", "s1", "s2", "s3", "s4"]
    assert [node.port for node in nodes] == [9100, 9000, 9001, 9002, 9003]
    for node in nodes[1:]:
        assert f"-id={node.name}" in node.flags and "-mediator=127.0.0.1:9100" in node.flags
        assert f"-path={tmp_path / 'logs'}" in node.flags
    assert nodes[1].argv("/venv/bin/python")[:4] == ["/venv/bin/python", "-m", "logstream", "streamer"]
    assert nodes[0].argv("py")[3] == "mediator"


def test_per_node_overrides_apply_by_name(tmp_path: Path) -> None:
    config = load_cluster(None, ["streamer.s2.size=10MB", "streamer.s2.port=9999", "streamers.size=-1B"], environ={})
    flags = {node.name: node.flags for node in plan_nodes(config, tmp_path)}
    assert "-size=10MB" in flags["s2"] and "-port=9999" in flags["s2"]
    assert "-size=-1B" in flags["s1"] and "-size=-1B" in flags["s3"] and "-port=8082" in flags["s3"]


def test_tls_files_reach_every_node_as_absolute_paths(tmp_path: Path) -> None:
    config = load_cluster(None, ["tls.ca=c/ca.crt", "tls.crt=c/n.crt", "tls.pk=c/n.key"], environ={})
    for node in plan_nodes(config, tmp_path):
        assert f"-ca={tmp_path / 'c/ca.crt'}" in node.flags and f"-pk={tmp_path / 'c/n.key'}" in node.flags


def test_every_nodes_flags_are_valid_for_its_role(tmp_path: Path) -> None:
    config = load_cluster(None, ["mediator.pprof=true", "streamers.pprof=true", "streamers.fsync=interval",
                                 "mediator.lease=30s", "streamer.s3.host=0.0.0.0"], environ={})
    assert ensure_token(token_path(config, tmp_path))  # what `logstream run` does before starting nodes
    for node in plan_nodes(config, tmp_path):
        assert f"-token-file={token_path(config, tmp_path)}" in node.flags
        model = MediatorSettings if node.role == "mediator" else StreamerSettings
        settings = load_settings(model, list(node.flags), "test", "")  # type: ignore[type-var]
        assert settings.port == node.port
    s3 = plan_nodes(config, tmp_path)[3]
    assert "-advertise=127.0.0.1:8082" in s3.flags and s3.address == "127.0.0.1:8082"


def test_the_cluster_token_is_made_once_owner_only_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "run" / "cluster.token"
    assert ensure_token(path)
    first = path.read_text()
    assert (path.stat().st_mode & 0o777) == 0o600 and len(first.strip()) >= 32
    assert not ensure_token(path) and path.read_text() == first
    assert read_token(path) == first.strip()
    path.write_text("  \n")
    with pytest.raises(TokenFileError, match="empty"):
        read_token(path)


def test_mediator_address_prefers_advertise_and_replaces_wildcards() -> None:
    assert mediator_address(load_cluster(None, ["mediator.host=0.0.0.0"], environ={})) == "127.0.0.1:8000"
    assert mediator_address(load_cluster(None, ["mediator.advertise=10.0.0.1:8000"], environ={})) == "10.0.0.1:8000"


def test_select_nodes() -> None:
    config = ClusterConfig.model_validate({})
    assert select_nodes(config, None) == ["mediator", "s1", "s2", "s3"]
    assert select_nodes(config, "s3,s1") == ["s1", "s3"]
    with pytest.raises(UnknownNode, match="unknown node s9"):
        select_nodes(config, "s9")


def test_multi_host_streamers_may_share_a_port_on_different_machines() -> None:
    config = load_cluster(None, ["streamer.s1.advertise=10.0.0.1:8080", "streamer.s2.advertise=10.0.0.2:8080",
                                 "streamer.s2.port=8080", "streamers.count=2"], environ={})
    assert [node.address for node in plan_nodes(config, Path("/"))[1:]] == ["10.0.0.1:8080", "10.0.0.2:8080"]


def test_shown_toml_reads_back_equal(tmp_path: Path) -> None:
    config = load_cluster(None, ["streamer.s2.size=10MB", "tls.crt=a", "tls.pk=b", "mediator.lease=12s"], environ={})
    file = write(tmp_path, to_toml(config))
    assert load_cluster(file, environ={}) == config


@pytest.mark.parametrize("name", ["local", "tls", "multi-host", "ha"])
def test_shipped_configs_are_valid(name: str) -> None:
    root = Path(__file__).resolve().parents[2]
    config = load_cluster(root / "configs" / f"{name}.toml", environ={})
    assert plan_nodes(config, root)


def test_a_malformed_json_variable_is_named() -> None:
    [line] = problems(None, env={"LOGSTREAM_MEDIATOR": "not json"})
    assert 'field "mediator"' in line and "EnvSettingsSource" in line


def test_certificates_are_read_before_anything_starts(tmp_path: Path, tls_files: object) -> None:
    files = tls_files
    good = [f"tls.ca={files.ca}", f"tls.crt={files.node_crt}", f"tls.pk={files.node_key}"]  # type: ignore[attr-defined]
    assert check_files(load_cluster(None, good, environ={}), tmp_path) == []
    (tmp_path / "junk.crt").write_text("not a certificate")
    junk = load_cluster(None, [good[0], "tls.crt=junk.crt", good[2]], environ={})
    assert check_files(junk, tmp_path) == [f"tls.crt: {tmp_path / 'junk.crt'}: not a PEM certificate"]
    mismatched = load_cluster(None, [good[0], f"tls.crt={files.other_crt}", good[2]], environ={})  # type: ignore[attr-defined]
    [line] = check_files(mismatched, tmp_path)
    assert line.startswith("tls.pk: ") and "key does not match the certificate in tls.crt" in line


def test_a_tilde_path_naming_no_user_is_taken_literally(tmp_path: Path) -> None:
    config = load_cluster(None, ["streamers.path=~no-such-user-here/logs", "streamers.count=1"], environ={})
    (streamer,) = [node for node in plan_nodes(config, tmp_path) if node.role == "streamer"]
    argv = streamer.argv("python")
    assert f"-path={tmp_path / '~no-such-user-here/logs'}" in argv


# --- one declaration per setting: the node sections are the roles' settings -----------------------


def test_node_sections_hold_every_role_setting_the_planner_does_not_set() -> None:
    from logstream.cluster import MediatorSection, StreamerOverride, StreamersSection
    from logstream.cluster.schema import MEDIATOR_PLANNED, STREAMER_PLANNED

    assert set(MediatorSection.model_fields) == set(MediatorSettings.model_fields) - MEDIATOR_PLANNED | {"advertise", "count", "workers"}
    assert set(StreamersSection.model_fields) == set(StreamerSettings.model_fields) - STREAMER_PLANNED - {"advertise"} | {"count"}
    assert set(StreamerOverride.model_fields) == set(StreamerSettings.model_fields) - STREAMER_PLANNED | {"name"}
    # The same description, the same checks: the role's field, not a copy typed again.
    assert StreamersSection.model_fields["size"].description == StreamerSettings.model_fields["size"].description
    from logstream.cluster import EtcdSection, MediatorOverride

    assert set(MediatorOverride.model_fields) == set(MediatorSettings.model_fields) - MEDIATOR_PLANNED | {"name", "advertise"}
    # [etcd] sets the streamers' etcd settings: their declarations, not copies.
    assert EtcdSection.model_fields["ttl"].description == StreamerSettings.model_fields["etcd_ttl"].description
    assert all(check in EtcdSection.model_fields["ttl"].metadata
               for check in StreamerSettings.model_fields["etcd_ttl"].metadata)


@pytest.mark.parametrize(("item", "key"), [
    ("mediator.batch_bytes=-1B", "mediator.batch_bytes"),
    ("streamers.max_line=-1B", "streamers.max_line"),
    ("mediator.max_line=-1B", "mediator.max_line"),
    ("mediator.ping_timeout=10s", "mediator.ping_timeout"),
])
def test_config_check_refuses_what_the_node_refuses(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                    item: str, key: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from logstream.commands.init import config_main

    monkeypatch.chdir(tmp_path)
    file = write(tmp_path, "[cluster]\nname = 'x'\n")
    assert config_main(["check", str(file), "--set", item]) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith(f"logstream config check: error: --set {item}: {key}"), line
    section, field = key.split(".")
    model = MediatorSettings if section == "mediator" else StreamerSettings
    with pytest.raises(UsageError):  # the node refuses the same value
        load_settings(model, [f"-{field.replace('_', '-')}={item.split('=', 1)[1]}"], "test", "")


def test_a_streamer_table_set_on_the_command_line_is_named_by_its_set(tmp_path: Path) -> None:
    [line] = problems(write(tmp_path, "[[streamer]]\nname = 's3'\n"), ["streamer.s2.max_line=-1B"])
    assert line.startswith("--set streamer.s2.max_line=-1B: streamer[1].max_line: must be a finite size"), line


def test_settings_are_loaded_as_their_own_class(tmp_path: Path) -> None:
    file = write(tmp_path, "[streamer]\nport = 7001\n")
    settings = load_settings(StreamerSettings, ["-config", str(file)], "test", "")
    assert type(settings) is StreamerSettings and settings.port == 7001
    assert type(load_cluster(write(tmp_path, "[streamers]\ncount = 2\n", "c.toml"), environ={})) is ClusterConfig


def test_a_tls_file_error_carries_its_setting_and_path(tmp_path: Path) -> None:
    from logstream.node.tls import CredentialsError, read_certificates

    (tmp_path / "junk.crt").write_text("junk")
    with pytest.raises(CredentialsError) as caught:
        read_certificates("-ca", tmp_path / "junk.crt")
    assert (caught.value.flag, caught.value.path) == ("-ca", tmp_path / "junk.crt")
    assert caught.value.text(lambda flag: "tls." + flag.removeprefix("-")) == f"tls.ca: {tmp_path / 'junk.crt'}: not a PEM certificate"
    assert str(caught.value) == f"-ca {tmp_path / 'junk.crt'}: not a PEM certificate"


def test_a_single_streamer_table_says_double_brackets(tmp_path: Path) -> None:
    file = tmp_path / "c.toml"
    file.write_text('[streamer]\nname = "s1"\nport = 9000\n')
    with pytest.raises(ConfigError) as caught:
        load_cluster(file, environ={})
    [line] = caught.value.problems
    assert line.startswith(f"{file}: [streamer] is one table, but per-streamer settings are [[streamer]] tables")


def test_numbers_and_booleans_written_as_strings_are_refused(tmp_path: Path) -> None:
    file = tmp_path / "c.toml"
    file.write_text('[mediator]\nport = "8000"\n[streamers]\nconsole = "yes"\nsize = "2MB"\n')
    with pytest.raises(ConfigError) as caught:
        load_cluster(file, environ={})
    assert [line.split(": expected")[0] for line in caught.value.problems] == [
        f"{file}: mediator.port", f"{file}: streamers.console"]
    # the same values as text from --set or a variable are what those sources can only give
    config = load_cluster(None, ["mediator.port=8001", "streamers.console=true"], environ={})
    assert (config.mediator.port, config.streamers.console) == (8001, True)
