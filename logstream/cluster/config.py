"""The cluster file (`ClusterConfig`), its one loader and precedence, and the nodes it describes.

Precedence, declared once in `ClusterConfig.settings_customise_sources` (first wins):
`--set section.key=value` and short flags (init values) > environment (`LOGSTREAM_SECTION__KEY`)
> the TOML file > defaults. Every mistake comes back as one line naming where the value came from
and its key path, e.g. `configs/x.toml: streamers.size: not a size: 'abc'`.

`plan_nodes` turns a valid config into the nodes' command lines (pure: no I/O);
`check_files` holds the checks that need the file system (certificates, folders).
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import tomli_w
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
    TomlConfigSettingsSource,
)

from logstream.config.flags import UsageError, flag_name
from logstream.config.settings import tls_set_problem
from logstream.config.types import Address, Duration, Size, ZeroOrDuration
from logstream.config.units import format_duration, format_size

ENV_PREFIX = "LOGSTREAM_"
ENV_DELIMITER = "__"
# `--set streamer.NAME.KEY=VALUE` values travel under this key until the model merges them
# into the `[[streamer]]` list (pydantic-settings would otherwise replace the whole list).
_NODE_SETS = "__streamer_sets__"
_WILDCARDS = {"0.0.0.0", "::", "", "[::]"}
LogLevel = Literal["debug", "info", "warning", "error"]
NAME_RE = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"


class ConfigError(UsageError):
    """An invalid cluster configuration: one line per problem, each naming its key path."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class ClusterSection(_Section):
    name: str = Field("local", pattern=NAME_RE, description="the cluster's name, shown in logs and status")
    run_dir: Path = Field(
        Path(".logstream"), description="supervisord's configuration, socket, pid file and each node's output"
    )
    token_file: Path | None = Field(
        None, description="the cluster token every node must present (default: run_dir/cluster.token, made "
        "at the first run); a cluster spread over machines needs the same file on each"
    )


class _NodeCommon(_Section):
    grace: Duration = Field(5.0, description="on SIGTERM, time to let in-flight requests finish")
    log_level: LogLevel = Field("info", description="least severe event written to the node's log")
    pprof: bool = Field(False, description="start the debug server (/metrics, /debug/stacks, /healthz)")
    phost: str = Field("127.0.0.1", description="address the debug server binds to")


class MediatorSection(_NodeCommon):
    host: str = Field("127.0.0.1", description="address the mediator binds to")
    port: int = Field(8000, ge=1, le=65535, description="the mediator's gRPC port")
    advertise: Address | None = Field(
        None, description="host:port streamers dial (default: host:port; needed when host is 0.0.0.0 on another machine)"
    )
    pport: int = Field(1111, ge=1, le=65535, description="the mediator's debug port (with pprof)")
    health_interval: Duration = Field(5.0, description="how often each streamer is pinged")
    ping_timeout: Duration | None = Field(None, description="a ping slower than this fails (default: min(interval/2, 2s))")
    lease: Duration | None = Field(None, description="how long a ping lets a streamer write (default: 1.5 x health_interval)")
    # Unset keys keep `logstream mediator`'s own defaults (derived from the timings above).
    handoff_wait: Duration | None = Field(None, description="how long a request for a key without a usable owner waits")
    restart_grace: ZeroOrDuration | None = Field(
        None, description="after a start, place no key for this long (default: what the lease ledger records)"
    )
    forward_timeout: Duration | None = Field(None, description="deadline of one forward to a streamer")
    batch_lines: int | None = Field(None, ge=1, description="most lines coalesced into one forward")
    batch_bytes: Size | None = Field(None, description="most bytes coalesced into one forward")
    linger: ZeroOrDuration | None = Field(None, description="under load, how long a forward waits for more requests")
    key_idle: Duration | None = Field(None, description="forget a key not written for this long once its file is closed")
    max_keys: int | None = Field(None, ge=1, description="most file keys the mediator tracks (then new keys are refused)")
    max_line: Size = Field(1_048_576, description="longest accepted line")


