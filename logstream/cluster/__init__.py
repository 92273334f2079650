"""The cluster file: its schema, the nodes it plans, its checks, its loader and its TOML output."""

from logstream.cluster.files import check_files
from logstream.cluster.load import load_cluster
from logstream.cluster.plan import (
    Node,
    etcd_endpoints,
    mediator_address,
    mediator_addresses,
    plan_nodes,
    select_nodes,
    streamer_values,
    token_path,
)
from logstream.cluster.schema import (
    ClusterConfig,
    ConfigError,
    EtcdSection,
    MediatorOverride,
    MediatorSection,
    StreamerOverride,
    StreamersSection,
    TlsSection,
)
from logstream.cluster.toml_out import to_toml

__all__ = [
    "ClusterConfig",
    "ConfigError",
    "EtcdSection",
    "MediatorOverride",
    "MediatorSection",
    "Node",
    "StreamerOverride",
    "StreamersSection",
    "TlsSection",
    "check_files",
    "etcd_endpoints",
    "load_cluster",
    "mediator_address",
    "mediator_addresses",
    "plan_nodes",
    "select_nodes",
    "streamer_values",
    "to_toml",
    "token_path",
]
