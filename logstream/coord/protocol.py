"""etcd mode's decisions without I/O: key names, the lease validity clock, a streamer's holdings, the transactions.

The one-writer rule in etcd mode (docs/cluster-protocol.md, "etcd mode"): a streamer writes a key
only while (1) etcd holds the key's owner record with the streamer's id, attached to the
streamer's own lease, created by the streamer's create-if-absent transaction and not yet deleted
by it, and (2) the streamer can prove, on its own clock, that the lease has not expired in etcd.

(2) is `LeaseClock`: etcd sets a lease's expiry to (the instant it handles a grant or keep-alive)
+ TTL, and it handles a request only after it was sent; so, on the streamer's clock running at
most `drift` slower or faster than any etcd member's, the lease surely lives until
`sent + ttl * (1 - drift)` counted from the SEND time of the last keep-alive answered with a TTL.
A keep-alive answered with TTL <= 0, or an unknown lease, means the lease (and with it every
record on it) is gone for good.

Times are whatever the caller's clock counts (seconds of `time.monotonic()` in the adapter,
exact fractions in the stateful test); this module only adds, multiplies and compares them.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

# The clock-rate bound this protocol assumes between a streamer's monotonic clock and any etcd
# member's (etcd's own lease design assumes the same kind of bound). 10% is far beyond what
# NTP-disciplined or free-running quartz clocks do (tens of ppm); it is a rate bound, not an
# offset bound: no clocks are compared across machines.
DRIFT = 0.1
# How long before the proven end a streamer stops writing: covers the time between the check and
# the write (one event-loop turn) and the scheduling of the lapse timer.
MARGIN_S = 0.25
# Keep-alives go out every TTL / KEEPALIVES_PER_TTL: two can be lost and the lease still proven.
KEEPALIVES_PER_TTL = 3

PREFIX = "/logstream"


# ---- key names -------------------------------------------------------------------------------

def cluster_prefix(cluster: str) -> str:
    if not cluster or "/" in cluster:
        raise ValueError(f"cluster name {cluster!r} must be non-empty and contain no '/'")
    return f"{PREFIX}/{cluster}/"


def member_key(cluster: str, streamer_id: str) -> str:
    """`/logstream/<cluster>/members/<streamer id>` -> the streamer's address, on its lease."""
    return f"{cluster_prefix(cluster)}members/{streamer_id}"


def owner_key(cluster: str, path: str, filename: str) -> str:
    """`/logstream/<cluster>/owners/<path>/<filename>` -> the owner's id, on its lease. A filename
    holds no '/', so the last segment is always the filename and the rest the path."""
    middle = f"{path}/" if path else ""
    return f"{cluster_prefix(cluster)}owners/{middle}{filename}"


def owners_prefix(cluster: str) -> str:
    return f"{cluster_prefix(cluster)}owners/"


def members_prefix(cluster: str) -> str:
    return f"{cluster_prefix(cluster)}members/"


def mediator_key(cluster: str, mediator_id: str) -> str:
    """`/logstream/<cluster>/mediators/<mediator id>` -> the mediator's address, on its own lease:
    only for status (mediators decide nothing that safety rests on)."""
    return f"{cluster_prefix(cluster)}mediators/{mediator_id}"


def mediators_prefix(cluster: str) -> str:
    return f"{cluster_prefix(cluster)}mediators/"


def parse_owner_key(cluster: str, key: str) -> tuple[str, str]:
    """The (path, filename) an owner key names; ValueError for a key outside the owners prefix."""
    prefix = owners_prefix(cluster)
    if not key.startswith(prefix) or len(key) == len(prefix):
        raise ValueError(f"{key!r} is not an owner key of cluster {cluster!r}")
    path, _, filename = key[len(prefix):].rpartition("/")
    return path, filename


# ---- transactions, as data: the adapter sends them to etcd, the stateful test's model runs them ----

class Target(enum.Enum):
    CREATE = "create_revision"
    LEASE = "lease"


@dataclass(frozen=True)
class Compare:
    """`key`'s `target` equals `value` (etcd: an absent key has create_revision 0 and lease 0)."""

    key: str
    target: Target
    value: int


@dataclass(frozen=True)
class Put:
    key: str
    value: str
    lease: int


@dataclass(frozen=True)
class Delete:
    key: str


@dataclass(frozen=True)
class Get:
    key: str


Op = Put | Delete | Get


@dataclass(frozen=True)
class Txn:
    compare: tuple[Compare, ...]
    success: tuple[Op, ...]
    failure: tuple[Op, ...] = ()


@dataclass(frozen=True)
class Record:
    """A key as etcd holds it."""

    value: str
    lease: int
    create_revision: int


@dataclass(frozen=True)
class TxnResult:
    """Whether the compares held, and the record a Get in the branch that ran found (None: absent),
    or, for a create, the revision it was created at (`revision`)."""

    succeeded: bool
    found: Record | None = None
    revision: int = 0


def create_if_absent(key: str, value: str, lease: int) -> Txn:
    """Put `key` on `lease` unless it exists; otherwise read who has it."""
    return Txn((Compare(key, Target.CREATE, 0),), (Put(key, value, lease),), (Get(key),))


