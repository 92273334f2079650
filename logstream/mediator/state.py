"""The mediator's whole decision state: membership + ownership behind one pure facade.

The router (I/O) reports what happened (a registration, a ping answered or failed, a forward
failed, a release done) and asks where a key goes; the stateful Hypothesis test drives this same
object with a fake clock beside a model of the streamers. This is the router's one door to the
state: it never reaches into `membership` or `ownership` (questions here change nothing; commands
say what they change).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable

from logstream.config.timings import outlived_s
from logstream.mediator.membership import Holder, Member, Membership, Registered
from logstream.mediator.ownership import Handoff, Ownership, Route
from logstream.keys.paths import FileKey


class ClusterState:
    def __init__(self, lease_s: float, ping_timeout_s: float, now: float, restart_grace_s: float | None = None,
                 max_keys: int = 0) -> None:
        self.membership = Membership(lease_s, ping_timeout_s)
        # After a (re)start, place nothing until any lease a previous mediator granted has surely
        # expired; by default the bound this mediator uses itself (same settings assumed).
        grace = self.membership.expiry_bound_s if restart_grace_s is None else restart_grace_s
        self.ownership = Ownership(self.membership, grace_until=now + grace, max_keys=max_keys)
        # Every streamer that may still hold a previous mediator's lease (from the ledger), and
        # when that lease surely ends by its own report (None: not answered yet).
        self.awaited: dict[Holder, float | None] = {}

    def expect(self, holders: Iterable[Holder]) -> None:
        """The previous run's streamers, from its ledger: all that may hold one of its leases."""
        self.awaited = {holder: None for holder in holders}

    def _lease_reported(self, holder: Holder, now: float, lease_left_s: float) -> bool:
        """An awaited streamer reported how long the previous mediator's lease still ran when it
        switched (`lease_left_s`, on its clock, hence the 10%). Once all have, the grace ends when
        the last of those leases does: no other streamer can hold one. True if it was shortened."""
        if self.awaited.get(holder, 0.0) is not None:
            return False
        self.awaited[holder] = now + outlived_s(max(0.0, lease_left_s))
        ends = list(self.awaited.values())
        if any(end is None for end in ends):
            return False
        last = max(end for end in ends if end is not None)
        if last >= self.ownership.grace_until:
            return False
        self.ownership.grace_until = last
        return True

    def register(self, streamer_id: str, addr: str, now: float) -> Registered:
        outcome = self.membership.register(streamer_id, addr, now)
        for old in outcome.replaced:
            self.ownership.removed(old)
        return outcome

    def promote(self, holder: Holder) -> tuple[Holder, ...]:
        """A candidate answered a ping: it replaces the holders returned, whose keys are fenced."""
        replaced = self.membership.promote(holder)
        for old in replaced:
            self.ownership.removed(old)
        return replaced

    def ping_sent(self, holder: Holder, now: float) -> None:
        self.membership.ping_sent(holder, now)

    def ping_answered(self, holder: Holder, now: float, lines: int = 0, nbytes: int = 0,
                      open_files: int = 0, held: list[FileKey] | None = None,
                      held_lease_s: float = 0.0, closed_before: float | None = None) -> list[Handoff] | None:
        """None when nothing changed; the hand-offs to run when the streamer just became live.

        `held`: keys it had open under the previous mediator (see `Ownership.claimed`);
        `held_lease_s`: what was left of that mediator's lease then (see `expect`);
        `closed_before`: every key it was last sent before then is closed there (see
        `Ownership.forget_idle`)."""
        if self.membership.member(holder) is not None:
            self._lease_reported(holder, now, held_lease_s)
            if closed_before is not None:
                self.ownership.reported_closed(holder, closed_before)
        if self.membership.ping_ok(holder, now, lines, nbytes, open_files):
            if held:
                self.ownership.claimed(holder, held, now)
            return self.ownership.joined(holder, now)
        return None

    def forget_idle(self, now: float, idle_s: float, busy: Callable[[Holder, FileKey], bool]) -> list[FileKey]:
        """Forget idle keys (see `Ownership.forget_idle`), and the lease bookkeeping of removed
        streamers whose leases have surely expired."""
        forgotten = self.ownership.forget_idle(now, idle_s, busy)
        self.membership.forget_expired(now)
        return forgotten

    def keys_active(self, keys: Iterable[FileKey], now: float) -> None:
        """Forwards of `keys` ended (written or refused): their owners wrote them last before `now`."""
        active = self.ownership.active
        for key in keys:
            active(key, now)

    def record_stats(self, holder: Holder, lines: int, nbytes: int, open_files: int) -> None:
        """A member's counters as it reported them (outside a ping: a status refresh)."""
        member = self.membership.member(holder)
        if member is not None:
            member.lines, member.bytes, member.open_files = lines, nbytes, open_files

    def failed(self, holder: Holder) -> list[FileKey] | None:
        """Remove a streamer (failed ping or forward); None if it was not a member."""
        if self.membership.remove(holder) is None:
            return None
        return self.ownership.removed(holder)

    def leaving(self, holder: Holder) -> list[FileKey] | None:
        """A streamer stops on purpose (first step of a leave): no more pings or keys for it, and
        its keys wait (fenced) until it says its files are closed; None if it was not a member."""
        return self.failed(holder)

    def left(self, holder: Holder) -> list[FileKey]:
        """A streamer that left has stopped serving and closed every file: nothing of it can write
        any more, so its keys are free now rather than when its lease surely lapsed. A member
        (the first step was missed, e.g. by a restarted mediator) is removed first. The keys freed."""
        if self.membership.member(holder) is not None:
            self.failed(holder)
        return self.ownership.unfence(holder)

    def route(self, key: FileKey, now: float) -> Route:
        return self.ownership.route(key, now)

    def handoff_done(self, plan: Handoff, released: bool, now: float) -> None:
        self.ownership.handoff_done(plan, released, now)
        if not released:
            self.failed(plan.source)

    # -- questions (no side effects) ------------------------------------------------------------

    def live(self) -> list[Holder]:
        return self.membership.live()

    def is_live(self, holder: Holder) -> bool:
        return self.membership.is_live(holder)

    def is_member(self, holder: Holder) -> bool:
        return self.membership.member(holder) is not None

    def knows_id(self, streamer_id: str) -> bool:
        return streamer_id in self.membership.members

    def to_ping(self) -> list[Holder]:
        """Every member and candidate: the holders the health loop pings."""
        return self.membership.holders()

    def members(self) -> list[Member]:
        """Copies of the members, by id (for status; /metrics asks from another thread, hence the
        copy of the table before iterating it)."""
        return [dataclasses.replace(m) for m in sorted(self.membership.members.copy().values(),
                                                       key=lambda m: m.holder.id)]

    def keys_of(self, holder: Holder) -> list[FileKey]:
        return self.ownership.keys_of(holder)

    @property
    def expiry_bound_s(self) -> float:
        """How long after the last ping sent to a streamer its lease has surely expired."""
        return self.membership.expiry_bound_s

    def surely_expired_at(self, holder: Holder) -> float:
        return self.membership.surely_expired_at(holder)

    def may_hold_leases(self, now: float) -> list[Holder]:
        """Every streamer that may hold a lease now: members, candidates, and removed ones whose
        lease may not have surely expired (the ledger lists them all for a restart's sake)."""
        membership = self.membership
        bound = membership.expiry_bound_s
        removed = [h for h, sent in membership.last_ping_sent.items() if sent + bound > now]
        return sorted({*membership.holders(), *removed})

    @property
    def grace_until(self) -> float:
        """Until then no key is placed: a previous mediator's leases may still run."""
        return self.ownership.grace_until

    def table_size(self) -> int:
        """Keys in the table: owned, fenced or moving."""
        return self.ownership.size()

    def key_counts(self) -> tuple[int, int]:
        """(keys owned, keys waiting: fenced or in hand-off)."""
        ownership = self.ownership
        return len(ownership.owner), len(ownership.fenced) + len(ownership.handoff)
