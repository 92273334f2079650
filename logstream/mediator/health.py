"""The health loop: ping every streamer every interval, each ping with its own deadline; then forget idle keys."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from logstream.mediator.router import Router

logger = logging.getLogger(__name__)


async def health_loop(router: Router, interval_s: float, stop: asyncio.Event) -> None:
    """Ping all members on a fixed-rate schedule (a slow round does not shift later ones)."""
    loop = asyncio.get_running_loop()
    next_round = loop.time()
    while not stop.is_set():
        await router.ping_all()
        router.forget_idle()  # after the answers: their reports say which files are closed
        next_round += interval_s
        delay = next_round - loop.time()
        if delay < 0:  # a round overran (a stalled loop): start again from now
            logger.warning("health round overran its interval by %.3fs", -delay)
            next_round = loop.time()
            delay = 0.0
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await stop.wait()
