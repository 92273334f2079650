"""Who is in the cluster and when each streamer's lease has surely expired: pure bookkeeping.

Time is passed in (`now`, seconds on the mediator's monotonic clock), so that tests drive it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import NamedTuple

from logstream.config.timings import expiry_bound_s


class Holder(NamedTuple):
    """One streamer process as the mediator knows it: its id and the address it serves.

    Two processes cannot serve one address at once, so (id, addr) names the process that may hold
    leases and open files; a streamer re-registering under a new address is a new holder.
    """

    id: str
    addr: str

    def __str__(self) -> str:
        return f"{self.id}@{self.addr}" if self.id != self.addr else self.addr


class State(enum.Enum):
    PENDING = "pending"  # registered, no ping answered yet: gets no keys
    LIVE = "live"  # answered a ping: eligible for keys


@dataclass
class Member:
    holder: Holder
    state: State
    last_ok: float | None = None  # last answered ping
    lines: int = 0  # as the streamer reported in its last ping answer
    bytes: int = 0
    open_files: int = 0


@dataclass(frozen=True)
class Registered:
    """What `register` did: `holder` is new or refreshed; `replaced` lost its address or id.

    `candidate`: the registration would replace a live holder, so it waits as a candidate until
    its address answers a ping (`promote`); `superseded`: an earlier candidate it replaces.
    """

    holder: Holder
    new: bool
    replaced: tuple[Holder, ...] = ()
    candidate: bool = False
    superseded: tuple[Holder, ...] = ()


@dataclass
class Membership:
    """The registry of streamers and the mediator's conservative view of their leases.

    `surely_expired_at(h)` = last ping sent to `h` + `timings.expiry_bound_s`
    (ping_timeout + 1.1 x lease). A streamer's lease
    runs from its receipt of an *acked* ping (one whose answer came back before its deadline), never
    from a ping's own arrival: a ping may reach it at any later time (held up in a partition), so
    only the acked one's receipt lies before `sent + ping_timeout`. The 10% covers the two clocks
    running at slightly different rates. The argument in full: docs/cluster-protocol.md, "What the
    mediator assumes" and "Late delivery of a ping".
    """

    lease_s: float
    ping_timeout_s: float
    members: dict[str, Member] = field(default_factory=dict)  # by streamer id
    # Registrations that would replace a live holder: not members until they answer a ping.
    candidates: dict[Holder, Member] = field(default_factory=dict)
    # Kept for removed holders too, until their lease has surely expired.
    last_ping_sent: dict[Holder, float] = field(default_factory=dict)

    @property
    def expiry_bound_s(self) -> float:
        return expiry_bound_s(self.ping_timeout_s, self.lease_s)

    def _displaced_by(self, holder: Holder) -> list[Member]:
        """Members that `holder` would replace: its id elsewhere, or another id on its address
        (two processes cannot serve one address, so that one is gone)."""
        return [m for m in self.members.values()
                if m.holder != holder and (m.holder.id == holder.id or m.holder.addr == holder.addr)]

    def register(self, streamer_id: str, addr: str, now: float) -> Registered:
        holder = Holder(streamer_id, addr)
        existing = self.members.get(streamer_id)
        if (existing is not None and existing.holder == holder) or holder in self.candidates:
            return Registered(holder, new=False)
        superseded = tuple(h for h in self.candidates if h.id == streamer_id or h.addr == addr)
        for old in superseded:
            del self.candidates[old]
        displaced = self._displaced_by(holder)
        if any(m.state is State.LIVE for m in displaced):
            # A live holder is removed only once the new address proves a streamer answers there
            # under this id: a registration alone (a mistake, a forgery) cannot fence its keys.
            self.candidates[holder] = Member(holder, State.PENDING)
            return Registered(holder, new=True, candidate=True, superseded=superseded)
        for member in displaced:
            del self.members[member.holder.id]
        self.members[streamer_id] = Member(holder, State.PENDING)
        return Registered(holder, new=True, replaced=tuple(m.holder for m in displaced), superseded=superseded)

    def promote(self, holder: Holder) -> tuple[Holder, ...]:
        """A candidate answered a ping: it becomes a (pending) member; the holders it replaces."""
        candidate = self.candidates.pop(holder, None)
        if candidate is None:
            return ()
        displaced = self._displaced_by(holder)
        for member in displaced:
            del self.members[member.holder.id]
        self.members[holder.id] = candidate
        return tuple(m.holder for m in displaced)

    def member(self, holder: Holder) -> Member | None:
        member = self.members.get(holder.id)
        return member if member is not None and member.holder == holder else None

    def is_live(self, holder: Holder) -> bool:
        member = self.member(holder)
        return member is not None and member.state is State.LIVE

    def live(self) -> list[Holder]:
        return sorted(m.holder for m in self.members.values() if m.state is State.LIVE)

    def live_by_id(self) -> dict[str, Holder]:
        return {m.holder.id: m.holder for m in self.members.values() if m.state is State.LIVE}

    def holders(self) -> list[Holder]:
        """Every member, live or pending, and every candidate: the ones to ping."""
        return sorted([*(m.holder for m in self.members.values()), *self.candidates])

    def ping_sent(self, holder: Holder, now: float) -> None:
        # A candidate's pings count too: promoted, it holds the lease they granted.
        if self.member(holder) is not None or holder in self.candidates:
            previous = self.last_ping_sent.get(holder, now)
            self.last_ping_sent[holder] = max(previous, now)

    def ping_ok(self, holder: Holder, now: float, lines: int = 0, nbytes: int = 0, open_files: int = 0) -> bool:
        """Record an answered ping; True when this made the streamer live."""
        member = self.member(holder)
        if member is None:  # removed while the ping was in flight: it stays removed
            return False
        member.last_ok = now
        member.lines, member.bytes, member.open_files = lines, nbytes, open_files
        if member.state is State.PENDING:
            member.state = State.LIVE
            return True
        return False

    def remove(self, holder: Holder) -> Member | None:
        """Forget a member or candidate (its lease bookkeeping stays until surely expired)."""
        member = self.member(holder)
        if member is not None:
            del self.members[holder.id]
            return member
        return self.candidates.pop(holder, None)

    def surely_expired_at(self, holder: Holder) -> float:
        sent = self.last_ping_sent.get(holder)
        return float("-inf") if sent is None else sent + self.expiry_bound_s

    def surely_expired(self, holder: Holder, now: float) -> bool:
        """Whether no lease `holder` was granted can still run at `now`. A question: changes nothing."""
        if self.is_live(holder):
            return False  # still pinged: its lease keeps being renewed
        return now >= self.surely_expired_at(holder)

    def forget_expired(self, now: float) -> int:
        """Drop the lease bookkeeping of removed holders whose leases have surely expired (they may
        hold nothing any more); how many were dropped."""
        gone = [holder for holder, sent in self.last_ping_sent.items()
                if now >= sent + self.expiry_bound_s and self.member(holder) is None
                and holder not in self.candidates]
        for holder in gone:
            del self.last_ping_sent[holder]
        return len(gone)
