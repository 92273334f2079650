"""The JSON schema of `logstream status --json` (version 1): every key always present, snake_case.

Two forms share one shape: `status -mediator ADDR --json` prints one `MEDIATOR` object, and
`status FILE --json` prints a `CLUSTER` object whose `mediators` list holds one `MEDIATOR` object per
mediator of the cluster file. Each part that is asked separately (supervisord, each mediator, etcd)
carries its own `error`: null when it answered, else one line saying why not; what it would have
said is then null or empty. docs/operations.md documents the keys; tests validate real output
against these schemas with `jsonschema`. A change that removes, renames or retypes a key raises
`SCHEMA_VERSION`; adding a key does not.
"""

from __future__ import annotations

import re
from typing import Any

SCHEMA_VERSION = 1

_SNAKE = "^[a-z][a-z0-9_]*$"


def _object(properties: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """An object with exactly these keys, each required."""
    return {"type": "object", "properties": properties, "required": sorted(properties),
            "additionalProperties": False, **extra}


_TEXT_OR_NULL: dict[str, Any] = {"type": ["string", "null"]}
_COUNT = {"type": "integer", "minimum": 0}
_VERSION = {"const": SCHEMA_VERSION}

STREAMER: dict[str, Any] = _object({
    "id": {"type": "string"},
    "addr": {"type": "string"},
    "alive": {"type": "boolean"},
    "files": {"type": "array", "items": {"type": "string"}},
    "lines": _COUNT,
    "bytes": _COUNT,
    "last_seen_s": {"type": ["number", "null"], "minimum": 0},
})

MEDIATOR: dict[str, Any] = _object({
    "schema": _VERSION,
    "name": _TEXT_OR_NULL,
    "addr": {"type": "string"},
    "mediator_id": _TEXT_OR_NULL,
    "error": _TEXT_OR_NULL,
    "streamers": {"type": "array", "items": STREAMER},
    "counters": {"type": "object", "propertyNames": {"pattern": _SNAKE}, "additionalProperties": _COUNT},
})

PROCESS: dict[str, Any] = _object({
    "name": {"type": "string"},
    "group": {"type": "string"},
    "supervisorctl": {"type": "string"},
    "state": {"type": "string"},
    "pid": {"type": ["integer", "null"], "minimum": 1},
    "uptime_s": {"type": ["integer", "null"], "minimum": 0},
    "uptime": {"type": "string"},
    "description": {"type": "string"},
})

SUPERVISORD: dict[str, Any] = _object({
    "conf": {"type": "string"},
    "error": _TEXT_OR_NULL,
    "processes": {"type": "array", "items": PROCESS},
})

OWNER: dict[str, Any] = _object({"path": {"type": "string"}, "filename": {"type": "string"}, "owner": {"type": "string"}})

ETCD: dict[str, Any] = _object({
    "endpoints": {"type": "array", "items": {"type": "string"}, "minItems": 1},
    "cluster": {"type": "string"},
    "error": _TEXT_OR_NULL,
    "members": {"type": ["object", "null"], "additionalProperties": {"type": "string"}},
    "owners": {"type": ["array", "null"], "items": OWNER},
    "revision": {"type": ["integer", "null"]},
})

CLUSTER: dict[str, Any] = _object({
    "schema": _VERSION,
    "cluster": {"type": "string"},
    "run_dir": {"type": "string"},
    "supervisord": SUPERVISORD,
    "mediators": {"type": "array", "items": MEDIATOR, "minItems": 1},
    "etcd": {"oneOf": [{"type": "null"}, ETCD]},
}, **{"$schema": "https://json-schema.org/draft/2020-12/schema"})


def snake_case(name: str) -> str:
    """A counter's name as the schema spells it: `requests_LogBatch` -> `requests_log_batch`."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()
