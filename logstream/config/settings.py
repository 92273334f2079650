"""The per-role settings (StreamerSettings, MediatorSettings) and their one precedence.

Precedence, declared once in `role_sources`: flags > environment (`LOGSTREAM_STREAMER_*`,
`LOGSTREAM_MEDIATOR_*`) > the TOML file's table (`[streamer]` / `[mediator]` of `-config FILE`) > defaults.
"""

from __future__ import annotations

import difflib
import os
import socket
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, TypeVar

from pydantic import AfterValidator, Field, model_validator
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from logstream.config import timings
from logstream.config.units import format_duration
from logstream.node.address import channel_target
from logstream.config.types import (
    Address,
    AddressList,
    Duration,
    FiniteSize,
    ListenAddress,
    Size,
    ZeroOrDuration,
    toml_value_problem,
)


class TomlTableSource(TomlConfigSettingsSource):
    """One table (e.g. `[streamer]`) of a TOML file; nothing when the table is absent."""

    def __init__(self, settings_cls: type[BaseSettings], toml_file: Path, table: str) -> None:
        self.table = table
        self.model = settings_cls  # (pydantic-settings sets its own attribute only after reading)
        super().__init__(settings_cls, toml_file=toml_file)

    def _read_file(self, file_path: Path) -> dict[str, Any]:  # type: ignore[override]
        data = super()._read_file(file_path)
        if self.table not in data:  # -config names the file to read settings from: none there is a mistake
            tables = ", ".join(f"[{name}]" for name, value in data.items() if isinstance(value, dict))
            raise ValueError(f"{file_path}: no [{self.table}] table (the {self.table}'s settings go there; "
                             f"the file has {tables or 'no table'})")
        section = data[self.table]
        if not isinstance(section, dict):
            raise ValueError(f"{file_path}: [{self.table}] must be a table")
        for key, value in section.items():
            field = self.model.model_fields.get(str(key))
            why = None if field is None else toml_value_problem(field, value)
            if why:
                raise ValueError(f"{file_path}: {self.table}.{key}: {why}")
        return section


class SettingsConflict(ValueError):
    """Settings each valid alone but not together. `explain(name)` says why, spelling each key with
    `name` (a flag "-lease" for a node, a key path "mediator.lease" in a cluster file); `keys[0]` is
    the one to change."""

    def __init__(self, keys: tuple[str, ...], explain: Callable[[Callable[[str], str]], str]) -> None:
        self.keys = keys
        self.explain = explain
        super().__init__(explain(flag_spelling))


def flag_spelling(field: str) -> str:
    """How a node's flag spells a settings field: `health_interval` -> `-health-interval`."""
    return f"-{field.replace('_', '-')}"


def tls_set_problem(ca: object, crt: object, pk: object, verify_clients: bool | None,
                    name: Callable[[str], str]) -> str | None:
    """What is wrong with a set of TLS settings (None: nothing); `name` spells a key ("-crt", "tls.crt")."""
    if (crt is None) != (pk is None):
        given, missing = (name("crt"), name("pk")) if pk is None else (name("pk"), name("crt"))
        return f"{given} needs {missing} too (TLS needs both certificate and key)"
    if ca is not None and crt is None:
        return f"{name('ca')} needs {name('crt')} and {name('pk')} (mutual TLS: this node presents a certificate too)"
    if verify_clients and ca is None:
        return f"{name('verify_clients')} needs {name('ca')} (the CA that signs client certificates)"
    return None


# A cluster's name: also a path segment of its etcd keys.
CLUSTER_NAME_RE = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"


