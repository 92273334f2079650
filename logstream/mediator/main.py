"""`logstream mediator`: load settings, run the server until SIGTERM/SIGINT; exit 1 if its background work failed."""

from __future__ import annotations

from logstream.config.flags import load_settings
from logstream.config.settings import MediatorSettings
from logstream.node.logs import setup_logging
from logstream.node.run import run_until_signalled

DESCRIPTION = (
    "Run the mediator: streamers register with it; it pings them (granting leases), places every file "
    "on exactly one streamer and forwards clients' lines there, answering only after they were written. "
    "With -etcd: a stateless router instead, sending each file to the streamer that owns it in etcd (any "
    "number of mediators may run; -reuse-port lets several share one port). "
    "Flags may be given as -flag or --flag; every flag also reads LOGSTREAM_MEDIATOR_<NAME> and the "
    "[mediator] table of -config FILE."
)


def main(argv: list[str]) -> int:
    settings = load_settings(MediatorSettings, argv, "logstream mediator", DESCRIPTION)
    setup_logging("mediator", settings.id or f"{settings.host}:{settings.port}", settings.log_level, settings.log_format)
    if settings.etcd is not None:  # a stateless router over etcd
        from logstream.mediator.etcd_server import run
    else:
        from logstream.mediator.server import run

    def on_bound(node_id: str) -> None:
        setup_logging("mediator", node_id, settings.log_level, settings.log_format)

    return run_until_signalled(lambda stop: run(settings, stop, on_bound))
