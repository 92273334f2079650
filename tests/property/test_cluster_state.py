"""Stateful property: across joins, crashes, leaves, partitions, restarts and clock ticks, no file key ever
has two streamers allowed to write it, every line goes to its key's single owner, and no
acknowledged line is lost.

The machine drives the mediator's real decision core (`ClusterState`: membership, leases,
placement, ownership, hand-off) with a fake clock, beside a small model of each streamer around its
real `Lease` (logstream/streamer/lease.py: numbered pings, the mediator incarnation it last saw, the
link, a lease running from the receipt of an acked ping) on its own clock (running up to 10% off the
mediator's), the files it holds open (and locked), and one shared disk. A ping may also time out at
the mediator and reach its streamer any time later (`ping_times_out` then `deliver_held_up`), with a
forward sent behind it.
Streamers close files idle for a while; their ping answers report how long their oldest open file
has been idle, and the mediator forgets keys idle for KEY_IDLE that their owner reported closed,
never one with a forward in flight (`begin_forward` ... `end_forward`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from logstream.mediator.membership import Holder, Registered
from logstream.mediator.ownership import Handoff, NoStreamers, Wait
from logstream.keys.paths import FileKey
from logstream.mediator.state import ClusterState
from logstream.streamer.lease import Lease

INTERVAL = 1.0
LEASE = 1.5
PING_TIMEOUT = 0.5
KEYS = [FileKey("app", "f0"), FileKey("app", "f1"), FileKey("", "root"), FileKey("a/b", "c")]
N_STREAMERS = 3
KEY_IDLE = 1.0


class StreamerClock:
    """A streamer's clock: `rate` streamer seconds per mediator second, read at mediator time `at`
    (set before each event the streamer handles)."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.at = 0.0

    def __call__(self) -> float:
        return self.at * self.rate


@dataclass
class Streamer:
    id: str
    addr: str
    rate: float  # streamer seconds per mediator second: its lease lasts LEASE / rate real seconds
    alive: bool = False
    reachable: bool = True
    clock: StreamerClock = field(init=False)
    lease: Lease = field(init=False)  # the streamer's own class; a new one for each process
    held: set[FileKey] = field(default_factory=set)  # files open and locked
    # Keys open under the previous mediator when a new one first pinged: reported in ping answers
    # until the new mediator grants a lease (a restarted mediator keeps them here at once).
    reported: set[FileKey] = field(default_factory=set)
    switch_until: float = float("-inf")  # its lease's end when it last switched mediator (its clock)
    written_at: dict[FileKey, float] = field(default_factory=dict)  # last write of each key (mediator time)
    stopping: bool = False  # left its mediator (step 1) and not yet exited

    def __post_init__(self) -> None:
        self.clock = StreamerClock(self.rate)
        self.new_process()

    def new_process(self) -> None:
        self.lease = Lease(required=True, clock=self.clock)
        self.held, self.reported, self.switch_until = set(), set(), float("-inf")

    def oldest_open_age(self, at: float) -> float:
        """What its ping answer at `at` reports, on its own clock: how long its least recently
        written open file has been idle (0 with none open)."""
        if not self.held:
            return 0.0
        return (at - min(self.written_at[key] for key in self.held)) * self.rate

    @property
    def holder(self) -> Holder:
        return Holder(self.id, self.addr)

    def lease_live(self, now: float) -> bool:
        self.clock.at = now
        return self.alive and self.lease.may_write()

    def lease_left_s(self, now: float, until: float) -> float:
        """What is left at `now` of a lease that ran until `until` (on its clock), in its seconds."""
        self.clock.at = now
        return self.lease.left_s(until)


class ClusterMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0
        self.incarnation = 0
        self.mediator_id = "m0"
        # No mediator ran before this one, so no lease exists: no start-up grace is needed.
        self.state = ClusterState(LEASE, PING_TIMEOUT, self.now, restart_grace_s=0.0)
        self.streamers: list[Streamer] = []
        self.disk: dict[FileKey, list[tuple[int, str]]] = {}  # key -> [(line id, writer id)]
        self.acked: dict[int, FileKey] = {}
        self.pending_handoffs: list[Handoff] = []
        self.next_line = 0
        self.port = 9000
        self.seq = 0  # ping numbers, unique per mediator incarnation
        self.link_acked: dict[Holder, int] = {}  # the mediator's last acked ping per link
        self.prior_listed: tuple[set[Holder], float] = (set(), float("-inf"))  # the ledger's holders
        # Messages held up in the network on the way to each streamer, in send order (one connection).
        self.held_up: dict[int, list[tuple[str, int, int, str, FileKey | None, int]]] = {}  # ..., link
        # Forwards sent and not yet ended: (owner, key, line). The router's StreamerLink.pending.
        self.inflight: list[tuple[Holder, FileKey, int, int]] = []  # ... and the link it was sent on
        # The router's links: a new one (a higher number) each time a holder registers anew.
        self.link_of: dict[Holder, int] = {}
        self.links_made = 0

    @initialize(rates=st.lists(st.sampled_from([1 / 1.1, 0.95, 1.0, 1.05, 1.1]), min_size=N_STREAMERS,
                               max_size=N_STREAMERS), shared_locks=st.booleans(),
                live_at_start=st.integers(0, N_STREAMERS))
    def setup(self, rates: list[float], shared_locks: bool, live_at_start: int = 0) -> None:
        # One host (flock is a last guard) or many (only the leases keep writers apart).
        self.shared_locks = shared_locks
        for index, rate in enumerate(rates):
            self.streamers.append(Streamer(f"s{index}", f"h:{self.port + index}", rate))
        # Often start from a running cluster: failures take streamers away faster than the rules
        # bring them up, so a machine started empty spends most steps with none live.
        for index in range(live_at_start):
            self.bring_up(index, 0.0)

    # -- the streamers' side of the protocol -------------------------------------------------

    def _lapse(self) -> None:
        """A streamer whose lease lapsed closes (and unlocks) every file."""
        for streamer in self.streamers:
            if not streamer.lease_live(self.now):
                streamer.held.clear()

    def _link(self, holder: Holder) -> int:
        if holder not in self.link_of:
            self.links_made += 1
            self.link_of[holder] = self.links_made
        return self.link_of[holder]

    def _register(self, streamer_id: str, addr: str) -> Registered:
        outcome = self.state.register(streamer_id, addr, self.now)
        if outcome.new:
            self.link_of.pop(outcome.holder, None)  # the router opens a new link to it
        return outcome

    def _receive_ping(self, streamer: Streamer, seq: int, acked_seq: int, mediator_id: str, at: float,
                      link: int = 0, for_id: str = "") -> None:
        """The streamer's Ping handler (streamer/service.py) around its real `Lease`. Every ping
        counts as handled in time (`in_time`), a late one too: the worst case for the lease."""
        streamer.clock.at = at
        # A ping for another id (a forged registration) names no link of its own.
        effect = streamer.lease.on_ping(int(LEASE * 1000), mediator_id, int(INTERVAL * 1000), seq, acked_seq,
                                        in_time=True, link=link if for_id == streamer.id else 0)
        if effect.release_all:  # a new mediator: what it held is reported to it, then released
            streamer.reported = set(streamer.held) if streamer.lease.remaining_s() > 0 else set()
            streamer.switch_until = streamer.lease.until
            streamer.held.clear()
        if effect.granted:
            streamer.reported = set()

    def _send_ping(self, streamer: Streamer, target: Holder) -> tuple[int, int]:
        self.seq += 1
        self.state.ping_sent(target, self.now)
        return self.seq, self.link_acked.get(target, 0)

    def _write(self, streamer: Streamer, key: FileKey, line: int, link: int) -> str:
        if not streamer.alive or not streamer.reachable:
            return "unreachable"
        if streamer.lease.link and link != streamer.lease.link:
            return "stale link"  # FAILED_PRECONDITION: sent on a link that has ended
        if not streamer.lease_live(self.now):
            return "no lease"
        if self.shared_locks and any(key in other.held for other in self.streamers
                                     if other is not streamer and other.alive):
            return "aborted"  # the file lock is held elsewhere
        streamer.held.add(key)
        streamer.written_at[key] = self.now
        self.disk.setdefault(key, []).append((line, streamer.id))
        return "ok"

    # -- rules ---------------------------------------------------------------------------------

    @rule(index=st.integers(0, N_STREAMERS - 1))
    def start_and_register(self, index: int) -> None:
        streamer = self.streamers[index]
        if streamer.stopping:
            return  # a stopping streamer registers no more
        if not streamer.alive:
            streamer.alive, streamer.reachable = True, True
            streamer.new_process()
            self.held_up.pop(index, None)  # a new process: the old connection's bytes are gone
        if streamer.reachable:
            self._register(streamer.id, streamer.addr)

    @rule(index=st.integers(0, N_STREAMERS - 1), delay=st.sampled_from([0.0, PING_TIMEOUT * 0.99]))
    def bring_up(self, index: int, delay: float) -> None:
        """Start (if needed), register and answer the first ping: a live streamer in one step."""
        self.start_and_register(index)
        self.ping(index, delay)

    @rule(index=st.integers(0, N_STREAMERS - 1))
    def restart_on_new_port(self, index: int) -> None:
        streamer = self.streamers[index]
        streamer.alive, streamer.reachable, streamer.held, streamer.stopping = False, True, set(), False
        self.port += 10
        streamer.addr = f"h:{self.port}"
        self.start_and_register(index)

    @rule(index=st.integers(0, N_STREAMERS - 1))
    def crash_or_leave(self, index: int) -> None:
        streamer = self.streamers[index]
        streamer.alive, streamer.stopping = False, False
        streamer.held.clear()  # the process is gone: its locks with it

    @rule(index=st.integers(0, N_STREAMERS - 1))
    def leave_begins(self, index: int) -> None:
        """A streamer stopped on purpose (docs/cluster-protocol.md, "Leaving") stops registering and
        sends step 1 (when the mediator can be reached): nothing more is routed to it. It still
        serves what reaches it until it stops (`leave_ends`)."""
        streamer = self.streamers[index]
        if streamer.alive and not streamer.stopping:
            streamer.stopping = True
            if streamer.reachable:
                self.state.leaving(streamer.holder)

    @precondition(lambda self: any(s.stopping for s in self.streamers))
    @rule(data=st.data(), finish=st.booleans())
    def leave_ends(self, data: st.DataObject, finish: bool) -> None:
        """Its server stops, letting forwards in flight to it finish (written if it may; their outcome
        is unknown to the mediator, which closed its link); it closes every file and exits; step 2
        frees its keys at once, or it dies before that (`finish` False) and they wait for its lease."""
        streamer = data.draw(st.sampled_from([s for s in self.streamers if s.stopping]))
        holder = streamer.holder
        for item in [item for item in self.inflight if item[0] == holder]:
            self.inflight.remove(item)
            self._write(streamer, item[1], item[2], item[3])
        streamer.alive, streamer.stopping = False, False
        streamer.held.clear()
        if finish and streamer.reachable:
            self.state.left(holder)

    @rule(index=st.integers(0, N_STREAMERS - 1))
    def partition(self, index: int) -> None:
        self.streamers[index].reachable = False

    @rule(index=st.integers(0, N_STREAMERS - 1))
    def heal(self, index: int) -> None:
        self.streamers[index].reachable = True

    @rule(dt=st.sampled_from([0.05, 0.25, 0.5, 1.0, 2.0]))
    def tick(self, dt: float) -> None:
        self.now += dt
        self._lapse()

    @precondition(lambda self: self.state.ownership.fenced)
    @rule()
    def tick_to_fence_end(self) -> None:
        """Jump to the first instant a fenced key may be placed anew: the boundary that matters."""
        membership = self.state.membership
        end = min(membership.surely_expired_at(h) for h in self.state.ownership.fenced.values())
        if end > self.now:
            self.now = end
            self._lapse()

    @rule(ledger=st.booleans())
    def restart_mediator(self, ledger: bool = False) -> None:
        # The ledger lists what the router records before every ping: members, candidates and
        # removed holders whose lease may still live.
        # The previous run's own list stays in it while that run's leases may live.
        old = self.state.membership
        listed = {*old.holders(), *(h for h, sent in old.last_ping_sent.items() if sent + old.expiry_bound_s > self.now)}
        prior, prior_until = self.prior_listed
        if self.now < prior_until:
            listed |= prior
        self.prior_listed = (listed, self.now + old.expiry_bound_s)
        self.incarnation += 1
        self.mediator_id = f"m{self.incarnation}"
        self.state = ClusterState(LEASE, PING_TIMEOUT, self.now)
        if ledger:
            self.state.expect(listed)
        self.pending_handoffs = []
        self.link_acked = {}

    @rule(index=st.integers(0, N_STREAMERS - 1), delay=st.sampled_from([0.0, PING_TIMEOUT * 0.99]))
    def ping(self, index: int, delay: float = 0.0) -> None:
        """One health check of one member and of any candidate under its id (the real loop pings all
        every interval): a ping, then one acking it, each received `delay` after it was sent
        (before its deadline) and answered."""
        streamer = self.streamers[index]
        membership = self.state.membership
        member = membership.members.get(streamer.id)
        targets = [member.holder] if member is not None else []
        targets += [holder for holder in membership.candidates if holder.id == streamer.id]
        for target in targets:
            self._ping_target(streamer, target, delay)

    def _ping_target(self, streamer: Streamer, target: Holder, delay: float) -> None:
        reported: set[FileKey] = set()
        sent = self.now
        for _ in range(2):
            seq, acked = self._send_ping(streamer, target)
            reached = streamer.alive and streamer.reachable and target.addr == streamer.addr
            if not reached:
                self.state.failed(target)
                return
            self._receive_ping(streamer, seq, acked, self.mediator_id, self.now + delay, self._link(target), target.id)
            reported |= streamer.reported  # in the answer (the first, before the lease is granted)
            self.link_acked[target] = seq  # answered before its deadline
        self.state.promote(target)  # a candidate that answered replaces the holders it displaces
        # What is left of the lease it held when it switched, on its own clock.
        lease_left_s = streamer.lease_left_s(self.now, streamer.switch_until)
        # Its answer's report of which files are closed, read as the router does (its clock may run
        # 10% off): every key it was last sent before `closed_before` is closed there.
        closed_before = sent - 1.1 * streamer.oldest_open_age(self.now + delay)
        plans = self.state.ping_answered(target, self.now, held=sorted(reported), held_lease_s=lease_left_s,
                                         closed_before=closed_before)
        self.pending_handoffs.extend(plans or [])

    @rule(index=st.integers(0, N_STREAMERS - 1), same_address=st.booleans())
    def forged_registration(self, index: int, same_address: bool) -> None:
        """Register(id=s_i, addr=nobody's), or another id on s_i's address, while nobody new serves
        there: a live s_i keeps its keys until that address answers a ping, and then it cannot."""
        streamer = self.streamers[index]
        live = self.state.membership.is_live(streamer.holder)
        owned = {key for key, owner in self.state.ownership.owner.items() if owner == streamer.holder}
        forged = (f"forger{index}", streamer.addr) if same_address else (streamer.id, "h:1")
        outcome = self._register(*forged)
        if live:
            assert outcome.candidate and not outcome.replaced
            assert self.state.membership.is_live(streamer.holder)
            assert owned == {k for k, o in self.state.ownership.owner.items() if o == streamer.holder}
        if outcome.new:
            # Its ping fails: nobody serves "h:1", and at s_i's address s_i answers with its own id.
            self.state.ping_sent(outcome.holder, self.now)
            self.state.failed(outcome.holder)
        if live:
            assert self.state.membership.is_live(streamer.holder)
            assert owned == {k for k, o in self.state.ownership.owner.items() if o == streamer.holder}

    @rule(index=st.integers(0, N_STREAMERS - 1), key=st.sampled_from(KEYS), with_forward=st.booleans())
    def ping_times_out(self, index: int, key: FileKey, with_forward: bool) -> None:
        """The network to a streamer stalls: a ping, maybe followed by a forward of `key` sent
        before the ping's deadline, is held up; the mediator gives up on the streamer when the ping
        times out. Both may still arrive, in order, at any later time (`deliver_held_up`)."""
        self._stall(index, [key] if with_forward else [])

    def _stall(self, index: int, keys: list[FileKey]) -> None:
        streamer = self.streamers[index]
        holder = self.state.membership.members.get(streamer.id)
        if holder is None:
            return
        seq, acked = self._send_ping(streamer, holder.holder)
        queue = self.held_up.setdefault(index, [])
        link = self._link(holder.holder)
        queue.append(("ping", seq, acked, self.mediator_id, None, link))
        for key in keys:
            if self.state.route(key, self.now) == holder.holder:
                self.next_line += 1
                queue.append(("forward", self.next_line, 0, self.mediator_id, key, link))  # never acknowledged
        self.state.failed(holder.holder)

    @precondition(lambda self: any(self.held_up.values()))
    @rule(data=st.data())
    def deliver_held_up(self, data: st.DataObject) -> None:
        index = data.draw(st.sampled_from(sorted(i for i, queue in self.held_up.items() if queue)))
        kind, number, acked, mediator_id, key, link = self.held_up[index].pop(0)
        streamer = self.streamers[index]
        if not (streamer.alive and streamer.reachable):
            return
        if kind == "ping":
            self._receive_ping(streamer, number, acked, mediator_id, self.now, link, streamer.id)
        elif key is not None:
            self._write(streamer, key, number, link)

    @precondition(lambda self: len(self.state.live()) > 1 and self.state.ownership.owner)
    @rule(data=st.data())
    def stall_until_its_keys_moved(self, data: st.DataObject) -> None:
        """The boundary late delivery is about, in one step: the network to a streamer stalls
        with a ping and a forward of each of its keys in flight, stays stalled until its keys'
        fence ends and they are placed anew, then delivers all. Only the acked ping's receipt may
        start a lease: counted from the late ping's own arrival, the stalled forwards are written
        beside the keys' new owners."""
        owner = data.draw(st.sampled_from(sorted(set(self.state.ownership.owner.values()))))
        index = next((i for i, s in enumerate(self.streamers) if s.holder == owner), None)
        if index is None:
            return  # that process is gone (its streamer runs at another address now)
        self._stall(index, KEYS)
        if self.held_up.get(index) and self.state.ownership.fenced:
            self.tick_to_fence_end()
            self.health_tick(0.0)  # the others' leases renewed meanwhile (the stalled one is not pinged)
            self.route_each()
            while self.held_up.get(index):
                self.deliver_held_up(_Always(index))  # type: ignore[arg-type]

    @rule(delay=st.sampled_from([0.0, PING_TIMEOUT * 0.99]))
    def health_tick(self, delay: float) -> None:
        """The real loop: ping every member."""
        for index in range(N_STREAMERS):
            self.ping(index, delay)

    @precondition(lambda self: self.pending_handoffs)
    @rule(data=st.data(), partitioned_now=st.booleans())
    def finish_handoff(self, data: st.DataObject, partitioned_now: bool) -> None:
        """Release on the old owner (no forwards are in flight in this synchronous model), maybe
        just as the network between them fails."""
        plan = self.pending_handoffs.pop(data.draw(st.integers(0, len(self.pending_handoffs) - 1)))
        # The router drains the keys' forwards to the old owner before it asks for the release.
        for index in reversed(range(len(self.inflight))):
            if self.inflight[index][0] == plan.source and self.inflight[index][1] in plan.keys:
                self.end_forward(_Always(index))  # type: ignore[arg-type]
        source = next((s for s in self.streamers if s.holder == plan.source), None)
        if partitioned_now and source is not None:
            source.reachable = False
        released = source is not None and source.alive and source.reachable
        if released and source is not None:
            source.held.difference_update(plan.keys)
        elif source is not None and not source.alive:
            released = False  # a dead process cannot answer; its lease must lapse
        self.state.handoff_done(plan, released, self.now)

    @rule(key=st.sampled_from(KEYS), reply_lost=st.booleans())
    def route(self, key: FileKey, reply_lost: bool) -> None:
        line = self.next_line
        self.next_line += 1
        target = self.state.route(key, self.now)
        if isinstance(target, (Wait, NoStreamers)):
            return  # the caller waits or gets UNAVAILABLE; nothing acknowledged
        streamer = next(s for s in self.streamers if s.id == target.id)
        # Every routed line goes to the key's single owner.
        assert self.state.ownership.owner.get(key) == target
        outcome = self._write(streamer, key, line, self._link(target)) if streamer.addr == target.addr else "unreachable"
        if outcome in ("ok", "aborted") and not reply_lost:
            self.state.ownership.active(key, self.now)  # the forward ended (the router's _done)
        if outcome == "ok" and not reply_lost:
            self.acked[line] = key
        elif outcome in ("unreachable", "no lease") or (outcome == "ok" and reply_lost):
            self.state.failed(target)  # outcome unknown or owner unusable: fence its keys

    @rule(key=st.sampled_from(KEYS))
    def begin_forward(self, key: FileKey) -> None:
        """A forward of `key` leaves for its owner and is not answered yet."""
        target = self.state.route(key, self.now)
        if isinstance(target, Holder) and not any(h == target and k == key for h, k, _, _ in self.inflight):
            self.next_line += 1
            self.inflight.append((target, key, self.next_line, self._link(target)))

    @precondition(lambda self: self.inflight)
    @rule(data=st.data())
    def end_forward(self, data: st.DataObject) -> None:
        """The forward arrives (written if its streamer may) and its answer comes back; if the
        owner was removed meanwhile its outcome stays unknown (the write may still happen)."""
        holder, key, line, link = self.inflight.pop(data.draw(st.integers(0, len(self.inflight) - 1)))
        streamer = next((s for s in self.streamers if s.holder == holder), None)
        outcome = self._write(streamer, key, line, link) if streamer is not None else "unreachable"
        if not self.state.membership.is_live(holder):
            return
        if outcome == "ok":
            self.acked[line] = key
        if outcome in ("ok", "aborted"):
            self.state.ownership.active(key, self.now)
        else:
            self.state.failed(holder)

    @rule(index=st.integers(0, N_STREAMERS - 1), idle=st.sampled_from([0.25, 1.0, 3.0]))
    def streamer_closes_idle_files(self, index: int, idle: float) -> None:
        """The streamer's -idle-close (on its own clock)."""
        streamer = self.streamers[index]
        streamer.held = {k for k in streamer.held if (self.now - streamer.written_at[k]) * streamer.rate < idle}

    @rule()
    def forget_idle(self) -> None:
        owners = dict(self.state.ownership.owner)
        busy = {(holder, key) for holder, key, _, _ in self.inflight}
        forgotten = self.state.forget_idle(self.now, KEY_IDLE, lambda holder, key: (holder, key) in busy)
        for key in forgotten:
            assert (owners.get(key), key) not in busy, f"{key} forgotten with a forward in flight"
            owner = owners.get(key)
            if owner is not None:
                streamer = next((s for s in self.streamers if s.holder == owner), None)
                if streamer is None:
                    continue  # that process is gone (its streamer runs at another address now)
                assert key not in streamer.held or not streamer.lease_live(self.now), \
                    f"{key} forgotten while {owner} holds it open"

    @rule()
    def route_each(self) -> None:
        for key in KEYS:
            self.route(key, reply_lost=False)

    # -- invariants ----------------------------------------------------------------------------

    @invariant()
    def one_writer_per_key(self) -> None:
        for key in KEYS:
            owner = self.state.ownership.owner.get(key)
            writers = {
                s.id
                for s in self.streamers
                if s.lease_live(self.now) and (key in s.held or (owner is not None and owner == s.holder))
            }
            assert len(writers) <= 1, f"{key} writable by {sorted(writers)} at t={self.now}"

    @invariant()
    def acknowledged_lines_on_disk(self) -> None:
        for line, key in self.acked.items():
            assert any(entry[0] == line for entry in self.disk.get(key, [])), f"line {line} of {key} lost"

    @invariant()
    def states_disjoint(self) -> None:
        ownership = self.state.ownership
        owned, fenced, moving = set(ownership.owner), set(ownership.fenced), set(ownership.handoff)
        assert not (owned & fenced) and not (owned & moving) and not (fenced & moving)
        for holder in ownership.owner.values():
            assert self.state.membership.is_live(holder), f"{holder} owns keys but is not live"
        assert list(ownership.last_active) == sorted(ownership.last_active, key=ownership.last_active.__getitem__)
        assert set(ownership.last_active) == owned