class RoleSettings(BaseSettings):
    """What the two roles share: TLS files, ports, the debug server, logging."""

    # The TOML table this role reads from `-config FILE`; set by each role.
    toml_table: ClassVar[str] = ""

    model_config = SettingsConfigDict(extra="forbid", validate_default=True)

    ca: Path | None = Field(None, description="CA certificate: verify peers (mutual TLS with -crt/-pk)")
    crt: Path | None = Field(None, description="host certificate (TLS; needs -pk)")
    pk: Path | None = Field(None, description="host private key (TLS; needs -crt)")
    verify_clients: bool | None = Field(
        None, description="require client certificates signed by -ca (default: yes when -ca is given)"
    )
    token_file: Path | None = Field(
        None, description="file holding the cluster token: control calls between nodes must carry it "
        "(`logstream run` makes one per cluster in its run directory)"
    )
    host: str = Field("0.0.0.0", description="address to bind the gRPC server to")
    pport: int = Field(1111, ge=0, le=65535, description="port of the debug/profiling server")
    pprof: bool = Field(False, description="start the debug server (/metrics, /healthz, /readyz, /debug/stacks, /debug/profile)")
    metrics: ListenAddress | None = Field(
        None, description="host:port serving /metrics, /healthz and /readyz only, no profiling (port 0: any free port)"
    )
    phost: str = Field("127.0.0.1", description="address to bind the debug server to")
    etcd: AddressList | None = Field(
        None, description="etcd mode: etcd's client endpoints, host:port[,host:port...] (IP addresses when "
        "several). A streamer then owns keys through its own etcd lease and writes what any node of its "
        "cluster forwards for a key it owns (instead of registering with -mediator); a mediator is a "
        "stateless router following members and key owners in etcd (any number may run)"
    )
    cluster: str = Field("local", pattern=CLUSTER_NAME_RE,
                         description="etcd mode: the cluster's name; its records live under /logstream/NAME/")
    grace: Duration = Field(5.0, description="on SIGTERM, time to let in-flight requests finish")
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="least severe event written to stderr"
    )
    log_format: Literal["text", "json"] = Field(
        "text", description="stderr lines: text, or json (one object a line: time, level, role, node, message, fields)"
    )

    @model_validator(mode="after")
    def _tls_files_complete(self) -> RoleSettings:
        ca, crt, pk, verify = self.ca, self.crt, self.pk, self.verify_clients
        if tls_set_problem(ca, crt, pk, verify, flag_spelling):
            given = tuple(key for key in ("crt", "pk", "ca", "verify_clients") if getattr(self, key) is not None)
            raise SettingsConflict(given,
                                   lambda name: tls_set_problem(ca, crt, pk, verify, name) or "")
        for name in ("ca", "crt", "pk", "token_file"):
            file = getattr(self, name)
            if file is not None and not Path(file).is_file():
                raise ValueError(f"{flag_spelling(name)}: no such file: {file}")
        return self

    @property
    def tls_mode(self) -> Literal["none", "server", "mutual"]:
        """none; server (clients verify this node); mutual (this node verifies clients too)."""
        if self.crt is None:
            return "none"
        verify = self.ca is not None if self.verify_clients is None else self.verify_clients
        return "mutual" if verify else "server"


def _etcd_ttl(seconds: float) -> float:
    if seconds != int(seconds) or not timings.ETCD_TTL_MIN_S <= seconds <= timings.ETCD_TTL_MAX_S:
        raise ValueError(f"{format_duration(seconds)} must be whole seconds from {timings.ETCD_TTL_MIN_S}s "
                         f"to {timings.ETCD_TTL_MAX_S}s")
    return seconds


# etcd counts leases in whole seconds.
EtcdTtl = Annotated[Duration, AfterValidator(_etcd_ttl)]



def _default_node_id() -> str:
    return socket.gethostname()


class StreamerSettings(RoleSettings):
    """`logstream streamer`: the flags of the Go logStreamer plus logstream's own."""

    toml_table: ClassVar[str] = "streamer"
    model_config = SettingsConfigDict(env_prefix="LOGSTREAM_STREAMER_", extra="forbid", validate_default=True)

    console: bool = Field(False, description="also print each line to stdout")
    mediator: Address | None = Field(None, description="mediator address host:port (register with it when set)")
    path: Path = Field(Path("../logs"), description="root folder for log files")
    port: int = Field(8080, ge=0, le=65535, description="gRPC port (0: any free port)")
    size: Size = Field(1_000_000, description="max size of one file, e.g. 1MB, 512KiB; -1B for unlimited")

    id: str = Field("", description="this streamer's id (default: host:port it advertises)")
    advertise: Address | None = Field(
        None, description="host:port the mediator reaches this streamer at (default: bind host, or this host's name, and -port)"
    )
    max_line: FiniteSize = Field(1_048_576, description="longest accepted line (bytes, e.g. 64KiB)")
    fsync: Literal["never", "always", "interval"] = Field(
        "never", description="durability: never (OS page cache), always (fsync before every ack), interval"
    )
    fsync_interval: Duration = Field(1.0, description="with -fsync interval: how often to fsync written files")
    max_open_files: int = Field(256, ge=1, le=65536, description="most descriptors held for log files and their folders together (least recently used closed first; must fit under ulimit -n)")
    idle_close: Duration = Field(60.0, description="close (and unlock) a file not written for this long")
    keep: int = Field(0, ge=0, description="retention: rotated files kept per log name (0: keep all)")
    loop: Literal["uvloop", "asyncio"] = Field(
        "uvloop", description="event loop: uvloop (faster; falls back to asyncio when not installed) or asyncio"
    )
    etcd_ttl: EtcdTtl = Field(
        5.0, description="etcd mode: TTL of this streamer's etcd lease, whole seconds; it writes only while "
        "it can prove the lease lives (a streamer cut off from etcd stops writing within one TTL)"
    )

    @model_validator(mode="after")
    def _etcd_mode(self) -> StreamerSettings:
        if self.etcd is not None and self.mediator is not None:
            raise SettingsConflict(("etcd", "mediator"), lambda name: (
                f"{name('etcd')} and {name('mediator')} exclude each other: in etcd mode a streamer "
                "registers in etcd, not with a mediator"))
        if self.etcd is not None and len(self.etcd) > 1:
            try:
                channel_target(self.etcd)
            except ValueError as exc:
                raise ValueError(f"{flag_spelling('etcd')}: {exc}") from None
        return self