def delete_if_mine(key: str, lease: int, create_revision: int) -> Txn:
    """Delete `key` only if it is still the record this streamer created (its lease, that revision):
    a delete delivered late can never remove a newer record, even one of its own."""
    return Txn((Compare(key, Target.LEASE, lease), Compare(key, Target.CREATE, create_revision)),
               (Delete(key),), (Get(key),))


# ---- the validity clock ------------------------------------------------------------------------

@dataclass
class LeaseClock:
    """Until when (local clock) this streamer can prove its etcd lease lives."""

    drift: float = DRIFT
    margin_s: float = 0.0
    until: float = float("-inf")
    lost: bool = False  # etcd said the lease is gone: nothing on it will come back

    def renewed(self, sent_at: float, ttl_s: float) -> None:
        """A grant or keep-alive sent at `sent_at` (local) was answered with `ttl_s`."""
        if ttl_s <= 0:
            self.gone()
            return
        if self.lost:
            return  # a late answer from before the loss proves nothing now
        self.until = max(self.until, sent_at + ttl_s * (1 - self.drift) - self.margin_s)

    def gone(self) -> None:
        self.lost = True
        self.until = float("-inf")

    def valid(self, now: float) -> bool:
        return not self.lost and now < self.until


# ---- a streamer's holdings ---------------------------------------------------------------------

class Admit(enum.Enum):
    WRITE = "write"            # held and the lease is proven: write now
    CLAIM = "claim"            # not held: run `claim(key)` (create-if-absent) first
    WAIT_CLAIM = "wait-claim"  # a claim of this key is in flight: wait for its answer
    NO_LEASE = "no-lease"      # the lease cannot be proven now: UNAVAILABLE


@dataclass(frozen=True)
class Owned:
    """A claim succeeded (or found this streamer's own live record): the key is held."""

    create_revision: int


@dataclass(frozen=True)
class NotOwner:
    """A claim found another record. `owner` is the id in it; `same_id_other_lease` when that is
    this streamer's id on another lease (a previous incarnation, until that lease ends)."""

    owner: str
    same_id_other_lease: bool = False


@dataclass(frozen=True)
class Blocked:
    """A claim found this streamer's own record that a delete it sent may still remove."""

    create_revision: int


ClaimOutcome = Owned | NotOwner | Blocked


@dataclass
class Holdings:
    """The keys a streamer holds in etcd under one lease, and whether it may write them now.

    One object per lease: a new lease starts empty (records on an old lease are not this one's).
    """

    cluster: str
    me: str
    lease: int
    clock: LeaseClock
    held: dict[str, int] = field(default_factory=dict)          # owner key -> create revision
    claiming: set[str] = field(default_factory=set)             # create txn sent, no answer yet
    doomed: dict[str, set[int]] = field(default_factory=dict)   # deletes sent, no definite answer

    def key(self, path: str, filename: str) -> str:
        return owner_key(self.cluster, path, filename)

    def may_write(self, key: str, now: float) -> bool:
        return key in self.held and self.clock.valid(now)

    def admit(self, key: str, now: float) -> Admit:
        if not self.clock.valid(now):
            return Admit.NO_LEASE
        if key in self.held:
            return Admit.WRITE
        if key in self.claiming:
            return Admit.WAIT_CLAIM
        return Admit.CLAIM

    def claim(self, key: str) -> Txn:
        self.claiming.add(key)
        return create_if_absent(key, self.me, self.lease)

    def claimed(self, key: str, result: TxnResult) -> ClaimOutcome:
        """The answer to `claim(key)`."""
        self.claiming.discard(key)
        if result.succeeded:
            self.held[key] = result.revision
            return Owned(result.revision)
        found = result.found
        if found is None:  # deleted between the compare and the read: cannot be; treat as lost race
            return NotOwner("")
        if found.lease != self.lease:
            return NotOwner(found.value, same_id_other_lease=found.value == self.me)
        if found.create_revision in self.doomed.get(key, set()):
            return Blocked(found.create_revision)
        # Our own record (an earlier claim whose answer was lost): it exists, on our lease.
        self.held[key] = found.create_revision
        return Owned(found.create_revision)

    def claim_unknown(self, key: str) -> None:
        """The claim's answer never came (timeout): not held; a later claim finds out."""
        self.claiming.discard(key)

    def release(self, key: str) -> Txn | None:
        """Stop writing `key` now (the caller closes its file first) and get the guarded delete;
        None if not held."""
        revision = self.held.pop(key, None)
        if revision is None:
            return None
        self.doomed.setdefault(key, set()).add(revision)
        return delete_if_mine(key, self.lease, revision)

    def redo_release(self, key: str) -> list[Txn]:
        """The deletes still unresolved for `key`, to send again."""
        return [delete_if_mine(key, self.lease, revision) for revision in sorted(self.doomed.get(key, ()))]

    def released(self, key: str, revision: int) -> None:
        """A definite answer to the delete of `revision`: either it deleted the record or the
        record was already gone (its compares failed); either way that revision never returns."""
        revisions = self.doomed.get(key)
        if revisions is not None:
            revisions.discard(revision)
            if not revisions:
                del self.doomed[key]

    def lease_gone(self) -> list[str]:
        """etcd has no such lease any more: nothing is held. The keys to close."""
        self.clock.gone()
        keys = list(self.held)
        self.held.clear()
        self.claiming.clear()
        self.doomed.clear()  # the records went with the lease
        return keys
