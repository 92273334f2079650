"""Pure checks of a cluster file: keys that conflict, and each planned node's settings built as its role would."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from logstream.config.flags import error_text
from logstream.config.settings import MediatorSettings, RoleSettings, SettingsConflict, StreamerSettings
from logstream.cluster.plan import WILDCARDS, mediator_values, setting_key, streamer_values
from logstream.cluster.schema import SECTION_MODELS, ClusterConfig
from logstream.config.types import toml_value_problem


@dataclass(frozen=True)
class Problem:
    """What is wrong (`text`) with the value at `key` (a key path, e.g. ("streamers", "port"));
    `names_keys`: the text names every key itself, so the key is not shown before it."""

    key: tuple[str, ...]
    text: str
    names_keys: bool = False


def _same_host(a: str, b: str) -> bool:
    return a == b or a in WILDCARDS or b in WILDCARDS


def cluster_problems(config: ClusterConfig) -> list[Problem]:
    """Keys that are valid alone but not together: unknown or doubled `[[streamer]]` tables, ports
    past 65535 or shared by two sockets on one machine."""
    problems: list[Problem] = []
    names = config.streamer_names()
    seen: set[str] = set()
    for position, override in enumerate(config.streamer):
        key = ("streamer", str(position), "name")
        if override.name in seen:
            problems.append(Problem(key, f"{override.name!r} has two [[streamer]] tables"))
        seen.add(override.name)
        if override.name not in names:
            problems.append(Problem(key, f"no streamer {override.name!r} "
                                         f"(streamers.count = {config.streamers.count}: {names[0]}..{names[-1]})"))
    last = config.streamers.port + config.streamers.count - 1
    if last > 65535:
        problems.append(Problem(("streamers", "port"), f"{config.streamers.count} streamers from port "
                                                       f"{config.streamers.port} run past 65535"))
    if problems:
        return problems
    return _port_clashes(config)


def _port_clashes(config: ClusterConfig) -> list[Problem]:
    # Every listening socket: (machine, port, who, key path). A node's machine is the host it
    # advertises, else the one it binds; a wildcard bind on an unknown machine may be any of them.
    def machine(bind: str, advertise: str | None) -> str:
        return advertise.rpartition(":")[0] if advertise else bind

    m = config.mediator
    sockets: list[tuple[str, int, str, tuple[str, ...]]] = [
        (machine(m.host, m.advertise), m.port, "the mediator", ("mediator", "port"))]
    if m.pprof:
        sockets.append((machine(m.host, m.advertise), m.pport, "the mediator's debug server", ("mediator", "pport")))
    for index, name in enumerate(config.streamer_names(), start=1):
        values = streamer_values(config, index)
        where = machine(values["host"], values["advertise"])
        sockets.append((where, values["port"], f"streamer {name}", setting_key(config, name, "port")))
        if values["pprof"]:
            sockets.append((where, values["pport"], f"streamer {name}'s debug server", ("streamers", "pport")))
    problems: list[Problem] = []
    for i, (host, port, who, key) in enumerate(sockets):
        for other_host, other_port, other, _ in sockets[:i]:
            if port == other_port and _same_host(host, other_host):
                problems.append(Problem(key, f"port {port} of {who} is also the port of {other}"))
                break
    return problems


def node_problems(config: ClusterConfig) -> list[Problem]:
    """Build each planned node's role settings from what the cluster gives it, as the node will:
    whatever the node would refuse, named by the cluster key that set it. (TLS and token files are
    checked against the file system by `check_files`; they are not part of these values.)"""
    problems = _role_problems(config, "mediator", MediatorSettings, mediator_values(config))
    reported: set[tuple[str, ...]] = {problem.key for problem in problems}
    for index, name in enumerate(config.streamer_names(), start=1):
        values = streamer_values(config, index)
        for problem in _role_problems(config, name, StreamerSettings, values):
            if problem.key not in reported:  # `streamers.X` once, not once per streamer
                problems.append(problem)
                reported.add(problem.key)
    return problems


def _role_problems(config: ClusterConfig, node: str, model: type[RoleSettings],
                   values: dict[str, Any]) -> list[Problem]:
    try:
        model.model_validate(values)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            raised = error.get("ctx", {}).get("error")
            if isinstance(raised, SettingsConflict):
                key = setting_key(config, node, raised.keys[0])
                section = ".".join(key[:-1])
                problems.append(Problem(key, raised.explain(lambda field: f"{section}.{field}"), names_keys=True))
            elif error["loc"]:
                problems.append(Problem(setting_key(config, node, str(error["loc"][0])), error_text(error)))
            else:  # a check of the whole model that names no key: said as the node says it
                problems.append(Problem((node,), error_text(error)))
        return problems
    return []


def conflict_problem(section: tuple[str, ...], conflict: SettingsConflict) -> Problem:
    """A conflict found while reading a section: its keys spelled as key paths in that section."""
    prefix = ".".join(section)
    return Problem((*section, conflict.keys[0]), conflict.explain(lambda field: f"{prefix}.{field}"), names_keys=True)


def toml_shape_problems(data: Mapping[str, Any]) -> list[Problem]:
    """What a cluster file's own TOML gets wrong before any merging: `[streamer]` written for
    `[[streamer]]`, and numbers or booleans written as strings (`port = "8000"`), which a flag or a
    variable may give as text but a file has its own types for."""
    problems: list[Problem] = []
    tables = data.get("streamer")
    if isinstance(tables, Mapping):
        problems.append(Problem(("streamer",), "[streamer] is one table, but per-streamer settings are "
                                "[[streamer]] tables (double brackets, each with name = \"s1\" ...); settings "
                                "for every streamer go in [streamers]", names_keys=True))
    for section, model in SECTION_MODELS.items():
        value = data.get(section)
        entries = (list(enumerate(value)) if isinstance(value, list) and section == "streamer"
                   else [(None, value)] if isinstance(value, Mapping) and section != "streamer" else [])
        for position, table in entries:
            if not isinstance(table, Mapping):
                continue
            for key, item in table.items():
                field = model.model_fields.get(str(key))
                why = None if field is None else toml_value_problem(field, item)
                if why:
                    where = (section,) if position is None else (section, str(position))
                    problems.append(Problem((*where, str(key)), why))
    return problems