class MediatorSettings(RoleSettings):
    """`logstream mediator`: the flags of the Go logMediator plus logstream's own."""

    toml_table: ClassVar[str] = "mediator"
    model_config = SettingsConfigDict(env_prefix="LOGSTREAM_MEDIATOR_", extra="forbid", validate_default=True)

    port: int = Field(8000, ge=0, le=65535, description="gRPC port (0: any free port)")
    id: str = Field("", description="this mediator's name in logs (default: host:port)")
    health_interval: Duration = Field(5.0, description="how often each streamer is pinged")
    ping_timeout: Duration | None = Field(
        None, description="a ping slower than this fails (default: half the health interval, at most "
        f"{format_duration(timings.PING_TIMEOUT_CAP_S)})"
    )
    lease: Duration | None = Field(
        None, description=f"how long a ping lets a streamer write (default: {timings.LEASE_INTERVALS} x health interval)"
    )
    handoff_wait: Duration | None = Field(
        None,
        description="how long a request for a key without a usable owner (hand-off, failed owner) waits "
        "before UNAVAILABLE (default: long enough to ride out a failed streamer: "
        f"health interval + ping timeout + {timings.CLOCK_RATE_MARGIN} x lease)",
    )
    restart_grace: ZeroOrDuration | None = Field(
        None,
        description="after start-up, place no key until leases a previous mediator granted have surely "
        f"expired (default: what -lease-file records, else ping timeout + {timings.CLOCK_RATE_MARGIN} x lease)",
    )
    lease_file: Path | None = Field(
        None,
        description="file recording until when granted leases may live, so that a restarted mediator "
        "waits only for those (logstream run sets it in the run directory)",
    )
    forward_timeout: Duration = Field(5.0, description="deadline of one forward to a streamer (then it counts as failed)")
    batch_lines: int = Field(20_000, ge=1, description="most lines coalesced into one forward")
    batch_bytes: FiniteSize = Field(4_000_000, description="most bytes coalesced into one forward")
    max_line: FiniteSize = Field(1_048_576, description="longest accepted line (bytes)")
    linger: ZeroOrDuration = Field(
        0.005, description="under load, how long a forward waits for more requests to join it (0: never)"
    )
    key_idle: Duration = Field(
        120.0, description="forget a key not written for this long once its streamer has closed its file "
        "(it is placed again like a new key on its next use)"
    )
    max_keys: int = Field(
        1_000_000, ge=1, description="most file keys the mediator tracks; a new key beyond them is refused with "
        "RESOURCE_EXHAUSTED (after idle keys were forgotten)"
    )
    reuse_port: bool = Field(
        False, description="etcd mode: bind the port with SO_REUSEPORT, so that several mediator processes of "
        "this host share it and the kernel spreads connections over them (-etcd required: only a stateless "
        "router may share its port)"
    )

    @model_validator(mode="after")
    def _derived_timings(self) -> MediatorSettings:
        if self.ping_timeout is None:
            self.ping_timeout = timings.default_ping_timeout_s(self.health_interval)
        interval, ping_timeout = self.health_interval, self.ping_timeout
        if not 0 < ping_timeout <= interval:
            raise SettingsConflict(("ping_timeout", "health_interval"), lambda name: (
                f"{name('ping_timeout')}: {format_duration(ping_timeout)} must be at most "
                f"{name('health_interval')} ({format_duration(interval)})"))
        if self.lease is None:
            self.lease = timings.default_lease_s(self.health_interval)
        lease = self.lease
        if not timings.lease_outlasts_interval(lease, interval):
            raise SettingsConflict(("lease", "health_interval"), lambda name: (
                f"{name('lease')}: {format_duration(lease)} must be longer than {name('health_interval')} "
                f"({format_duration(interval)}), or every lease lapses between two pings"))
        if self.handoff_wait is None:
            self.handoff_wait = timings.default_handoff_wait_s(self.health_interval, self.ping_timeout, self.lease)
        if self.reuse_port and self.etcd is None:
            raise SettingsConflict(("reuse_port", "etcd"), lambda name: (
                f"{name('reuse_port')} needs {name('etcd')}: a mediator with its own leases must never share "
                "its port with another"))
        if self.etcd is not None and len(self.etcd) > 1:
            try:
                channel_target(self.etcd)
            except ValueError as exc:
                raise ValueError(f"{flag_spelling('etcd')}: {exc}") from None
        return self


