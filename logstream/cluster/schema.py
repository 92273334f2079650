"""The cluster file's shape: `ClusterConfig` and its sections, the node sections derived from the roles' settings.

Every node setting is declared once, on the role's settings model (`config/settings.py`); the
`[mediator]`, `[streamers]` and `[[streamer]]` sections copy those fields (type, checks, default,
description) and declare only what a cluster adds or changes: bind addresses that default to this
machine, ports that must be known in advance (and count up from the first streamer's), `advertise`,
`count`. The keys `plan_nodes` sets itself (id, mediator, TLS files, token file, lease file, and the
etcd keys, which come from `[etcd]`) are left out. `[etcd]` copies the streamer's etcd fields it sets.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, SettingsConfigDict

from logstream.errors import UserError
from logstream.config.settings import MediatorSettings, RoleSettings, SettingsConflict, StreamerSettings, tls_set_problem
from logstream.config.types import Address, AddressList, field_type
from logstream.node.address import channel_target

ENV_PREFIX = "LOGSTREAM_"
ENV_DELIMITER = "__"
NAME_RE = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"

# What `plan_nodes` gives every node itself: its id, the cluster's TLS files and token.
PLANNED = frozenset({"id", "ca", "crt", "pk", "verify_clients", "token_file"})
# etcd mode's mediator keys: from `[etcd]` (etcd, cluster) and `[mediator] workers` (reuse_port).
MEDIATOR_ETCD = frozenset({"etcd", "cluster", "reuse_port"})
MEDIATOR_PLANNED = PLANNED | {"lease_file"} | MEDIATOR_ETCD
# etcd mode's streamer keys: from `[etcd]` (cluster, ttl) and the members it lists or starts (etcd).
STREAMER_ETCD = frozenset({"etcd", "cluster", "etcd_ttl"})
STREAMER_PLANNED = PLANNED | {"mediator"} | STREAMER_ETCD
# The keys every node has (RoleSettings): shown last in a section.
COMMON = frozenset(RoleSettings.model_fields) - PLANNED


class ConfigError(UserError):
    """An invalid cluster configuration: one line per problem, each naming its key path."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


def role_fields(model: type[RoleSettings], drop: frozenset[str], optional: bool = False) -> dict[str, Any]:
    """`model`'s fields but `drop`, for `create_model`; with `optional`, each defaults to None
    (unset: inherit) and is checked only when given."""
    fields: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        if name in drop:
            continue
        if optional:
            fields[name] = (field_type(info) | None, Field(None, description=info.description))
        else:
            fields[name] = (field_type(info), FieldInfo.merge_field_infos(info))
    return fields


def node_section(name: str, model: type[RoleSettings], drop: frozenset[str], optional: bool = False) -> type[Section]:
    return create_model(name, __base__=Section, **role_fields(model, drop, optional))


class ClusterSection(Section):
    name: str = Field("local", pattern=NAME_RE, description="the cluster's name, shown in logs and status")
    run_dir: Path = Field(
        Path(".logstream"), description="supervisord's configuration, socket, pid file and each node's output"
    )
    token_file: Path | None = Field(
        None, description="the cluster token every node must present (default: run_dir/cluster.token, made "
        "at the first run); a cluster spread over machines needs the same file on each"
    )


# Base classes built from the role models are dynamic, hence Any to mypy: the keys declared in the
# class bodies below are what the cluster changes (and what other modules read with types).
class MediatorSection(node_section("MediatorKeys", MediatorSettings, MEDIATOR_PLANNED)):  # type: ignore[misc]
    """`[mediator]`: every `logstream mediator` setting, for all mediators; it binds to this machine by default."""

    count: int = Field(1, ge=1, le=100, description="how many mediators (one: named mediator; more, named m1, m2, "
                       "...: only with [etcd], as they then hold no state of their own); ports count up")
    workers: int = Field(1, ge=1, le=64, description="processes per mediator sharing its port (SO_REUSEPORT), "
                         "so that the unary path grows with the host's cores: only with [etcd]")
    host: str = Field("127.0.0.1", description="address the mediator binds to")
    # A cluster's ports must be known before its nodes start: 0 (any free port) is refused.
    port: int = Field(8000, ge=1, le=65535, description="the mediator's gRPC port (the first's, with count > 1)")
    pport: int = Field(1111, ge=1, le=65535, description="the mediator's debug port (with pprof); counts up too")
    advertise: Address | None = Field(
        None, description="host:port streamers dial (default: host:port; needed when host is 0.0.0.0 on another machine)"
    )


