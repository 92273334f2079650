"""The cluster's timing rules (leases, ping deadlines, waits), declared once; pure arithmetic.

The lease protocol (docs/cluster-protocol.md) rests on one bound: a streamer counts its lease from
the receipt of a ping the mediator sent at `sent`, which (for a ping answered in time) arrives before
`sent + ping_timeout`; it then writes for `lease` seconds on its own clock. Two clocks may run at
rates differing by up to `CLOCK_RATE_MARGIN`, so the mediator considers that lease surely over at
`sent + expiry_bound_s(ping_timeout, lease)`. Everything that waits for a lease to end uses it.
"""

from __future__ import annotations

# How much faster than the mediator's clock a streamer's clock may run out a duration: 10%.
CLOCK_RATE_MARGIN = 1.1
# The default lease, in health intervals: it must outlast one interval (the next ping renews it),
# with room for that ping to be late.
LEASE_INTERVALS = 1.5
# The default ping deadline: half an interval, at most this long.
PING_TIMEOUT_CAP_S = 2.0


def default_ping_timeout_s(interval_s: float) -> float:
    return min(interval_s / 2, PING_TIMEOUT_CAP_S)


def default_lease_s(interval_s: float) -> float:
    return LEASE_INTERVALS * interval_s


def lease_outlasts_interval(lease_s: float, interval_s: float) -> bool:
    """A lease no longer than the interval lapses between two pings, whatever they carry."""
    return lease_s > interval_s


def outlived_s(duration_s: float) -> float:
    """How long, on the mediator's clock, a duration measured on another node's clock may last."""
    return CLOCK_RATE_MARGIN * duration_s


def expiry_bound_s(ping_timeout_s: float, lease_s: float) -> float:
    """After the sending of the ping that granted it, how long a lease may live at most."""
    return ping_timeout_s + outlived_s(lease_s)


def default_handoff_wait_s(interval_s: float, ping_timeout_s: float, lease_s: float) -> float:
    """How long a request for a key without a usable owner waits by default: one health round to
    notice a failed owner, then until that owner's lease is surely over."""
    return interval_s + expiry_bound_s(ping_timeout_s, lease_s)


# etcd mode: a streamer's etcd lease TTL, whole seconds (etcd counts leases in seconds). At 1 s a
# streamer still proves 0.65 s per keep-alive sent every 0.33 s (coord/protocol.py); etcd itself
# raises a TTL below 1.5 election timeouts to that minimum, and the answered TTL is what counts.
ETCD_TTL_MIN_S = 1
ETCD_TTL_MAX_S = 3600