class StreamersSection(_NodeCommon):
    count: int = Field(3, ge=1, le=1000, description="how many streamers (named s1, s2, ...)")
    host: str = Field("127.0.0.1", description="address the streamers bind to")
    port: int = Field(8080, ge=1, le=65535, description="the first streamer's port; the next ones count up")
    pport: int = Field(1112, ge=1, le=65535, description="the first streamer's debug port (with pprof); counts up")
    path: Path = Field(Path("./logs"), description="root folder for log files")
    size: Size = Field(1_000_000, description="max size of one file (e.g. 1MB, 512KiB; -1B: unlimited)")
    console: bool = Field(False, description="also print each line to the node's output")
    max_line: Size = Field(1_048_576, description="longest accepted line")
    fsync: Literal["never", "always", "interval"] = Field("never", description="durability: never, always, interval")
    fsync_interval: Duration = Field(1.0, description="with fsync = interval: how often to fsync")
    max_open_files: int = Field(256, ge=1, le=65536, description="most descriptors held for log files and their folders")
    idle_close: Duration = Field(60.0, description="close (and unlock) a file not written for this long")
    keep: int = Field(0, ge=0, description="rotated files kept per log name (0: keep all)")


class StreamerOverride(_Section):
    """One `[[streamer]]` table: settings for the streamer `name` only; unset keys inherit."""

    name: str = Field(description="which streamer: s1 .. sN")
    host: str | None = None
    port: int | None = Field(None, ge=1, le=65535)
    advertise: Address | None = Field(None, description="host:port the mediator dials for this streamer")
    pport: int | None = Field(None, ge=1, le=65535)
    path: Path | None = None
    size: Size | None = None
    console: bool | None = None
    max_line: Size | None = None
    fsync: Literal["never", "always", "interval"] | None = None
    fsync_interval: Duration | None = None
    max_open_files: int | None = Field(None, ge=1, le=65536)
    idle_close: Duration | None = None
    keep: int | None = Field(None, ge=0)
    grace: Duration | None = None
    log_level: LogLevel | None = None
    pprof: bool | None = None
    phost: str | None = None


class TlsSection(_Section):
    ca: Path | None = Field(None, description="CA certificate: verify peers (mutual TLS with crt/pk)")
    crt: Path | None = Field(None, description="the nodes' certificate")
    pk: Path | None = Field(None, description="the nodes' private key")
    verify_clients: bool | None = Field(None, description="require client certificates (default: yes with ca)")

    @model_validator(mode="after")
    def _complete(self) -> TlsSection:
        problem = tls_set_problem(self.ca, self.crt, self.pk, self.verify_clients, lambda key: f"tls.{key}")
        if problem:
            raise ValueError(problem)
        return self


class ClusterConfig(BaseSettings):
    """A whole cluster: DESIGN §7's file shape."""

    # The TOML file and the environment; set on a subclass by `load_cluster` before validation.
    config_file: ClassVar[Path | None] = None
    environ: ClassVar[Mapping[str, str] | None] = None

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter=ENV_DELIMITER, extra="forbid", validate_default=True
    )

    cluster: ClusterSection = Field(default_factory=ClusterSection)  # type: ignore[arg-type]
    mediator: MediatorSection = Field(default_factory=MediatorSection)  # type: ignore[arg-type]
    streamers: StreamersSection = Field(default_factory=StreamersSection)  # type: ignore[arg-type]
    streamer: list[StreamerOverride] = Field(default_factory=list)
    tls: TlsSection | None = None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        if cls.environ is not None and isinstance(env_settings, EnvSettingsSource):
            # Same parsing as for os.environ, from the mapping the caller gave (tests, child processes).
            env_settings.env_vars = {
                (k if env_settings.case_sensitive else k.lower()): v for k, v in cls.environ.items()
            }
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if cls.config_file is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=cls.config_file))
        return tuple(sources)

    @model_validator(mode="before")
    @classmethod
    def _merge_node_sets(cls, data: Any) -> Any:
        if not isinstance(data, dict) or _NODE_SETS not in data:
            return data
        data = dict(data)
        sets: dict[str, dict[str, Any]] = data.pop(_NODE_SETS)
        tables = [dict(t) if isinstance(t, Mapping) else t for t in data.get("streamer") or []]
        for name, values in sets.items():
            for table in tables:
                if isinstance(table, dict) and table.get("name") == name:
                    table.update(values)
                    break
            else:
                tables.append({"name": name, **values})
        data["streamer"] = tables
        return data

    @model_validator(mode="after")
    def _consistent(self) -> ClusterConfig:
        problems = cluster_problems(self)
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def streamer_names(self) -> list[str]:
        return [f"s{i}" for i in range(1, self.streamers.count + 1)]

    def node_names(self) -> list[str]:
        return ["mediator", *self.streamer_names()]


