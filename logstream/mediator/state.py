"""The mediator's whole decision state: membership + ownership behind one pure facade.

The router (I/O) reports what happened (a registration, a ping answered or failed, a forward
failed, a release done) and asks where a key goes; the stateful Hypothesis test drives this same
object with a fake clock beside a model of the streamers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from logstream.config.timings import outlived_s
from logstream.mediator.membership import Holder, Membership, Registered
from logstream.mediator.ownership import Handoff, Ownership, Route
from logstream.mediator.placement import FileKey


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
        return self.ownership.forget_idle(now, idle_s, busy)

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

    def live(self) -> list[Holder]:
        return self.membership.live()