R = TypeVar("R", bound=RoleSettings)


def merge_values(sources: Sequence[PydanticBaseSettingsSource]) -> dict[str, Any]:
    """The values of `sources`, the first that sets a key winning; tables merge key by key."""
    merged: dict[str, Any] = {}
    for source in reversed(sources):
        _deep_update(merged, source())
    return merged


def _deep_update(base: dict[str, Any], extra: Mapping[str, Any]) -> None:
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _deep_update(base[key], value)
        else:
            base[key] = dict(value) if isinstance(value, Mapping) else value


def environment_source(model: type[BaseSettings], environ: Mapping[str, str] | None) -> EnvSettingsSource:
    """`model`'s variables, from `environ` (os.environ when None): tests and children pass their own."""
    source = EnvSettingsSource(model)
    if environ is not None:
        source.env_vars = {(k if source.case_sensitive else k.lower()): v for k, v in environ.items()}
    return source


def role_sources(model: type[RoleSettings], flags: Mapping[str, Any], config_file: Path | None,
                 environ: Mapping[str, str] | None = None) -> tuple[PydanticBaseSettingsSource, ...]:
    """The one precedence of a node's settings, first wins: flags > environment > the file's table."""
    sources: list[PydanticBaseSettingsSource] = [InitSettingsSource(model, dict(flags)),
                                                 environment_source(model, environ)]
    if config_file is not None:
        sources.append(TomlTableSource(model, config_file, model.toml_table))
    return tuple(sources)


class UnknownVariable(ValueError):
    """A `LOGSTREAM_STREAMER_*` / `LOGSTREAM_MEDIATOR_*` variable that names no setting (a typo
    would otherwise be ignored in silence)."""


def unknown_variables(model: type[RoleSettings], environ: Mapping[str, str]) -> list[str]:
    """The variables in `environ` with `model`'s prefix that name none of its settings. Names with
    the cluster file's delimiter after the role (`LOGSTREAM_MEDIATOR__PORT`) belong to `logstream run`."""
    prefix = str(model.model_config.get("env_prefix", "")).upper()
    unknown = []
    for name in environ:
        upper = name.upper()
        if prefix and upper.startswith(prefix) and not upper[len(prefix):].startswith("_"):
            if upper[len(prefix):].lower() not in model.model_fields:
                unknown.append(name)
    return sorted(unknown)


def _unknown_variable_text(model: type[RoleSettings], name: str) -> str:
    prefix = str(model.model_config.get("env_prefix", "")).upper()
    fields = [field.upper() for field in model.model_fields]
    close = difflib.get_close_matches(name.upper()[len(prefix):], fields, n=1)
    hint = (f"did you mean {prefix}{close[0]}?" if close
            else f"the settings are {prefix}<SETTING>, with SETTING one of {', '.join(fields)}")
    return f"{name}: unknown variable ({hint})"


def load_role(model: type[R], flags: Mapping[str, Any], config_file: Path | None = None,
              environ: Mapping[str, str] | None = None) -> R:
    """`model` from its sources (raises pydantic's ValidationError, pydantic-settings' SettingsError,
    UnknownVariable for a variable with the role's prefix that names no setting)."""
    unknown = unknown_variables(model, os.environ if environ is None else environ)
    if unknown:
        raise UnknownVariable("\n".join(_unknown_variable_text(model, name) for name in unknown))
    return model.model_validate(merge_values(role_sources(model, flags, config_file, environ)))