class MediatorOverride(node_section("MediatorOverrideKeys", MediatorSettings, MEDIATOR_PLANNED, optional=True)):  # type: ignore[misc]
    """One `[[mediators]]` table: settings for the mediator `name` (m1 .. mN) only; unset keys inherit.
    (TOML cannot hold both a `[mediator]` table and `[[mediator]]` tables, hence the plural.)"""

    name: str = Field(description="which mediator: m1 .. mN")
    port: int | None = Field(None, ge=1, le=65535)
    pport: int | None = Field(None, ge=1, le=65535)
    advertise: Address | None = None


_STREAMER_FIELDS = StreamerSettings.model_fields
# Module-level aliases: the [etcd] keys take the streamer's types (checks and units) as they are.
EtcdCluster = field_type(_STREAMER_FIELDS["cluster"])
EtcdTtlKey = field_type(_STREAMER_FIELDS["etcd_ttl"])


class EtcdSection(Section):
    """`[etcd]`: etcd mode. Either `endpoints` of an etcd that runs already, or `members` (1 or 3)
    that `logstream run` starts under supervisord before the mediators (etcd's data in run_dir)."""

    endpoints: AddressList | None = Field(
        None, description="client endpoints of an existing etcd (host:port; IP addresses when several)")
    members: int | None = Field(
        None, description="start a local etcd of this many members under supervisord (1, or 3 to survive one's loss)")
    host: str = Field("127.0.0.1", description="address the managed members bind to")
    port: int = Field(2379, ge=1, le=65530, description="the first managed member's client port; each member "
                      "takes two ports (client, then peer), the next member the next two")
    cluster: EtcdCluster | None = Field(  # type: ignore[valid-type]
        None, description="the name the cluster's records live under in etcd, /logstream/NAME/ (default: cluster.name)")
    ttl: EtcdTtlKey = FieldInfo.merge_field_infos(_STREAMER_FIELDS["etcd_ttl"])  # type: ignore[valid-type]

    @model_validator(mode="after")
    def _one_etcd(self) -> EtcdSection:
        if (self.endpoints is None) == (self.members is None):
            keys = ("members", "endpoints") if self.members is not None else ("endpoints", "members")
            raise SettingsConflict(keys, lambda name: (
                f"give {name('endpoints')} = [...] (an etcd that runs already) or {name('members')} = 1 or 3 "
                "(started by `logstream run`), not both or neither"))
        if self.endpoints is not None and len(self.endpoints) > 1:
            try:
                channel_target(self.endpoints)
            except ValueError as exc:
                reason = str(exc)
                raise SettingsConflict(("endpoints",), lambda name: f"{name('endpoints')}: {reason}") from None
        return self

    @field_validator("members")
    @classmethod
    def _members(cls, members: int | None) -> int | None:
        if members not in (None, 1, 3):
            raise ValueError(f"{members}: a managed etcd has 1 member, or 3 (which survive the loss of one)")
        return members

    @property
    def managed(self) -> bool:
        return self.members is not None