# ---------------------------------------------------------------------------------------------
# Nodes: what each process gets (pure)


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


def _dial_host(host: str) -> str:
    return "127.0.0.1" if host in _WILDCARDS else host


def mediator_address(config: ClusterConfig) -> str:
    """The host:port streamers and clients dial to reach the mediator."""
    mediator = config.mediator
    if mediator.advertise:
        return mediator.advertise
    host = _dial_host(mediator.host)
    return f"[{host}]:{mediator.port}" if ":" in host else f"{host}:{mediator.port}"


def _raw(model: BaseModel, exclude: set[str] = set()) -> dict[str, Any]:
    """Field values as Python values (seconds, bytes), not serialised text."""
    return {name: getattr(model, name) for name in type(model).model_fields if name not in exclude}


def streamer_values(config: ClusterConfig, index: int) -> dict[str, Any]:
    """The effective settings of streamer `s{index}` (1-based): defaults, counted ports, overrides."""
    values = _raw(config.streamers, exclude={"count"})
    values["port"] = config.streamers.port + index - 1
    values["pport"] = config.streamers.pport + index - 1
    values["advertise"] = None
    for override in config.streamer:
        if override.name == f"s{index}":
            values.update({k: v for k, v in _raw(override, exclude={"name"}).items() if v is not None})
    return values


def _flag(name: str, value: Any, kind: str = "") -> str:
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif kind == "size":
        text = format_size(int(value))
    elif kind == "duration":
        text = format_duration(float(value)) if value else "0s"
    else:
        text = str(value)
    return f"-{flag_name(name)}={text}"


_SIZES = {"size", "max_line", "batch_bytes"}
_DURATIONS = {"grace", "health_interval", "ping_timeout", "lease", "handoff_wait", "forward_timeout",
              "fsync_interval", "idle_close", "restart_grace", "linger", "key_idle"}


def _flags(values: Mapping[str, Any]) -> list[str]:
    out = []
    for name, value in values.items():
        if value is None:
            continue
        kind = "size" if name in _SIZES else "duration" if name in _DURATIONS else ""
        out.append(_flag(name, value, kind))
    return out


def _absolute(path: Path, cwd: Path) -> Path:
    try:
        path = path.expanduser()
    except RuntimeError:  # "~name" with no user "name": taken literally, as a shell does
        pass
    return path if path.is_absolute() else cwd / path


def _tls_flags(config: ClusterConfig, cwd: Path) -> list[str]:
    tls = config.tls
    if tls is None:
        return []
    flags = [f"-{name}={_absolute(getattr(tls, name), cwd)}" for name in ("ca", "crt", "pk") if getattr(tls, name)]
    if tls.verify_clients is not None:
        flags.append(_flag("verify_clients", tls.verify_clients))
    return flags


def token_path(config: ClusterConfig, cwd: Path) -> Path:
    """The cluster token's file `logstream run` hands to every node (made there when missing)."""
    if config.cluster.token_file is not None:
        return _absolute(config.cluster.token_file, cwd)
    return _absolute(config.cluster.run_dir, cwd) / "cluster.token"


