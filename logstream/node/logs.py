"""Process logging: one line per event on stderr, naming the role and the node; text or JSON."""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

# Attributes every LogRecord has; anything else on a record came from `extra=` (its fields).
_RECORD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class _NodeFormatter(logging.Formatter):
    def __init__(self, role: str, node: str) -> None:
        super().__init__(
            fmt=f"%(asctime)s.%(msecs)03dZ {role} {node} %(levelname)s %(message)s",
            datefmt="%Y-%m-%dT%H:%M:%S",
        )
        self.converter = time.gmtime  # timestamps in UTC, as the trailing Z says

    def format(self, record: logging.LogRecord) -> str:
        # Keep one event on one line, even when a message or a traceback spans several.
        return super().format(record).replace("\n", " | ")


def _utc(created: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created)) + f".{int(created % 1 * 1000):03d}Z"


class JsonFormatter(logging.Formatter):
    """One JSON object a line (Fluent Bit, Loki, Kubernetes collectors): time (UTC, ms), level,
    role, node, logger, message, then the record's extra fields; `exception` holds a traceback."""

    def __init__(self, role: str, node: str) -> None:
        super().__init__()
        self.role = role
        self.node = node

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": _utc(record.created),
            "level": record.levelname.lower(),
            "role": self.role,
            "node": self.node,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _RECORD_ATTRS and key not in entry:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        # default=str: a field that is not JSON (a Path, an exception) is written as its text;
        # json.dumps escapes newlines, so an event stays on one line.
        return json.dumps(entry, default=str, ensure_ascii=False)


def make_formatter(role: str, node: str, log_format: str = "text") -> logging.Formatter:
    if log_format == "json":
        return JsonFormatter(role, node)
    return _NodeFormatter(role, node)


def setup_logging(role: str, node: str, level: str = "info", log_format: str = "text") -> None:
    """Send every logger's records to stderr as `TIME ROLE NODE LEVEL message`, or as JSON lines."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(make_formatter(role, node, log_format))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # grpc's own logger is chatty at INFO about connectivity; keep warnings and up.
    logging.getLogger("grpc").setLevel(max(logging.WARNING, root.level))
