"""`config check` refuses every value a node would refuse: for any key of `[mediator]`,
`[streamers]` or a `[[streamer]]` table and any text, if building that role's settings with it fails,
loading (and so checking) the cluster file with `--set KEY=TEXT` fails too, in one line per problem
naming the `--set` it came from; and a cluster file refuses every value (in TOML's own types: a
string where a number or a boolean belongs, too) that a node's `-config FILE` refuses."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError
from pydantic_settings import SettingsError

from logstream.cluster import ConfigError, load_cluster
from logstream.cluster.schema import MEDIATOR_PLANNED, STREAMER_PLANNED
from logstream.config.settings import MediatorSettings, RoleSettings, StreamerSettings, load_role
from logstream.config.units import format_duration, format_size

# Texts a person might write for any setting: sizes (with -1B, unlimited), durations, numbers,
# words, and anything at all.
values = st.one_of(
    st.just("-1B"),
    st.integers(min_value=-2, max_value=10**7).map(str),
    st.integers(min_value=1, max_value=10**12).map(format_size),
    st.integers(min_value=1, max_value=10**6).map(lambda ms: format_duration(ms / 1000)),
    st.sampled_from(["0", "0s", "-5s", "true", "false", "never", "asyncio", "lots", "", "debug", "1e3"]),
    st.text(st.characters(codec="utf-8"), max_size=12),
)

MEDIATOR_KEYS = sorted(set(MediatorSettings.model_fields) - MEDIATOR_PLANNED)
STREAMER_KEYS = sorted(set(StreamerSettings.model_fields) - STREAMER_PLANNED - {"advertise"})


def refused_by_role(model: type[RoleSettings], key: str, text: str) -> bool:
    try:
        model.model_validate({key: text})
    except ValidationError:
        return True
    return False


def refused_by_cluster(item: str) -> list[str] | None:
    try:
        load_cluster(None, [item], environ={})
    except ConfigError as exc:
        return exc.problems
    return None


@given(st.sampled_from(MEDIATOR_KEYS), values)
def test_config_check_refuses_what_the_mediator_refuses(key: str, text: str) -> None:
    if refused_by_role(MediatorSettings, key, text):
        item = f"mediator.{key}={text}"
        problems = refused_by_cluster(item)
        assert problems is not None, f"--set {item} passes the check but the mediator refuses it"
        assert any(line.startswith(f"--set {item}: mediator.{key}") for line in problems), problems


@given(st.sampled_from(STREAMER_KEYS), values, st.booleans())
def test_config_check_refuses_what_a_streamer_refuses(key: str, text: str, one: bool) -> None:
    if refused_by_role(StreamerSettings, key, text):
        item = f"streamer.s2.{key}={text}" if one else f"streamers.{key}={text}"
        problems = refused_by_cluster(item)
        assert problems is not None, f"--set {item} passes the check but the streamer refuses it"
        assert any(line.startswith(f"--set {item}: ") for line in problems), problems


# Values as a TOML file holds them: its own types, not only text.
toml_values = st.one_of(values, st.integers(min_value=-2, max_value=10**7), st.booleans(),
                        st.floats(min_value=-1.0, max_value=1e6, allow_nan=False))


def toml_literal(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a TOML basic string (\uXXXX escapes included)
    return repr(value)


def refused_by_node_file(model: type[RoleSettings], key: str, value: object) -> bool:
    """Whether `logstream streamer|mediator -config FILE` refuses FILE's `[table] key = value`."""
    with tempfile.TemporaryDirectory() as folder:
        file = Path(folder) / "node.toml"
        file.write_text(f"[{model.toml_table}]\n{key} = {toml_literal(value)}\n")
        try:
            load_role(model, {}, file, environ={})
        except (ValidationError, SettingsError, ValueError):
            return True
    return False


def refused_by_cluster_file(section: str, key: str, value: object) -> list[str] | None:
    with tempfile.TemporaryDirectory() as folder:
        file = Path(folder) / "cluster.toml"
        table = "[[streamer]]\nname = \"s2\"\n" if section == "streamer" else f"[{section}]\n"
        file.write_text(f"[streamers]\ncount = 2\n{table}{key} = {toml_literal(value)}\n"
                        if section == "streamer" else f"{table}{key} = {toml_literal(value)}\n")
        try:
            load_cluster(file, environ={})
        except ConfigError as exc:
            return exc.problems
    return None


@given(st.sampled_from(MEDIATOR_KEYS), toml_values)
def test_a_cluster_file_refuses_what_a_mediator_file_refuses(key: str, value: object) -> None:
    if refused_by_node_file(MediatorSettings, key, value):
        problems = refused_by_cluster_file("mediator", key, value)
        assert problems is not None, f"[mediator] {key} = {value!r} passes the check but the mediator refuses it"


@given(st.sampled_from(STREAMER_KEYS), toml_values, st.sampled_from(["streamers", "streamer"]))
def test_a_cluster_file_refuses_what_a_streamer_file_refuses(key: str, value: object, section: str) -> None:
    if refused_by_node_file(StreamerSettings, key, value):
        problems = refused_by_cluster_file(section, key, value)
        assert problems is not None, f"[{section}] {key} = {value!r} passes the check but the streamer refuses it"


def test_numbers_and_booleans_written_as_strings_are_refused_by_both() -> None:
    for model, section, key, value in [(MediatorSettings, "mediator", "port", "8000"),
                                       (StreamerSettings, "streamers", "console", "yes"),
                                       (StreamerSettings, "streamer", "keep", "3")]:
        assert refused_by_node_file(model, key, value)
        problems = refused_by_cluster_file(section, key, value)
        assert problems is not None and len(problems) == 1, problems
        assert "expected" in problems[0] and repr(value) in problems[0], problems
