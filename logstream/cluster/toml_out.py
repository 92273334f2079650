"""A cluster config written back as TOML: `config show`, and `logstream init`'s commented starter file."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import tomli_w
from pydantic import BaseModel

from logstream.cluster.schema import (
    COMMON,
    SECTION_MODELS,
    ClusterConfig,
    EtcdSection,
    MediatorOverride,
    StreamerOverride,
    TlsSection,
)


def _ordered(model: type[BaseModel], values: Mapping[str, Any]) -> dict[str, Any]:
    """The keys a cluster declares for a section first (count, host, port, ...), then the role's
    own, then those every node shares (grace, log_level, ...)."""
    own = list(vars(model).get("__annotations__", {}))

    def rank(key: str) -> tuple[int, int]:
        if key in own:
            return (0, own.index(key))
        return (2 if key in COMMON else 1, 0)

    return {key: values[key] for key in sorted(values, key=rank)}


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
        model = SECTION_MODELS[section]
        described = describe_fields(model) if comments else None
        chunks.append(toml_table(f"[{section}]", _ordered(model, data[section]), described))
    for table in data.get("streamer", []):
        chunks.append(toml_table("[[streamer]]", _ordered(StreamerOverride, table)))
    for table in data.get("mediators", []):
        chunks.append(toml_table("[[mediators]]", _ordered(MediatorOverride, table)))
    if "etcd" in data:
        chunks.append(toml_table("[etcd]", _ordered(EtcdSection, data["etcd"]),
                                 describe_fields(EtcdSection) if comments else None))
    if "tls" in data:
        chunks.append(toml_table("[tls]", data["tls"], describe_fields(TlsSection) if comments else None))
    return "\n".join(chunks)


def describe_fields(model: type[BaseModel]) -> dict[str, str]:
    """Each field's description: comments in `logstream init`'s starter file."""
    return {name: field.description or "" for name, field in model.model_fields.items()}
