"""Settings precedence, one test per pair: defaults < TOML ([streamer] of -config) < environment < flags."""

from __future__ import annotations

from pathlib import Path

import pytest

from logstream.config.flags import UsageError, load_settings
from logstream.config.settings import StreamerSettings


def load(argv: list[str]) -> StreamerSettings:
    return load_settings(StreamerSettings, argv, "logstream streamer", "test")


@pytest.fixture
def toml(tmp_path: Path) -> Path:
    path = tmp_path / "cluster.toml"
    path.write_text('[streamer]\nport = 7001\nsize = "2MB"\nconsole = true\n\n[mediator]\nport = 9999\n')
    return path


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("LOGSTREAM_"):
            monkeypatch.delenv(name)


def test_defaults_are_the_go_originals() -> None:
    settings = load([])
    assert (settings.port, settings.size, settings.path, settings.pport, settings.console, settings.pprof) == (
        8080, 1_000_000, Path("../logs"), 1111, False, False)
    assert settings.mediator is None and settings.tls_mode == "none"


def test_toml_beats_defaults(toml: Path) -> None:
    settings = load(["-config", str(toml)])
    assert (settings.port, settings.size, settings.console) == (7001, 2_000_000, True)


def test_env_beats_toml(toml: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOGSTREAM_STREAMER_PORT", "7002")
    settings = load(["-config", str(toml)])
    assert settings.port == 7002 and settings.size == 2_000_000


def test_env_beats_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOGSTREAM_STREAMER_SIZE", "-1B")
    assert load([]).size == -1


def test_flag_beats_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOGSTREAM_STREAMER_PORT", "7002")
    assert load(["-port", "7003"]).port == 7003


def test_flag_beats_defaults() -> None:
    assert load(["--size", "5"]).size == 5


def test_flag_beats_toml(toml: Path) -> None:
    settings = load(["-config", str(toml), "-console=false", "-size", "-1"])
    assert (settings.console, settings.size, settings.port) == (False, -1, 7001)


def test_a_bad_toml_value_names_the_key(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[streamer]\nsize = "lots"\n')
    with pytest.raises(UsageError, match=r"streamer\.size.*not a size"):
        load(["-config", str(path)])


def test_a_bad_env_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOGSTREAM_STREAMER_PORT", "many")
    with pytest.raises(UsageError, match="LOGSTREAM_STREAMER_PORT"):
        load([])


def test_an_unknown_role_variable_is_an_error_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOGSTREAM_STREAMER_SIZ", "2MB")
    with pytest.raises(UsageError) as caught:
        load([])
    assert str(caught.value).startswith("LOGSTREAM_STREAMER_SIZ: unknown variable")
    assert "LOGSTREAM_STREAMER_SIZE" in str(caught.value)  # the close one is suggested


def test_cluster_variables_are_not_role_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOGSTREAM_STREAMERS__COUNT", "2")  # `logstream run`'s, not the streamer's
    monkeypatch.setenv("LOGSTREAM_STREAMER__0__NAME", "s1")
    assert load([]).port == 8080


def test_a_config_file_without_the_role_table_says_so(tmp_path: Path) -> None:
    path = tmp_path / "cluster.toml"
    path.write_text('[cluster]\nname = "x"\n[[streamer]]\nname = "s1"\n')
    with pytest.raises(UsageError, match=r"\[streamer\] must be a table"):
        load(["-config", str(path)])
    path.write_text('[cluster]\nname = "x"\n[streamers]\ncount = 2\n')
    with pytest.raises(UsageError) as caught:
        load(["-config", str(path)])
    assert str(caught.value).startswith(f"{path}: no [streamer] table")


@pytest.mark.parametrize("line", ['port = "7001"', 'console = "yes"', "console = 1", "size = 1.5"])
def test_a_toml_value_of_the_wrong_type_is_refused(tmp_path: Path, line: str) -> None:
    path = tmp_path / "node.toml"
    path.write_text(f"[streamer]\n{line}\n")
    with pytest.raises(UsageError, match=rf"streamer\.{line.split()[0]}: "):
        load(["-config", str(path)])
