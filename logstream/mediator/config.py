"""The router's settings (seconds, counts), built from the mediator's settings."""

from __future__ import annotations

from dataclasses import dataclass

from logstream.config.settings import MediatorSettings
from logstream.mediator.ledger import LeaseLedger


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


def restart_grace_s(settings: MediatorSettings, ledger: LeaseLedger | None) -> float | None:
    """-restart-grace if given; else what the ledger says a previous run granted; else None (the
    worst case: ping timeout + 1.1 x lease)."""
    if settings.restart_grace is not None:
        return settings.restart_grace
    return None if ledger is None else ledger.remaining_s()


def router_config(settings: MediatorSettings, ledger: LeaseLedger | None = None) -> RouterConfig:
    assert settings.ping_timeout is not None and settings.lease is not None and settings.handoff_wait is not None
    return RouterConfig(
        health_interval_s=settings.health_interval,
        ping_timeout_s=settings.ping_timeout,
        lease_s=settings.lease,
        handoff_wait_s=settings.handoff_wait,
        restart_grace_s=restart_grace_s(settings, ledger),
        forward_timeout_s=settings.forward_timeout,
        batch_lines=settings.batch_lines,
        batch_bytes=settings.batch_bytes,
        linger_s=settings.linger,
        key_idle_s=settings.key_idle,
        max_keys=settings.max_keys,
    )
