"""The streamer's side of the lease protocol (docs/cluster-protocol.md); pure state, a clock seam.

Standalone (no -mediator) the streamer may always write. With a mediator it may write only while
`now < until`. Pings are numbered (`seq`); each carries `acked_seq`, the last ping whose answer the
mediator received before its deadline, and sets `until = receipt(acked_seq) + lease_ms`, never
earlier than before. Counting from that receipt, not from the carrying ping's, is what keeps a ping
delivered late (after a partition) from stretching the lease past the mediator's bound. A ping from
a different mediator incarnation first releases every key.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

# Before the first ping tells us the mediator's interval, re-register after this long unpinged.
FIRST_PING_WAIT_S = 15.0
# A ping missed by this many intervals: the mediator may have restarted and forgotten us; register
# again at once (a restarted mediator then pings within a round trip, see registration.py).
UNPINGED_INTERVALS = 1.2
# Registration retries back off to at most this while the mediator was seen lately (it is
# probably restarting: be back within a fraction of a second), and to registration's usual cap after.
REGISTER_BACKOFF_RECENT_S = 0.5
RECENT_S = 60.0
# Receipt times kept for pings not yet acknowledged (the mediator acks within a round or two).
RECEIPTS_KEPT = 64


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
        self.link = 0  # the newest link of that mediator a ping came on (auth.LINK_HEADER)
        self.interval_s: float | None = None
        self.last_ping: float | None = None
        self.since = clock()  # when the unpinged time started counting (start or last Register)
        self._receipts: dict[int, float] = {}  # seq -> when that ping arrived
        # Registered with a mediator that grants no leases (the Go original): file locks are then
        # the only guard, as in the original (set by registration's probe of the mediator).
        self.legacy = False

    def may_write(self) -> bool:
        return not self.required or self.legacy or self._clock() < self.until

    def remaining_s(self) -> float:
        return self.until - self._clock()

    def left_s(self, until: float) -> float:
        """Seconds from now until `until` (a past value of `self.until`), at least 0."""
        return max(0.0, until - self._clock())

    def on_ping(self, lease_ms: int, mediator_id: str, interval_ms: int, seq: int = 0,
                acked_seq: int = 0, in_time: bool = True, link: int = 0) -> PingEffect:
        """Note a ping. `in_time` False (handled after its deadline) records no receipt: the
        mediator never acks such a ping, and must not be able to grant from it. `link` is the
        mediator's connection it came on: forwards must come on the newest one seen."""
        now = self._clock()
        self.last_ping = now
        if interval_ms > 0:
            self.interval_s = interval_ms / 1000
        previous = self.mediator_id
        release_all = bool(mediator_id) and previous is not None and mediator_id != previous
        if mediator_id:
            if mediator_id != previous:
                self._receipts.clear()  # another mediator's numbering
                self.link = 0
            self.mediator_id = mediator_id
            if in_time:  # links only grow: a late ping of an earlier link changes nothing
                self.link = max(self.link, link)
        if seq > 0 and in_time:
            self._receipts[seq] = now
            if len(self._receipts) > RECEIPTS_KEPT:
                del self._receipts[min(self._receipts)]
        granted = False
        receipt = self._receipts.get(acked_seq) if lease_ms > 0 and acked_seq > 0 else None
        if receipt is not None:
            granted = True
            self.until = max(self.until, receipt + lease_ms / 1000)
            for old in [number for number in self._receipts if number < acked_seq]:
                del self._receipts[old]
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

    def register_backoff_cap_s(self, cap_s: float) -> float:
        """The longest wait between registration attempts: short while the mediator was lately
        seen (a restart), `cap_s` otherwise."""
        recent = self.last_ping is not None and self._clock() - self.last_ping < RECENT_S
        return min(cap_s, REGISTER_BACKOFF_RECENT_S) if recent else cap_s
