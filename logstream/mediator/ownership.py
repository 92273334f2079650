"""The key -> owner table: sticky assignment, fencing after failures, hand-off on joins. Pure.

A key is in at most one of three states:
- owned by a live streamer: requests go there;
- fenced on a failed streamer: requests wait until that streamer's lease has surely expired (or it
  comes back live, and takes its keys back), then the key is placed anew;
- in hand-off from one streamer to a newcomer: requests wait until the old owner released it.
A key in none of them is placed on first use by rendezvous hashing over the live streamers.
An owned key that has been idle for a while, with no forward pending at its owner and reported
closed by it, is forgotten: it is in none of the states again (see `forget_idle`).
"""

from __future__ import annotations

import enum
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

from logstream.mediator.membership import Holder, Membership
from logstream.keys.paths import FileKey
from logstream.keys.placement import place


class Wait(enum.Enum):
    """Why a key cannot be routed right now (the request waits, up to -handoff-wait)."""

    HANDOFF = "in hand-off to a new streamer"
    FENCED = "its streamer failed; waiting until that streamer's lease has surely expired"
    GRACE = "the mediator just started; waiting until leases granted by a previous mediator have surely expired"
    ADMITTING = "no streamer is live yet; waiting for registered ones to answer a health check"


class NoStreamers(enum.Enum):
    NONE = "no live streamer"


class TableFull(enum.Enum):
    """A new key cannot be placed: the table holds -max-keys keys (none idle enough to forget)."""

    FULL = "the mediator's key table is full"


Route = Holder | Wait | NoStreamers | TableFull


@dataclass(frozen=True)
class Handoff:
    source: Holder
    target: Holder
    keys: tuple[FileKey, ...]


