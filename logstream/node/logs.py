"""Process logging: one line per event on stderr, naming the role and the node."""

from __future__ import annotations

import logging
import sys
import time


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


def setup_logging(role: str, node: str, level: str = "info") -> None:
    """Send every logger's records to stderr as `TIME ROLE NODE LEVEL message`."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_NodeFormatter(role, node))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # grpc's own logger is chatty at INFO about connectivity; keep warnings and up.
    logging.getLogger("grpc").setLevel(max(logging.WARNING, root.level))