def plan_nodes(config: ClusterConfig, cwd: Path) -> list[Node]:
    """The mediator and every streamer, with the flags each is started with. Relative paths in the
    config are taken from `cwd` (the folder `logstream run` was started in). Every node gets the
    cluster token's file (`token_path`), so that only nodes of the cluster can steer each other."""
    tls = [*_tls_flags(config, cwd), f"-token-file={token_path(config, cwd)}"]
    m = config.mediator
    mediator_values = _raw(m, exclude={"advertise", "pport", "pprof"})
    # The lease ledger lets a mediator restarted by supervisord wait only for leases it really granted.
    ledger = _absolute(config.cluster.run_dir, cwd) / "mediator.lease"
    mediator_flags = ["-id=mediator", *_flags(mediator_values), f"-lease-file={ledger}"]
    if m.pprof:
        mediator_flags += [_flag("pprof", True), _flag("pport", m.pport)]
    nodes = [Node("mediator", "mediator", m.host, m.port, mediator_address(config), m.grace,
                  tuple(mediator_flags + tls), m.pport if m.pprof else None, m.phost)]
    target = mediator_address(config)
    for index, name in enumerate(config.streamer_names(), start=1):
        values = streamer_values(config, index)
        values["path"] = _absolute(values["path"], cwd)
        pprof, pport = values.pop("pprof"), values.pop("pport")
        advertise = values["advertise"] or (
            f"{_dial_host(values['host'])}:{values['port']}" if values["host"] in _WILDCARDS else None
        )
        flags = [f"-id={name}", f"-mediator={target}", *_flags(values)]
        if pprof:
            flags += [_flag("pprof", True), _flag("pport", pport)]
        address = values["advertise"] or f"{_dial_host(values['host'])}:{values['port']}"
        if advertise and not values["advertise"]:
            flags.append(f"-advertise={advertise}")
        nodes.append(Node(name, "streamer", values["host"], values["port"], address, values["grace"],
                          tuple(flags + tls), pport if pprof else None, values["phost"]))
    return nodes


def select_nodes(config: ClusterConfig, only: str | None) -> list[str]:
    """The node names `--only` picks ("mediator", "s1,s2"); all nodes when None."""
    names = config.node_names()
    if only is None:
        return names
    wanted = [part.strip() for part in only.split(",") if part.strip()]
    unknown = [name for name in wanted if name not in names]
    if unknown or not wanted:
        raise UsageError(f"--only {only!r}: unknown node {', '.join(unknown) or '(none given)'} "
                         f"(this cluster has {', '.join(names)})")
    return [name for name in names if name in wanted]


# ---------------------------------------------------------------------------------------------
# Checks: pure consistency, then the file system


def _same_host(a: str, b: str) -> bool:
    return a == b or a in _WILDCARDS or b in _WILDCARDS


def cluster_problems(config: ClusterConfig) -> list[str]:
    """Cross-key problems (each one line naming a key path); no I/O."""
    problems: list[str] = []
    names = config.streamer_names()
    seen: set[str] = set()
    for position, override in enumerate(config.streamer):
        if override.name in seen:
            problems.append(f"streamer[{position}].name: {override.name!r} has two [[streamer]] tables")
        seen.add(override.name)
        if override.name not in names:
            problems.append(f"streamer[{position}].name: no streamer {override.name!r} "
                            f"(streamers.count = {config.streamers.count}: {names[0]}..{names[-1]})")
    last = config.streamers.port + config.streamers.count - 1
    if last > 65535:
        problems.append(f"streamers.port: {config.streamers.count} streamers from port "
                        f"{config.streamers.port} run past 65535")
    m = config.mediator
    lease = m.lease if m.lease is not None else 1.5 * m.health_interval
    if lease <= m.health_interval:
        problems.append(f"mediator.lease: {format_duration(lease)} must be longer than mediator.health_interval "
                        f"({format_duration(m.health_interval)}), or every lease lapses between two pings")
    if problems or last > 65535:
        return problems
    # Every listening socket: (machine, port, who, key path). A node's machine is the host it
    # advertises, else the one it binds; a wildcard bind on an unknown machine may be any of them.
    def machine(bind: str, advertise: str | None) -> str:
        return advertise.rpartition(":")[0] if advertise else bind

    sockets: list[tuple[str, int, str, str]] = [(machine(m.host, m.advertise), m.port, "the mediator", "mediator.port")]
    if m.pprof:
        sockets.append((machine(m.host, m.advertise), m.pport, "the mediator's debug server", "mediator.pport"))
    for index, name in enumerate(names, start=1):
        values = streamer_values(config, index)
        where = machine(values["host"], values["advertise"])
        key = f"streamer.{name}.port" if any(o.name == name and o.port for o in config.streamer) else "streamers.port"
        sockets.append((where, values["port"], f"streamer {name}", key))
        if values["pprof"]:
            sockets.append((where, values["pport"], f"streamer {name}'s debug server", "streamers.pport"))
    for i, (host, port, who, key) in enumerate(sockets):
        for other_host, other_port, other, _ in sockets[:i]:
            if port == other_port and _same_host(host, other_host):
                problems.append(f"{key}: port {port} of {who} is also the port of {other}")
                break
    return problems


