"""The nodes a cluster file describes: each process's address and command line (pure: no I/O)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

from logstream.errors import UserError
from logstream.config.settings import MediatorSettings, RoleSettings, StreamerSettings, flag_spelling
from logstream.config.types import show_value
from logstream.cluster.schema import ClusterConfig, StreamerOverride

WILDCARDS = {"0.0.0.0", "::", "", "[::]"}


@dataclass(frozen=True)
class Node:
    """One process of the cluster."""

    name: str  # "mediator", "s1", ...
    role: Literal["mediator", "streamer"]
    host: str  # bind address
    port: int
    address: str  # host:port others dial
    grace_s: float
    flags: tuple[str, ...]  # `-port=8080`, ... (without the program)
    pprof_port: int | None = None
    pprof_host: str = "127.0.0.1"

    def argv(self, python: str) -> list[str]:
        """The full command line, run with `python -m logstream` so the same environment is used."""
        return [python, "-m", "logstream", self.role, *self.flags]


def dial_host(host: str) -> str:
    return "127.0.0.1" if host in WILDCARDS else host


def mediator_address(config: ClusterConfig) -> str:
    """The host:port streamers and clients dial to reach the mediator."""
    mediator = config.mediator
    if mediator.advertise:
        return str(mediator.advertise)
    host = dial_host(mediator.host)
    return f"[{host}]:{mediator.port}" if ":" in host else f"{host}:{mediator.port}"


def raw(model: BaseModel, exclude: frozenset[str] = frozenset()) -> dict[str, Any]:
    """Field values as Python values (seconds, bytes), not serialised text."""
    return {name: getattr(model, name) for name in type(model).model_fields if name not in exclude}


def mediator_values(config: ClusterConfig) -> dict[str, Any]:
    """The mediator's settings from `[mediator]`, as `MediatorSettings` fields (no cluster-only keys)."""
    return raw(config.mediator, exclude=frozenset({"advertise"}))


def override_of(config: ClusterConfig, name: str) -> StreamerOverride | None:
    return next((o for o in config.streamer if o.name == name), None)


def streamer_values(config: ClusterConfig, index: int) -> dict[str, Any]:
    """The effective settings of streamer `s{index}` (1-based): defaults, counted ports, overrides;
    `StreamerSettings` fields."""
    values = raw(config.streamers, exclude=frozenset({"count"}))
    values["port"] = config.streamers.port + index - 1
    values["pport"] = config.streamers.pport + index - 1
    values["advertise"] = None
    override = override_of(config, f"s{index}")
    if override is not None:
        values.update({k: v for k, v in raw(override, exclude=frozenset({"name"})).items() if v is not None})
    return values


def setting_key(config: ClusterConfig, node: str, field: str) -> tuple[str, ...]:
    """The cluster key path that sets `field` of `node`: `mediator.X`, `streamer.sN.X` when its
    `[[streamer]]` table sets it, else `streamers.X`."""
    if node == "mediator":
        return ("mediator", field)
    override = override_of(config, node)
    if override is not None and getattr(override, field, None) is not None:
        return ("streamer", node, field)
    return ("streamers", field)


def flags_for(model: type[RoleSettings], values: Mapping[str, Any]) -> list[str]:
    """`-name=value` for each set value, in the units the field's type writes."""
    return [f"{flag_spelling(name)}={show_value(model.model_fields[name], value)}"
            for name, value in values.items() if value is not None]


def absolute(path: Path, cwd: Path) -> Path:
    try:
        path = path.expanduser()
    except RuntimeError:  # "~name" with no user "name": taken literally, as a shell does
        pass
    return path if path.is_absolute() else cwd / path


def _tls_flags(config: ClusterConfig, cwd: Path) -> list[str]:
    tls = config.tls
    if tls is None:
        return []
    files = {name: absolute(getattr(tls, name), cwd) for name in ("ca", "crt", "pk") if getattr(tls, name)}
    return flags_for(StreamerSettings, {**files, "verify_clients": tls.verify_clients})


def token_path(config: ClusterConfig, cwd: Path) -> Path:
    """The cluster token's file `logstream run` hands to every node (made there when missing)."""
    if config.cluster.token_file is not None:
        return absolute(config.cluster.token_file, cwd)
    return absolute(config.cluster.run_dir, cwd) / "cluster.token"


def plan_nodes(config: ClusterConfig, cwd: Path) -> list[Node]:
    """The mediator and every streamer, with the flags each is started with. Relative paths in the
    config are taken from `cwd` (the folder `logstream run` was started in). Every node gets the
    cluster token's file (`token_path`), so that only nodes of the cluster can steer each other."""
    shared = [*_tls_flags(config, cwd), *flags_for(StreamerSettings, {"token_file": token_path(config, cwd)})]
    m = config.mediator
    values = mediator_values(config)
    pprof, pport = values.pop("pprof"), values.pop("pport")
    debug = {"pprof": True, "pport": pport} if pprof else {}
    # The lease ledger lets a mediator restarted by supervisord wait only for leases it really granted.
    ledger = absolute(config.cluster.run_dir, cwd) / "mediator.lease"
    mediator_flags = flags_for(MediatorSettings, {"id": "mediator", **values, "lease_file": ledger, **debug})
    nodes = [Node("mediator", "mediator", m.host, m.port, mediator_address(config), m.grace,
                  tuple(mediator_flags + shared), m.pport if m.pprof else None, m.phost)]
    target = mediator_address(config)
    for index, name in enumerate(config.streamer_names(), start=1):
        values = streamer_values(config, index)
        values["path"] = absolute(values["path"], cwd)
        pprof, pport = values.pop("pprof"), values.pop("pport")
        address = values["advertise"] or f"{dial_host(values['host'])}:{values['port']}"
        if values["host"] in WILDCARDS:  # the mediator must dial a real address
            values["advertise"] = address
        advertise = values.pop("advertise")
        flags = flags_for(StreamerSettings, {"id": name, "mediator": target, **values,
                                             **({"pprof": True, "pport": pport} if pprof else {}),
                                             "advertise": advertise})
        nodes.append(Node(name, "streamer", values["host"], values["port"], address, values["grace"],
                          tuple(flags + shared), pport if pprof else None, values["phost"]))
    return nodes


class UnknownNode(UserError):
    """`--only` names a node the cluster does not have."""


def select_nodes(config: ClusterConfig, only: str | None) -> list[str]:
    """The node names `--only` picks ("mediator", "s1,s2"); all nodes when None."""
    names = config.node_names()
    if only is None:
        return names
    wanted = [part.strip() for part in only.split(",") if part.strip()]
    unknown = [name for name in wanted if name not in names]
    if unknown or not wanted:
        raise UnknownNode(f"--only {only!r}: unknown node {', '.join(unknown) or '(none given)'} "
                         f"(this cluster has {', '.join(names)})")
    return [name for name in names if name in wanted]
