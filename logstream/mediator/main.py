"""`logstream mediator`: load settings, run the server until SIGTERM/SIGINT, exit 0."""

from __future__ import annotations

import asyncio
import logging
import signal

from ..config.flags import load_settings
from ..config.settings import MediatorSettings
from ..logs import setup_logging

logger = logging.getLogger(__name__)

DESCRIPTION = (
    "Run the mediator: streamers register with it; it pings them (granting leases), places every file "
    "on exactly one streamer and forwards clients' lines there, answering only after they were written. "
    "Flags may be given as -flag or --flag; every flag also reads LOGSTREAM_MEDIATOR_<NAME> and the "
    "[mediator] table of -config FILE."
)


async def _serve(settings: MediatorSettings) -> None:
    from .server import run

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    received: list[str] = []

    def on_signal(sig: signal.Signals) -> None:
        received.append(sig.name)  # only note it; the loop does the work
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)

    def on_bound(node: str) -> None:
        setup_logging("mediator", node, settings.log_level)

    try:
        await run(settings, stop, on_bound)
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
    if received:
        logger.info("exited after %s", received[0])


def main(argv: list[str]) -> int:
    settings = load_settings(MediatorSettings, argv, "logstream mediator", DESCRIPTION)
    setup_logging("mediator", settings.id or f"{settings.host}:{settings.port}", settings.log_level)
    try:
        import uvloop
    except ImportError:  # pragma: no cover - optional speed-up
        asyncio.run(_serve(settings))
    else:
        uvloop.run(_serve(settings))
    return 0
