"""The router's settings (seconds, counts), built from the mediator's settings in `server.py`."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class RouterConfig:
    health_interval_s: float = 5.0
    ping_timeout_s: float = 2.0
    lease_s: float = 7.5
    handoff_wait_s: float = 16.0
    restart_grace_s: float | None = None
    admit_s: float = 5.0
    forward_timeout_s: float = 5.0
    batch_lines: int = 20_000
    batch_bytes: int = 4_000_000
    linger_s: float = 0.005
    stream_forwards: bool = True  # forwards over LogStream (else LogBatch); older streamers step down
    key_idle_s: float = 120.0
    max_keys: int = 1_000_000
