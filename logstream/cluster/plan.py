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
from logstream.cluster.schema import ClusterConfig, MediatorOverride, StreamerOverride

WILDCARDS = {"0.0.0.0", "::", "", "[::]"}
ETCD_PROGRAM = "etcd"


@dataclass(frozen=True)
class Node:
    """One process of the cluster."""

    name: str  # "mediator" (or m1, m2, ...), "s1", ..., "e1" (a managed etcd member)
    role: Literal["mediator", "streamer", "etcd"]
    host: str  # bind address
    port: int
    address: str  # host:port others dial
    grace_s: float
    flags: tuple[str, ...]  # `-port=8080`, ... (without the program)
    pprof_port: int | None = None
    pprof_host: str = "127.0.0.1"

    def argv(self, python: str) -> list[str]:
        """The full command line, run with `python -m logstream` so the same environment is used
        (an etcd member: the `etcd` program, found on the PATH)."""
        if self.role == "etcd":
            return [ETCD_PROGRAM, *self.flags]
        return [python, "-m", "logstream", self.role, *self.flags]


def dial_host(host: str) -> str:
    return "127.0.0.1" if host in WILDCARDS else host


def host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def mediator_addresses(config: ClusterConfig) -> list[str]:
    """The host:port streamers and clients dial to reach each mediator, in `mediator_names` order."""
    addresses = []
    for index in range(1, config.mediator.count + 1):
        values = mediator_values(config, index, with_address=True)
        addresses.append(str(values["advertise"]) if values["advertise"]
                         else host_port(dial_host(values["host"]), values["port"]))
    return addresses


def mediator_address(config: ClusterConfig) -> str:
    """The host:port streamers and clients dial to reach the (first) mediator."""
    return mediator_addresses(config)[0]


def raw(model: BaseModel, exclude: frozenset[str] = frozenset()) -> dict[str, Any]:
    """Field values as Python values (seconds, bytes), not serialised text."""
    return {name: getattr(model, name) for name in type(model).model_fields if name not in exclude}


def mediator_values(config: ClusterConfig, index: int = 1, with_address: bool = False) -> dict[str, Any]:
    """The settings of the `index`th mediator (1-based) from `[mediator]`, counted ports and its
    `[[mediators]]` table, as `MediatorSettings` fields (with `advertise` too, if `with_address`)."""
    values = raw(config.mediator, exclude=frozenset({"count", "workers"}))
    values["port"] = config.mediator.port + index - 1
    values["pport"] = config.mediator.pport + index - 1
    override = mediator_override_of(config, config.mediator_names()[index - 1])
    if override is not None:
        values.update({k: v for k, v in raw(override, exclude=frozenset({"name"})).items() if v is not None})
    if not with_address:
        values.pop("advertise")
    return values


def mediator_override_of(config: ClusterConfig, name: str) -> MediatorOverride | None:
    return next((o for o in config.mediators if o.name == name), None)


def etcd_endpoints(config: ClusterConfig) -> list[str]:
    """The client endpoints of the cluster's etcd: listed, or those of the managed members; [] without [etcd]."""
    etcd = config.etcd
    if etcd is None:
        return []
    if etcd.endpoints is not None:
        return list(etcd.endpoints)
    return [host_port(dial_host(etcd.host), client) for client, _peer in etcd_ports(config)]


def streamer_etcd_values(config: ClusterConfig) -> dict[str, Any]:
    """etcd mode: what every streamer gets from `[etcd]` (it then registers in etcd and owns keys
    through its etcd lease, not a mediator's); {} without [etcd]."""
    if config.etcd is None:
        return {}
    return {"etcd": etcd_endpoints(config), "cluster": config.etcd_cluster(), "etcd_ttl": config.etcd.ttl}


def etcd_ports(config: ClusterConfig) -> list[tuple[int, int]]:
    """(client, peer) port of each managed etcd member: two each, counting up from `[etcd] port`."""
    etcd = config.etcd
    if etcd is None or etcd.members is None:
        return []
    return [(etcd.port + 2 * i, etcd.port + 2 * i + 1) for i in range(etcd.members)]


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


# A streamer's etcd settings, by the `[etcd]` key that sets them.
ETCD_KEYS = {"etcd": "endpoints", "cluster": "cluster", "etcd_ttl": "ttl"}


def setting_key(config: ClusterConfig, node: str, field: str) -> tuple[str, ...]:
    """The cluster key path that sets `field` of `node`: `mediator.X` (`mediators[i].X` when its
    `[[mediators]]` table sets it), `streamer.sN.X` when its `[[streamer]]` table sets it, `etcd.X`
    for a streamer's etcd settings, else `streamers.X`."""
    if node in config.mediator_names():
        for position, table in enumerate(config.mediators):
            if table.name == node and getattr(table, field, None) is not None:
                return ("mediators", str(position), field)
        return ("mediator", field)
    if field in ETCD_KEYS:
        return ("etcd", ETCD_KEYS[field])
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


def _any_port(address: str) -> str:
    """`address` with port 0 (any free port: the node logs the one it got)."""
    from logstream.node.address import parse_host_port

    return host_port(parse_host_port(address).host, 0)