def _file_problem(key: str, path: Path, cwd: Path) -> str | None:
    """A folder we will create: neither it nor a parent may be a file."""
    full = _absolute(path, cwd)
    for candidate in (full, *full.parents):
        if candidate.exists():
            if not candidate.is_dir():
                what = "is a file" if candidate == full else f"has a file as parent ({candidate})"
                return f"{key}: {path} {what}, not a folder"
            return None
    return None


def _tls_content_problems(tls: TlsSection, cwd: Path) -> list[str]:
    """Certificates and keys that are not PEM, or a key that does not match its certificate: the
    nodes would refuse to start, so say it before anything starts."""
    from logstream.node.tls import CredentialsError, read_certificates, read_key_pair  # imports grpc: only when TLS is configured

    try:
        if tls.crt is not None and tls.pk is not None:
            read_key_pair(_absolute(tls.crt, cwd), _absolute(tls.pk, cwd))
        if tls.ca is not None:
            read_certificates("-ca", _absolute(tls.ca, cwd))
    except CredentialsError as exc:
        message = str(exc)
        for name in ("ca", "crt", "pk"):
            message = message.replace(f"-{name} ", f"tls.{name}: ", 1) if message.startswith(f"-{name} ") else \
                message.replace(f"-{name} ", f"tls.{name} ")
        return [message]
    return []


def check_files(config: ClusterConfig, cwd: Path, nodes: Sequence[str] | None = None) -> list[str]:
    """Problems only the file system shows: missing certificates, folders that are files."""
    problems: list[str] = []
    if config.tls is not None:
        for name in ("ca", "crt", "pk"):
            path: Path | None = getattr(config.tls, name)
            if path is None:
                continue
            full = _absolute(path, cwd)
            if not full.exists():
                problems.append(f"tls.{name}: no such file: {path} (make development certificates with "
                                f"`logstream certs --out {path.parent}`)")
            elif not full.is_file():
                problems.append(f"tls.{name}: {path} is not a file")
        if not problems:
            problems += _tls_content_problems(config.tls, cwd)
    run_problem = _file_problem("cluster.run_dir", config.cluster.run_dir, cwd)
    if run_problem:
        problems.append(run_problem)
    wanted = set(config.node_names() if nodes is None else nodes)
    reported: set[Path] = set()
    for index, name in enumerate(config.streamer_names(), start=1):
        if name not in wanted:
            continue
        path = streamer_values(config, index)["path"]
        overridden = any(o.name == name and o.path is not None for o in config.streamer)
        problem = _file_problem(f"streamer.{name}.path" if overridden else "streamers.path", path, cwd)
        if problem and path not in reported:
            problems.append(problem)
            reported.add(path)
    return problems


# ---------------------------------------------------------------------------------------------
# Loading: one precedence, errors naming the source and the key path