TestClusterState = ClusterMachine.TestCase
# Example counts and deadline come from the dev / ci profile (tests/conftest.py).
TestClusterState.settings = settings(stateful_step_count=50)


class _Always:
    """A stand-in for st.data() in the scripted run below: every draw gives `value`."""

    def __init__(self, value: object) -> None:
        self.value = value

    def draw(self, strategy: object) -> object:
        return self.value


def test_a_held_up_ping_and_forward_cannot_make_a_second_writer() -> None:
    """The scripted partition the numbered pings exist for (docs/cluster-protocol.md): s0's network
    stalls with a ping and then a forward of K in flight; the mediator fences K, waits out s0's
    lease and moves K to s1; then the stalled bytes arrive. Were the lease counted from the late
    ping's receipt, s0 would write K beside s1 (hosts apart, no shared lock to stop it)."""
    machine = ClusterMachine()
    key = KEYS[0]
    machine.setup(rates=[1.0] * N_STREAMERS, shared_locks=False)
    machine.bring_up(0, 0.0)
    machine.route(key, reply_lost=False)
    assert machine.state.ownership.owner.get(key) == machine.streamers[0].holder
    machine.ping_times_out(0, key, with_forward=True)
    assert len(machine.held_up[0]) == 2
    machine.tick_to_fence_end()
    machine.bring_up(1, 0.0)
    machine.route(key, reply_lost=False)
    assert machine.state.ownership.owner.get(key) == machine.streamers[1].holder
    for _ in range(2):
        machine.deliver_held_up(_Always(0))  # type: ignore[arg-type]  # s0's queue
        machine.one_writer_per_key()
    assert [writer for _, writer in machine.disk[key]] == ["s0", "s1"]