def plan_nodes(config: ClusterConfig, cwd: Path) -> list[Node]:
    """The mediator and every streamer, with the flags each is started with. Relative paths in the
    config are taken from `cwd` (the folder `logstream run` was started in). Every node gets the
    cluster token's file (`token_path`), so that only nodes of the cluster can steer each other."""
    shared = [*_tls_flags(config, cwd), *flags_for(StreamerSettings, {"token_file": token_path(config, cwd)})]
    nodes = plan_etcd(config, cwd)
    for index, (name, address) in enumerate(zip(config.mediator_names(), mediator_addresses(config)), start=1):
        values = mediator_values(config, index)
        pprof, pport = values.pop("pprof"), values.pop("pport")
        if config.etcd is not None:  # a stateless router: no lease ledger; workers share the port
            role = {"etcd": etcd_endpoints(config), "cluster": config.etcd_cluster(),
                    "reuse_port": config.mediator.workers > 1}
        else:  # the lease ledger lets a mediator restarted by supervisord wait only for leases it granted
            role = {"lease_file": absolute(config.cluster.run_dir, cwd) / f"{name}.lease"}
        for worker, process in enumerate(config.worker_names(name), start=1):
            own = dict(values)
            if worker > 1:  # debug and metrics servers cannot share a port: the first worker's only
                own["metrics"] = _any_port(own["metrics"]) if own.get("metrics") else None
            debug = {"pprof": True, "pport": pport} if pprof and worker == 1 else {}
            mediator_flags = flags_for(MediatorSettings, {"id": process, **own, **role, **debug})
            nodes.append(Node(process, "mediator", values["host"], values["port"], address, values["grace"],
                              tuple(mediator_flags + shared), pport if debug else None, values["phost"]))
    etcd = streamer_etcd_values(config) or {"mediator": mediator_address(config)}
    for index, name in enumerate(config.streamer_names(), start=1):
        values = streamer_values(config, index)
        values["path"] = absolute(values["path"], cwd)
        pprof, pport = values.pop("pprof"), values.pop("pport")
        address = values["advertise"] or f"{dial_host(values['host'])}:{values['port']}"
        if values["host"] in WILDCARDS:  # the mediator must dial a real address
            values["advertise"] = address
        advertise = values.pop("advertise")
        flags = flags_for(StreamerSettings, {"id": name, **etcd, **values,
                                             **({"pprof": True, "pport": pport} if pprof else {}),
                                             "advertise": advertise})
        nodes.append(Node(name, "streamer", values["host"], values["port"], address, values["grace"],
                          tuple(flags + shared), pport if pprof else None, values["phost"]))
    return nodes


def plan_etcd(config: ClusterConfig, cwd: Path) -> list[Node]:
    """The managed etcd members (none for an existing etcd): data in run_dir/etcd/NAME; client
    TLS from `[tls]` (https, and client certificates required when `[tls]` verifies clients);
    the peer traffic between members stays plaintext on the members' host."""
    etcd = config.etcd
    if etcd is None or etcd.members is None:
        return []
    tls = config.tls
    scheme = "https" if tls is not None and tls.crt is not None else "http"
    data = absolute(config.cluster.run_dir, cwd) / "etcd"
    dial = dial_host(etcd.host)
    names, ports = config.etcd_names(), etcd_ports(config)
    initial = ",".join(f"{name}=http://{host_port(dial, peer)}" for name, (_client, peer) in zip(names, ports))
    nodes = []
    for name, (client, peer) in zip(names, ports):
        flags = [f"--name={name}", f"--data-dir={data / name}",
                 f"--listen-client-urls={scheme}://{host_port(etcd.host, client)}",
                 f"--advertise-client-urls={scheme}://{host_port(dial, client)}",
                 f"--listen-peer-urls=http://{host_port(etcd.host, peer)}",
                 f"--initial-advertise-peer-urls=http://{host_port(dial, peer)}",
                 f"--initial-cluster={initial}", "--initial-cluster-state=new",
                 f"--initial-cluster-token=logstream-{config.etcd_cluster()}", "--logger=zap", "--log-level=error"]
        if tls is not None and tls.crt is not None and tls.pk is not None:
            flags += [f"--cert-file={absolute(tls.crt, cwd)}", f"--key-file={absolute(tls.pk, cwd)}"]
            verify = tls.ca is not None if tls.verify_clients is None else tls.verify_clients
            if verify and tls.ca is not None:
                flags += ["--client-cert-auth", f"--trusted-ca-file={absolute(tls.ca, cwd)}"]
        nodes.append(Node(name, "etcd", etcd.host, client, host_port(dial, client), ETCD_GRACE_S, tuple(flags)))
    return nodes


# etcd stops at once on SIGTERM; supervisord waits this long (plus its margin) before SIGKILL.
ETCD_GRACE_S = 5.0


class UnknownNode(UserError):
    """`--only` names a node the cluster does not have."""


def select_nodes(config: ClusterConfig, only: str | None) -> list[str]:
    """The node names `--only` picks ("mediator", "s1,s2", "e1,m1"); all nodes when None."""
    names = config.node_names()
    if only is None:
        return names
    wanted = [part.strip() for part in only.split(",") if part.strip()]
    unknown = [name for name in wanted if name not in names]
    if unknown or not wanted:
        raise UnknownNode(f"--only {only!r}: unknown node {', '.join(unknown) or '(none given)'} "
                         f"(this cluster has {', '.join(names)})")
    return [name for name in names if name in wanted]
