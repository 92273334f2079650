"""logstream: a log-collection cluster (mediator + streamers) speaking the Go Log Streamer protocol."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["LogClient", "LogstreamHandler", "SyncLogClient", "__version__"]

if TYPE_CHECKING:
    from logstream.client import LogClient, SyncLogClient
    from logstream.handler import LogstreamHandler

# The clients import grpc and the generated stubs; `import logstream` (every command, every node)
# stays light by importing them on first use.
_LAZY = {"LogClient": "logstream.client", "SyncLogClient": "logstream.client", "LogstreamHandler": "logstream.handler"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'logstream' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