def test_a_restarted_mediator_routes_a_reported_key_at_once_and_keeps_one_writer() -> None:
    machine = ClusterMachine()
    key = KEYS[0]
    machine.setup(rates=[1.0] * N_STREAMERS, shared_locks=False)
    machine.bring_up(0, 0.0)
    machine.bring_up(1, 0.0)
    machine.route(key, reply_lost=False)
    owner = machine.state.ownership.owner[key]
    machine.restart_mediator()
    for index in (0, 1):  # both answer the new mediator; only the key's writer reports it
        machine.start_and_register(index)
        machine.ping(index, 0.0)
    assert machine.state.route(key, machine.now) == owner  # within the start-up grace
    assert machine.state.route(KEYS[1], machine.now) is Wait.GRACE
    machine.route(key, reply_lost=False)
    machine.one_writer_per_key()
    assert [writer for _, writer in machine.disk[key]] == [owner.id, owner.id]


def test_a_forward_held_up_until_its_streamer_is_leased_again_is_refused() -> None:
    """Like the scripted partition above, but s0 registers again and gets a new lease before the
    stalled bytes arrive: the old forward (same mediator, lease live) would be written by s0 while
    s1 owns the key, but it carries its ended link and is refused."""
    machine = ClusterMachine()
    key = KEYS[0]
    machine.setup(rates=[1.0] * N_STREAMERS, shared_locks=False)
    machine.bring_up(0, 0.0)
    machine.route(key, reply_lost=False)
    machine.ping_times_out(0, key, with_forward=True)
    machine.tick_to_fence_end()
    machine.bring_up(1, 0.0)
    machine.route(key, reply_lost=False)
    machine.bring_up(0, 0.0)
    for _ in range(2):
        machine.deliver_held_up(_Always(0))  # type: ignore[arg-type]
    machine.one_writer_per_key()