class StreamersSection(node_section("StreamerKeys", StreamerSettings, STREAMER_PLANNED | {"advertise"})):  # type: ignore[misc]
    """`[streamers]`: every `logstream streamer` setting, for all streamers; ports count up."""

    count: int = Field(3, ge=1, le=1000, description="how many streamers (named s1, s2, ...)")
    host: str = Field("127.0.0.1", description="address the streamers bind to")
    port: int = Field(8080, ge=1, le=65535, description="the first streamer's port; the next ones count up")
    pport: int = Field(1112, ge=1, le=65535, description="the first streamer's debug port (with pprof); counts up")
    path: Path = Field(Path("./logs"), description="root folder for log files")


class StreamerOverride(node_section("StreamerOverrideKeys", StreamerSettings, STREAMER_PLANNED, optional=True)):  # type: ignore[misc]
    """One `[[streamer]]` table: settings for the streamer `name` only; unset keys inherit."""

    name: str = Field(description="which streamer: s1 .. sN")
    port: int | None = Field(None, ge=1, le=65535)
    pport: int | None = Field(None, ge=1, le=65535)


class TlsSection(Section):
    ca: Path | None = Field(None, description="CA certificate: verify peers (mutual TLS with crt/pk)")
    crt: Path | None = Field(None, description="the nodes' certificate")
    pk: Path | None = Field(None, description="the nodes' private key")
    verify_clients: bool | None = Field(None, description="require client certificates (default: yes with ca)")

    @model_validator(mode="after")
    def _complete(self) -> TlsSection:
        ca, crt, pk, verify = self.ca, self.crt, self.pk, self.verify_clients
        if tls_set_problem(ca, crt, pk, verify, str):
            given = tuple(key for key in ("crt", "pk", "ca", "verify_clients") if getattr(self, key) is not None)
            raise SettingsConflict(given,
                                   lambda name: tls_set_problem(ca, crt, pk, verify, name) or "")
        return self


class ClusterConfig(BaseSettings):
    """A whole cluster: `[cluster]`, `[mediator]`, `[streamers]`, `[[streamer]]` tables, `[tls]`."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter=ENV_DELIMITER, extra="forbid", validate_default=True
    )

    cluster: ClusterSection = Field(default_factory=ClusterSection)  # type: ignore[arg-type]
    mediator: MediatorSection = Field(default_factory=MediatorSection)
    streamers: StreamersSection = Field(default_factory=StreamersSection)
    streamer: list[StreamerOverride] = Field(default_factory=list)
    mediators: list[MediatorOverride] = Field(default_factory=list)
    etcd: EtcdSection | None = None
    tls: TlsSection | None = None

    def streamer_names(self) -> list[str]:
        return [f"s{i}" for i in range(1, self.streamers.count + 1)]

    def mediator_names(self) -> list[str]:
        """`mediator` alone (as before etcd mode); m1 .. mN when there are several."""
        count = self.mediator.count
        return ["mediator"] if count == 1 else [f"m{i}" for i in range(1, count + 1)]

    def worker_names(self, mediator: str) -> list[str]:
        """The processes of one mediator: itself, then `<name>-2` .. with `workers` > 1."""
        return [mediator, *(f"{mediator}-{k}" for k in range(2, self.mediator.workers + 1))]

    def etcd_names(self) -> list[str]:
        """The managed etcd members (e1 ..), none for an existing etcd or without [etcd]."""
        members = self.etcd.members if self.etcd is not None else None
        return [f"e{i}" for i in range(1, (members or 0) + 1)]

    def etcd_cluster(self) -> str:
        """The name the cluster's records live under in etcd."""
        return (self.etcd.cluster if self.etcd is not None else None) or self.cluster.name

    def node_names(self) -> list[str]:
        mediators = [process for name in self.mediator_names() for process in self.worker_names(name)]
        return [*self.etcd_names(), *mediators, *self.streamer_names()]


SECTION_MODELS: dict[str, type[BaseModel]] = {
    "cluster": ClusterSection,
    "mediator": MediatorSection,
    "streamers": StreamersSection,
    "streamer": StreamerOverride,
    "mediators": MediatorOverride,
    "etcd": EtcdSection,
    "tls": TlsSection,
}