def parse_sets(items: Sequence[str]) -> tuple[dict[str, Any], dict[tuple[str, ...], str]]:
    """`["streamers.count=5", "streamer.s2.size=10MB"]` -> nested init values and where each came from."""
    values: dict[str, Any] = {}
    origins: dict[tuple[str, ...], str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        parts = tuple(part.strip() for part in key.strip().split("."))
        if not sep or len(parts) < 2 or not all(parts):
            raise ConfigError([f"--set {item!r}: expected SECTION.KEY=VALUE (e.g. streamers.count=5)"])
        if parts[0] == "streamer":
            if len(parts) != 3:
                raise ConfigError([f"--set {item!r}: per-node keys are streamer.NAME.KEY=VALUE (e.g. streamer.s2.size=10MB)"])
            values.setdefault(_NODE_SETS, {}).setdefault(parts[1], {})[parts[2]] = value
        else:
            target = values
            for part in parts[:-1]:
                existing = target.setdefault(part, {})
                if not isinstance(existing, dict):
                    raise ConfigError([f"--set {item!r}: {'.'.join(parts[:-1])} is not a section"])
                target = existing
            target[parts[-1]] = value
        origins[parts] = f"--set {key.strip()}={value}"
    return values, origins


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> None:
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value


def _toml_origins(data: Mapping[str, Any], file: Path, prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], str]:
    origins: dict[tuple[str, ...], str] = {}
    for key, value in data.items():
        path = (*prefix, str(key))
        origins[path] = str(file)
        if isinstance(value, Mapping):
            origins.update(_toml_origins(value, file, path))
        elif isinstance(value, list):
            for position, item in enumerate(value):
                if isinstance(item, Mapping):
                    origins.update(_toml_origins(item, file, (*path, str(position))))
    return origins


def _env_origins(environ: Mapping[str, str]) -> dict[tuple[str, ...], str]:
    origins: dict[tuple[str, ...], str] = {}
    fields = set(ClusterConfig.model_fields)
    for name in environ:
        upper = name.upper()
        if not upper.startswith(ENV_PREFIX):
            continue
        parts = tuple(part.lower() for part in upper[len(ENV_PREFIX):].split(ENV_DELIMITER))
        if parts[0] in fields:
            origins[parts] = name
    return origins


def _show_path(parts: Sequence[str]) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if part.isdigit() else (f".{part}" if out else part)
    return out


def _origin_for(parts: tuple[str, ...], origin_maps: Sequence[Mapping[tuple[str, ...], str]]) -> str | None:
    """The highest-precedence source that holds `parts` (or a prefix of it)."""
    for origins in origin_maps:
        for length in range(len(parts), 0, -1):
            if parts[:length] in origins:
                return origins[parts[:length]]
    return None


def _describe(exc: ValidationError, origin_maps: Sequence[Mapping[tuple[str, ...], str]],
              file: Path | None) -> list[str]:
    problems: list[str] = []
    for error in exc.errors():
        message = str(error["msg"]).removeprefix("Value error, ")
        parts = tuple(str(part) for part in error["loc"])
        if error["type"] == "extra_forbidden":
            message = "unknown key"
            parent: type[BaseModel] | None = _section_model(parts[:-1])
            if parent is not None:
                message += f" (known: {', '.join(parent.model_fields)})"
        elif error["type"] in ("int_parsing", "bool_parsing", "float_parsing", "literal_error", "string_pattern_mismatch",
                               "greater_than_equal", "less_than_equal", "int_from_float"):
            message += f" (got {error.get('input')!r})"
        if not parts:  # a cross-key check: each line already names its key
            where = f"{file}: " if file else ""
            problems.extend(f"{where}{line}" for line in message.split("\n"))
            continue
        origin = _origin_for(parts, origin_maps) or (str(file) if file else None)
        shown = _show_path(parts)
        for line in message.split("\n"):
            if line.startswith(("tls.", "streamer", "mediator.", "cluster.")):  # section checks name their keys
                problems.append(f"{origin}: {line}" if origin else line)
            else:
                problems.append(f"{origin}: {shown}: {line}" if origin else f"{shown}: {line}")
    return problems


def _section_model(parts: Sequence[str]) -> type[BaseModel] | None:
    model: type[BaseModel] = ClusterConfig
    for part in parts:
        if part.isdigit():
            continue
        field = model.model_fields.get(part)
        if field is None:
            return None
        annotation = field.annotation
        candidates = [annotation, *getattr(annotation, "__args__", ())]
        nested = [c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)]
        if not nested:
            return None
        model = nested[0]
    return model


