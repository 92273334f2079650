"""`config check` refuses every value a node would refuse: for any key of `[mediator]`,
`[streamers]` or a `[[streamer]]` table and any text, if building that role's settings with it fails,
loading (and so checking) the cluster file with `--set KEY=TEXT` fails too, in one line per problem
naming the `--set` it came from."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from logstream.cluster import ConfigError, load_cluster
from logstream.cluster.schema import MEDIATOR_PLANNED, STREAMER_PLANNED
from logstream.config.settings import MediatorSettings, RoleSettings, StreamerSettings
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
