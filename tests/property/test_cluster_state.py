"""Stateful property: across joins, crashes, partitions, restarts and clock ticks, no file key ever
has two streamers allowed to write it, every line goes to its key's single owner, and no
acknowledged line is lost.

The machine drives the mediator's real decision core (`ClusterState`: membership, leases,
placement, ownership, hand-off) with a fake clock, beside a small model of each streamer: its own
lease clock (running up to 10% off the mediator's), the mediator incarnation it last saw, the files
it holds open (and locked), and one shared disk. Delivery assumption (docs/cluster-protocol.md):
a ping reaches a streamer before its deadline or never.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from logstream.mediator.membership import Holder
from logstream.mediator.ownership import Handoff, NoStreamers, Wait
from logstream.mediator.placement import FileKey
from logstream.mediator.state import ClusterState

INTERVAL = 1.0
LEASE = 1.5
PING_TIMEOUT = 0.5
KEYS = [FileKey("app", "f0"), FileKey("app", "f1"), FileKey("", "root"), FileKey("a/b", "c")]
N_STREAMERS = 3


@dataclass
class Streamer:
    id: str
    addr: str
    rate: float  # streamer seconds per mediator second: its lease lasts LEASE / rate real seconds
    alive: bool = False
    reachable: bool = True
    lease_until: float = float("-inf")  # in mediator time
    seen_mediator: str | None = None
    held: set[FileKey] = field(default_factory=set)  # files open and locked

    @property
    def holder(self) -> Holder:
        return Holder(self.id, self.addr)

    def lease_live(self, now: float) -> bool:
        return self.alive and now < self.lease_until


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

    @initialize(rates=st.lists(st.sampled_from([1 / 1.1, 0.95, 1.0, 1.05, 1.1]), min_size=N_STREAMERS,
                               max_size=N_STREAMERS))
    def setup(self, rates: list[float]) -> None:
        for index, rate in enumerate(rates):
            self.streamers.append(Streamer(f"s{index}", f"h:{self.port + index}", rate))

    # -- the streamers' side of the protocol -------------------------------------------------

    def _lapse(self) -> None:
        """A streamer whose lease lapsed closes (and unlocks) every file."""
        for streamer in self.streamers:
            if not streamer.lease_live(self.now):
                streamer.held.clear()

    def _receive_ping(self, streamer: Streamer, delay: float) -> None:
        if streamer.seen_mediator != self.mediator_id:
            streamer.held.clear()  # a new mediator: release every key before answering
            streamer.seen_mediator = self.mediator_id
        # Received `delay` after it was sent (before its deadline), the lease runs from receipt.
        streamer.lease_until = max(streamer.lease_until, self.now + delay + LEASE / streamer.rate)

    def _write(self, streamer: Streamer, key: FileKey, line: int) -> str:
        if not streamer.alive or not streamer.reachable:
            return "unreachable"
        if not streamer.lease_live(self.now):
            return "no lease"
        if any(key in other.held for other in self.streamers if other is not streamer and other.alive):
            return "aborted"  # the file lock is held elsewhere
        streamer.held.add(key)
        self.disk.setdefault(key, []).append((line, streamer.id))
        return "ok"

    # -- rules ---------------------------------------------------------------------------------

    @rule(index=st.integers(0, N_STREAMERS - 1))
    def start_and_register(self, index: int) -> None:
        streamer = self.streamers[index]
        if not streamer.alive:
            streamer.alive, streamer.reachable = True, True
            streamer.lease_until, streamer.seen_mediator, streamer.held = float("-inf"), None, set()
        if streamer.reachable:
            self.state.register(streamer.id, streamer.addr, self.now)

    @rule(index=st.integers(0, N_STREAMERS - 1), delay=st.sampled_from([0.0, PING_TIMEOUT * 0.99]))
    def bring_up(self, index: int, delay: float) -> None:
        """Start (if needed), register and answer the first ping: a live streamer in one step."""
        self.start_and_register(index)
        self.ping(index, delay)

    @rule(index=st.integers(0, N_STREAMERS - 1))
    def restart_on_new_port(self, index: int) -> None:
        streamer = self.streamers[index]
        streamer.alive, streamer.reachable, streamer.held = False, True, set()
        self.port += 10
        streamer.addr = f"h:{self.port}"
        self.start_and_register(index)

    @rule(index=st.integers(0, N_STREAMERS - 1))
    def crash_or_leave(self, index: int) -> None:
        streamer = self.streamers[index]
        streamer.alive = False
        streamer.held.clear()  # the process is gone: its locks with it

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

    @rule()
    def restart_mediator(self) -> None:
        self.incarnation += 1
        self.mediator_id = f"m{self.incarnation}"
        self.state = ClusterState(LEASE, PING_TIMEOUT, self.now)
        self.pending_handoffs = []

    @rule(index=st.integers(0, N_STREAMERS - 1), delay=st.sampled_from([0.0, PING_TIMEOUT * 0.99]))
    def ping(self, index: int, delay: float = 0.0) -> None:
        """One health check of one member (the real loop pings all every interval)."""
        streamer = self.streamers[index]
        holder = self.state.membership.members.get(streamer.id)
        if holder is None:
            return
        target = holder.holder
        self.state.ping_sent(target, self.now)
        reached = streamer.alive and streamer.reachable and target.addr == streamer.addr
        if not reached:
            self.state.failed(target)
            return
        self._receive_ping(streamer, delay)
        plans = self.state.ping_answered(target, self.now)
        self.pending_handoffs.extend(plans or [])

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
        source = next((s for s in self.streamers if s.holder == plan.source), None)
        if partitioned_now and source is not None:
            source.reachable = False
        released = source is not None and source.alive and source.reachable
        if released and source is not None:
            source.held.difference_update(plan.keys)
        elif source is not None and not source.alive:
            released = False  # a dead process cannot answer; its lease must lapse
        self.state.handoff_done(plan, released)

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
        outcome = self._write(streamer, key, line) if streamer.addr == target.addr else "unreachable"
        if outcome == "ok" and not reply_lost:
            self.acked[line] = key
        elif outcome in ("unreachable", "no lease") or (outcome == "ok" and reply_lost):
            self.state.failed(target)  # outcome unknown or owner unusable: fence its keys

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


TestClusterState = ClusterMachine.TestCase
TestClusterState.settings = settings(stateful_step_count=50, max_examples=300, deadline=None)
