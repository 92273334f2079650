"""Pure checks of a cluster file: keys that conflict, and each planned node's settings built as its role would."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from logstream.config.flags import error_text
from logstream.node.address import parse_host_port
from logstream.config.settings import MediatorSettings, RoleSettings, SettingsConflict, StreamerSettings
from logstream.cluster.plan import (
    WILDCARDS,
    etcd_ports,
    mediator_values,
    setting_key,
    streamer_etcd_values,
    streamer_values,
)
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
    """Keys that are valid alone but not together: unknown or doubled `[[streamer]]` and
    `[[mediators]]` tables, several mediators without etcd, ports past 65535 or shared by two
    sockets on one machine."""
    problems: list[Problem] = []
    if config.mediator.count > 1 and config.etcd is None:
        problems.append(Problem(("mediator", "count"), f"{config.mediator.count} mediators need an [etcd] section "
                                "(the embedded mediator keeps the cluster's state itself: only one can run)"))
    if config.mediator.workers > 1 and config.etcd is None:
        problems.append(Problem(("mediator", "workers"), f"{config.mediator.workers} processes per mediator need an "
                                "[etcd] section (only a stateless router may share its port)"))
    mediators = config.mediator_names()
    named: set[str] = set()
    for position, table in enumerate(config.mediators):
        key = ("mediators", str(position), "name")
        if table.name in named:
            problems.append(Problem(key, f"{table.name!r} has two [[mediators]] tables"))
        named.add(table.name)
        if table.name not in mediators or mediators == ["mediator"]:
            problems.append(Problem(key, f"no mediator {table.name!r} (mediator.count = {config.mediator.count}"
                                         f"{': m1..m' + str(config.mediator.count) if config.mediator.count > 1 else ', set [mediator] itself'})"))
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
    last_mediator = config.mediator.port + config.mediator.count - 1
    if last_mediator > 65535:
        problems.append(Problem(("mediator", "port"), f"{config.mediator.count} mediators from port "
                                                      f"{config.mediator.port} run past 65535"))
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
        return parse_host_port(advertise).host if advertise else bind.strip("[]")

    sockets: list[tuple[str, int, str, tuple[str, ...]]] = []
    etcd = config.etcd
    for name, (client, peer) in zip(config.etcd_names(), etcd_ports(config)):
        assert etcd is not None
        sockets.append((etcd.host, client, f"etcd member {name}", ("etcd", "port")))
        sockets.append((etcd.host, peer, f"etcd member {name}'s peer listener", ("etcd", "port")))
    for index, name in enumerate(config.mediator_names(), start=1):
        m = mediator_values(config, index, with_address=True)
        who = "the mediator" if name == "mediator" else f"mediator {name}"
        where = machine(m["host"], m["advertise"])
        sockets.append((where, m["port"], who, setting_key(config, name, "port")))
        if m["pprof"]:
            sockets.append((where, m["pport"], f"{who}'s debug server", setting_key(config, name, "pport")))
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
    problems: list[Problem] = []
    reported: set[tuple[str, ...]] = set()
    for index, name in enumerate(config.mediator_names(), start=1):
        for problem in _role_problems(config, name, MediatorSettings, mediator_values(config, index)):
            if problem.key not in reported:  # `mediator.X` once, not once per mediator
                problems.append(problem)
                reported.add(problem.key)
    etcd = streamer_etcd_values(config)
    for index, name in enumerate(config.streamer_names(), start=1):
        values = {**streamer_values(config, index), **etcd}
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
