"""The streamer's side of the lease protocol (docs/cluster-protocol.md); pure state, a clock seam.

Standalone (no -mediator) the streamer may always write. With a mediator it may write only while
`now < until`, where every ping with `lease_ms > 0` sets `until = receipt + lease_ms`, never earlier
than before. A ping from a different mediator incarnation first releases every key.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

# Before the first ping tells us the mediator's interval, re-register after this long unpinged.
FIRST_PING_WAIT_S = 15.0
UNPINGED_INTERVALS = 3


@dataclass(frozen=True)
class PingEffect:
    """What a ping changed: `release_all` when the mediator's incarnation changed."""

    release_all: bool
    granted: bool
    previous_mediator: str | None


class Lease:
    """Whether this streamer may write now, and when it was last pinged."""

    def __init__(self, required: bool, clock: Callable[[], float] = time.monotonic) -> None:
        self.required = required
        self._clock = clock
        self.until = float("-inf")
        self.mediator_id: str | None = None
        self.interval_s: float | None = None
        self.last_ping: float | None = None
        self.since = clock()  # when the unpinged time started counting (start or last Register)

    def may_write(self) -> bool:
        return not self.required or self._clock() < self.until

    def remaining_s(self) -> float:
        return self.until - self._clock()

    def on_ping(self, lease_ms: int, mediator_id: str, interval_ms: int) -> PingEffect:
        now = self._clock()
        self.last_ping = now
        if interval_ms > 0:
            self.interval_s = interval_ms / 1000
        previous = self.mediator_id
        release_all = bool(mediator_id) and previous is not None and mediator_id != previous
        if mediator_id:
            self.mediator_id = mediator_id
        granted = lease_ms > 0
        if granted:
            self.until = max(self.until, now + lease_ms / 1000)
        return PingEffect(release_all, granted, previous)

    def registered(self) -> None:
        """A Register call succeeded: count unpinged time from now."""
        self.since = self._clock()

    def reregister_after_s(self) -> float:
        if self.interval_s is None:
            return FIRST_PING_WAIT_S
        return UNPINGED_INTERVALS * self.interval_s

    def unpinged_s(self) -> float:
        """Seconds since the last ping, or since registering if that was later."""
        last = self.since if self.last_ping is None else max(self.last_ping, self.since)
        return self._clock() - last

    def should_reregister(self) -> bool:
        return self.unpinged_s() > self.reregister_after_s()