@dataclass
class Ownership:
    """The assignment of file keys to streamers, driven by membership events and `now` values."""

    membership: Membership
    # Until then nothing is placed: a previous mediator's leases may still be live (see
    # docs/cluster-protocol.md, "Mediator restart").
    grace_until: float = float("-inf")
    owner: dict[FileKey, Holder] = field(default_factory=dict)
    fenced: dict[FileKey, Holder] = field(default_factory=dict)
    handoff: dict[FileKey, tuple[Holder, Holder]] = field(default_factory=dict)
    # Most keys in the table (owned, fenced or moving) before a new key is refused; 0: no bound.
    max_keys: int = 0
    # Per owned key, the last time it was placed or a forward of it ended (after the owner wrote
    # it), oldest first: a key's last write at its owner came before this.
    last_active: dict[FileKey, float] = field(default_factory=dict)
    # Per streamer, a time before which every key it was last sent has been closed there (from
    # its ping answers, see docs/cluster-protocol.md "Forgetting idle keys").
    closed_before: dict[Holder, float] = field(default_factory=dict)

    def _own(self, key: FileKey, holder: Holder, now: float) -> None:
        self.owner[key] = holder
        self.last_active.pop(key, None)  # re-inserted last: the dict stays ordered by time
        self.last_active[key] = now

    def _disown(self, key: FileKey) -> None:
        del self.owner[key]
        self.last_active.pop(key, None)

    def size(self) -> int:
        return len(self.owner) + len(self.fenced) + len(self.handoff)

    def active(self, key: FileKey, now: float) -> None:
        """A forward of `key` ended (written, or refused): its owner wrote it last before `now`."""
        last_active = self.last_active
        if key in last_active:
            del last_active[key]
            last_active[key] = now

    def reported_closed(self, holder: Holder, before: float) -> None:
        """`holder` reported that every key it was last sent before `before` is closed there."""
        if before > self.closed_before.get(holder, float("-inf")):
            self.closed_before[holder] = before

    def forget_idle(self, now: float, idle_s: float, busy: Callable[[Holder, FileKey], bool]) -> list[FileKey]:
        """Forget owned keys idle since `now - idle_s`, with no forward pending at their owner
        (`busy`) and reported closed by it; and fenced keys whose old owner's lease has surely
        expired (what `route` would do on their next use). The keys forgotten.

        A forgotten key is placed again only as a new one is: its former owner writes only what
        it is sent, nothing of the key is in flight to it, and it closed (unlocked) the file."""
        cutoff = now - idle_s
        never = float("-inf")
        forgotten = []
        for key, since in self.last_active.items():
            if since > cutoff:
                break  # ordered by time: every later key is younger
            holder = self.owner[key]
            if since < self.closed_before.get(holder, never) and not busy(holder, key):
                forgotten.append(key)
        for key in forgotten:
            self._disown(key)
        if self.fenced:
            for key, holder in list(self.fenced.items()):
                if self.membership.surely_expired(holder, now):
                    del self.fenced[key]
                    forgotten.append(key)
        return forgotten

    def route(self, key: FileKey, now: float) -> Route:
        holder = self.owner.get(key)
        if holder is not None:
            return holder
        if key in self.handoff:
            return Wait.HANDOFF
        fenced_on = self.fenced.get(key)
        if fenced_on is not None:
            if not self.membership.surely_expired(fenced_on, now):
                return Wait.FENCED
            del self.fenced[key]
        if now < self.grace_until:
            return Wait.GRACE
        if self.max_keys and self.size() >= self.max_keys:
            return TableFull.FULL
        live = self.membership.live_by_id()
        chosen = place(key, live)
        if chosen is None:
            # Registered streamers (a restarted mediator's, from its ledger or re-registering) are
            # worth waiting for; with none at all the caller learns at once.
            return Wait.ADMITTING if self.membership.members or self.membership.candidates else NoStreamers.NONE
        self._own(key, live[chosen], now)
        return live[chosen]

    def claimed(self, holder: Holder, keys: list[FileKey], now: float) -> list[FileKey]:
        """During the start-up grace, keys a streamer had open under the previous mediator when it
        switched to this one (it reports them in its first ping answer) stay with it at once:
        under the previous mediator's one-writer rule nobody else can be writing them. A key
        already owned, fenced or moving is left alone. The keys taken."""
        if now >= self.grace_until:
            return []  # every previous lease has surely expired: placement is free again
        taken = []
        for key in keys:
            if key not in self.owner and key not in self.fenced and key not in self.handoff:
                self._own(key, holder, now)
                taken.append(key)
        return taken

    def joined(self, newcomer: Holder, now: float) -> list[Handoff]:
        """A streamer became live: give back keys fenced on it, and plan the hand-off of the keys
        that rendezvous hashing now gives it. Requests for those keys wait from now on."""
        for key, holder in list(self.fenced.items()):
            if holder == newcomer:  # the same process is back: it may still hold them
                del self.fenced[key]
                self._own(key, newcomer, now)
        live_ids = list(self.membership.live_by_id())
        moving: dict[Holder, list[FileKey]] = defaultdict(list)
        for key, holder in self.owner.items():
            if holder != newcomer and place(key, live_ids) == newcomer.id:
                moving[holder].append(key)
        plans: list[Handoff] = []
        for source, keys in moving.items():
            for key in keys:
                self._disown(key)
                self.handoff[key] = (source, newcomer)
            plans.append(Handoff(source, newcomer, tuple(keys)))
        return plans

    def handoff_done(self, plan: Handoff, released: bool, now: float) -> None:
        """The old owner released the keys (released=True), or failed to (its lease must lapse)."""
        for key in plan.keys:
            if self.handoff.get(key) != (plan.source, plan.target):
                continue  # overtaken by a failure of the source
            del self.handoff[key]
            if not released:
                self.fenced[key] = plan.source
            elif self.membership.is_live(plan.target):
                self._own(key, plan.target, now)
            # else: the newcomer left meanwhile and nobody holds the key: placed anew on next use

    def removed(self, holder: Holder) -> list[FileKey]:
        """A streamer failed or left: fence its keys (and keys it was releasing)."""
        self.closed_before.pop(holder, None)
        fenced = [key for key, owner in self.owner.items() if owner == holder]
        for key in fenced:
            self._disown(key)
            self.fenced[key] = holder
        for key, (source, _target) in list(self.handoff.items()):
            if source == holder:
                del self.handoff[key]
                self.fenced[key] = holder
                fenced.append(key)
            # a hand-off *to* the removed streamer finishes normally and leaves the key unowned
        return fenced

    def unfence(self, holder: Holder) -> list[FileKey]:
        """`holder` can no longer write (it left with its files closed): the keys fenced on it are
        unowned now, placed anew on their next use. The keys freed."""
        freed = [key for key, fenced_on in self.fenced.items() if fenced_on == holder]
        for key in freed:
            del self.fenced[key]
        return freed

    def keys_of(self, holder: Holder) -> list[FileKey]:
        return sorted(key for key, owner in self.owner.items() if owner == holder)
