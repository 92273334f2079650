"""The key -> owner table: sticky assignment, fencing after failures, hand-off on joins. Pure.

A key is in at most one of three states:
- owned by a live streamer: requests go there;
- fenced on a failed streamer: requests wait until that streamer's lease has surely expired (or it
  comes back live, and takes its keys back), then the key is placed anew;
- in hand-off from one streamer to a newcomer: requests wait until the old owner released it.
A key in none of them is placed on first use by rendezvous hashing over the live streamers.
"""

from __future__ import annotations

import enum
from collections import defaultdict
from dataclasses import dataclass, field

from .membership import Holder, Membership
from .placement import FileKey, place


class Wait(enum.Enum):
    """Why a key cannot be routed right now (the request waits, up to -handoff-wait)."""

    HANDOFF = "in hand-off to a new streamer"
    FENCED = "its streamer failed; waiting until that streamer's lease has surely expired"
    GRACE = "the mediator just started; waiting until leases granted by a previous mediator have surely expired"
    ADMITTING = "no streamer is live yet; waiting for registered ones to answer a health check"


class NoStreamers(enum.Enum):
    NONE = "no live streamer"


Route = Holder | Wait | NoStreamers


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
        live = self.membership.live_by_id()
        chosen = place(key, live)
        if chosen is None:
            # Registered streamers (a restarted mediator's, from its ledger or re-registering) are
            # worth waiting for; with none at all the caller learns at once.
            return Wait.ADMITTING if self.membership.members or self.membership.candidates else NoStreamers.NONE
        self.owner[key] = live[chosen]
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
                self.owner[key] = holder
                taken.append(key)
        return taken

    def joined(self, newcomer: Holder) -> list[Handoff]:
        """A streamer became live: give back keys fenced on it, and plan the hand-off of the keys
        that rendezvous hashing now gives it. Requests for those keys wait from now on."""
        for key, holder in list(self.fenced.items()):
            if holder == newcomer:  # the same process is back: it may still hold them
                del self.fenced[key]
                self.owner[key] = newcomer
        live_ids = list(self.membership.live_by_id())
        moving: dict[Holder, list[FileKey]] = defaultdict(list)
        for key, holder in self.owner.items():
            if holder != newcomer and place(key, live_ids) == newcomer.id:
                moving[holder].append(key)
        plans: list[Handoff] = []
        for source, keys in moving.items():
            for key in keys:
                del self.owner[key]
                self.handoff[key] = (source, newcomer)
            plans.append(Handoff(source, newcomer, tuple(keys)))
        return plans

    def handoff_done(self, plan: Handoff, released: bool) -> None:
        """The old owner released the keys (released=True), or failed to (its lease must lapse)."""
        for key in plan.keys:
            if self.handoff.get(key) != (plan.source, plan.target):
                continue  # overtaken by a failure of the source
            del self.handoff[key]
            if not released:
                self.fenced[key] = plan.source
            elif self.membership.is_live(plan.target):
                self.owner[key] = plan.target
            # else: the newcomer left meanwhile and nobody holds the key: placed anew on next use

    def removed(self, holder: Holder) -> list[FileKey]:
        """A streamer failed or left: fence its keys (and keys it was releasing)."""
        fenced = [key for key, owner in self.owner.items() if owner == holder]
        for key in fenced:
            del self.owner[key]
            self.fenced[key] = holder
        for key, (source, _target) in list(self.handoff.items()):
            if source == holder:
                del self.handoff[key]
                self.fenced[key] = holder
                fenced.append(key)
            # a hand-off *to* the removed streamer finishes normally and leaves the key unowned
        return fenced

    def keys_of(self, holder: Holder) -> list[FileKey]:
        return sorted(key for key, owner in self.owner.items() if owner == holder)

    def writers_allowed(self, key: FileKey) -> Holder | None:
        """The one streamer the mediator lets write `key` now, if any."""
        return self.owner.get(key)