def load_cluster(
    file: str | Path | None,
    sets: Sequence[str] = (),
    flags: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> ClusterConfig:
    """Read and validate a cluster: defaults < `file` < environment < `sets` < `flags`.

    `flags` are short options already turned into key paths, e.g. {"streamers.count": 5}.
    Raises ConfigError listing every problem, each naming its source and key path.
    """
    path = Path(file) if file is not None else None
    toml_data: dict[str, Any] = {}
    if path is not None:
        try:
            toml_data = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError([f"{path}: no such file (write a starter one with `logstream init {path}`)"]) from None
        except IsADirectoryError:
            raise ConfigError([f"{path}: is a folder, not a cluster file"]) from None
        except OSError as exc:
            raise ConfigError([f"{path}: cannot read: {exc.strerror or exc}"]) from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError([f"{path}: not valid TOML: {exc}"]) from None
    init, set_origins = parse_sets(sets)
    flag_origins: dict[tuple[str, ...], str] = {}
    for dotted, value in (flags or {}).items():
        parts = tuple(dotted.split("."))
        nested: dict[str, Any] = {}
        cursor = nested
        for part in parts[:-1]:
            cursor = cursor.setdefault(part, {})
        cursor[parts[-1]] = value
        _merge(init, nested)
        flag_origins[parts] = f"--{parts[-1].replace('_', '-') if parts[0] != 'streamers' or parts[-1] != 'count' else 'streamers'} {value}"
    env = dict(os.environ if environ is None else environ)
    bound = type("ClusterConfig", (ClusterConfig,), {"config_file": path, "environ": env})
    try:
        config = bound(**init)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, [flag_origins, set_origins, _env_origins(env), _toml_origins(toml_data, path)]
                                    if path else [flag_origins, set_origins, _env_origins(env)], path)) from None
    except SettingsError as exc:  # e.g. LOGSTREAM_MEDIATOR='...' that is not valid JSON
        detail = f": {exc.__cause__}" if exc.__cause__ else ""
        raise ConfigError([f"{exc}{detail}"]) from None
    # Return the plain class, not the per-call subclass: equality and pickling stay simple.
    return ClusterConfig.model_validate(config.model_dump())


_SECTION_MODELS: dict[str, type[BaseModel]] = {
    "cluster": ClusterSection,
    "mediator": MediatorSection,
    "streamers": StreamersSection,
    "streamer": StreamerOverride,
    "tls": TlsSection,
}


def _ordered(values: Mapping[str, Any]) -> dict[str, Any]:
    """A section's own keys first, the keys every node shares (grace, log_level, ...) last."""
    common = set(_NodeCommon.model_fields)
    return {**{k: v for k, v in values.items() if k not in common}, **{k: v for k, v in values.items() if k in common}}


def toml_table(header: str, values: Mapping[str, Any], comments: Mapping[str, str] | None = None) -> str:
    """`[header]` and one `key = value` line per item (tomli-w writes the values), each after a
    `# comment` line when `comments` has one for its key."""
    lines = [header]
    for key, value in values.items():
        if comments and comments.get(key):
            lines.append(f"# {comments[key]}")
        lines.append(tomli_w.dumps({key: value}).rstrip("\n"))
    return "\n".join(lines) + "\n"


def to_toml(config: ClusterConfig, comments: bool = False) -> str:
    """The config as a TOML document that `load_cluster` reads back to an equal config; with
    `comments`, each key is preceded by its description."""
    data = config.model_dump(mode="json", exclude_none=True)
    chunks: list[str] = []
    for section in ("cluster", "mediator", "streamers"):
        described = describe_fields(_SECTION_MODELS[section]) if comments else None
        chunks.append(toml_table(f"[{section}]", _ordered(data[section]), described))
    for table in data.get("streamer", []):
        chunks.append(toml_table("[[streamer]]", table))
    if "tls" in data:
        chunks.append(toml_table("[tls]", data["tls"], describe_fields(TlsSection) if comments else None))
    return "\n".join(chunks)


def describe_fields(model: type[BaseModel]) -> dict[str, str]:
    """Each field's description: comments in `logstream init`'s starter file."""
    return {name: field.description or "" for name, field in model.model_fields.items()}


__all__ = [
    "ClusterConfig",
    "ConfigError",
    "MediatorSection",
    "Node",
    "StreamerOverride",
    "StreamersSection",
    "TlsSection",
    "check_files",
    "load_cluster",
    "mediator_address",
    "plan_nodes",
    "select_nodes",
    "streamer_values",
    "to_toml",
]
