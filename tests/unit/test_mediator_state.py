"""The mediator's decision core at its boundaries: fences, grace, hand-off, re-registration."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import logstream.mediator

from logstream.mediator.membership import Holder
from logstream.mediator.ownership import NoStreamers, TableFull, Wait
from logstream.keys.paths import FileKey
from logstream.keys.placement import place
from logstream.mediator.state import ClusterState

LEASE, TIMEOUT = 1.5, 0.5
BOUND = TIMEOUT + LEASE * 1.1


def live_state(*ids: str, now: float = 0.0) -> ClusterState:
    state = ClusterState(LEASE, TIMEOUT, now, restart_grace_s=0.0)
    for streamer_id in ids:
        registered = state.register(streamer_id, f"127.0.0.1:{9000 + len(state.live())}", now)
        state.ping_sent(registered.holder, now)
        state.ping_answered(registered.holder, now)
    return state


def key_on(state: ClusterState, streamer_id: str) -> FileKey:
    ids = [h.id for h in state.live()]
    return next(k for k in (FileKey("p", f"f{i}") for i in range(1000)) if place(k, ids) == streamer_id)


def test_no_streamer_is_a_clear_answer_not_a_crash() -> None:
    state = ClusterState(LEASE, TIMEOUT, 0.0, restart_grace_s=0.0)
    assert state.route(FileKey("", "a"), 1.0) is NoStreamers.NONE
    registered = state.register("s1", "h:1", 1.0)
    assert state.route(FileKey("", "a"), 1.0) is Wait.ADMITTING  # registered, not yet answered: worth a wait
    state.ping_sent(registered.holder, 1.0)
    state.ping_answered(registered.holder, 1.1)
    assert state.route(FileKey("", "a"), 1.1) == registered.holder
    state.failed(registered.holder)
    assert state.route(FileKey("", "b"), 1.2) is NoStreamers.NONE


def test_a_failed_owners_keys_wait_until_its_lease_has_surely_expired() -> None:
    state = live_state("s1", "s2")
    s1 = next(h for h in state.live() if h.id == "s1")
    key = key_on(state, "s1")
    assert state.route(key, 0.0) == s1
    state.ping_sent(s1, 10.0)  # this ping is never answered
    state.failed(s1)
    assert state.route(key, 10.0 + BOUND - 1e-6) is Wait.FENCED
    new_owner = state.route(key, 10.0 + BOUND)
    assert isinstance(new_owner, Holder) and new_owner.id == "s2"


def test_the_same_streamer_coming_back_takes_its_fenced_keys_back() -> None:
    state = live_state("s1", "s2")
    s1 = next(h for h in state.live() if h.id == "s1")
    key = key_on(state, "s1")
    state.route(key, 0.0)
    state.failed(s1)
    again = state.register("s1", s1.addr, 0.5)
    assert again.holder == s1
    state.ping_sent(s1, 0.5)
    state.ping_answered(s1, 0.6)
    assert state.route(key, 0.6) == s1


def test_a_streamer_back_on_a_new_address_is_a_new_holder_and_fences_the_old() -> None:
    state = live_state("s1")
    s1 = state.live()[0]
    key = FileKey("", "a")
    assert state.route(key, 0.0) == s1
    outcome = state.register("s1", "127.0.0.1:9999", 1.0)
    assert outcome.candidate and outcome.replaced == ()  # s1 is live: nothing changes before a ping
    assert state.route(key, 1.0) == s1
    state.ping_sent(outcome.holder, 1.0)
    assert state.promote(outcome.holder) == (s1,)  # the new address answered
    state.ping_answered(outcome.holder, 1.0)
    assert state.route(key, 1.0) is Wait.FENCED  # the old process may still hold the file
    assert state.route(key, 0.0 + BOUND) == outcome.holder


@pytest.mark.parametrize("addr", ["127.0.0.1:1", "127.0.0.1:9000"])
def test_a_registration_that_never_answers_cannot_remove_a_live_holder(addr: str) -> None:
    """Register(id="s1", addr=elsewhere), or another id on s1's address: s1 keeps its keys until a
    streamer answers there; when the ping fails, only the registration is forgotten."""
    state = live_state("s1")
    s1 = state.live()[0]
    key = FileKey("", "a")
    state.route(key, 0.0)
    outcome = state.register("s1" if addr != s1.addr else "intruder", addr, 1.0)
    assert outcome.candidate
    assert state.route(key, 1.0) == s1 and state.live() == [s1]
    assert outcome.holder in state.membership.holders()  # it gets pinged
    state.ping_sent(outcome.holder, 1.0)
    assert state.failed(outcome.holder) == []
    assert state.route(key, 1.0) == s1 and state.live() == [s1]
    assert outcome.holder not in state.membership.holders()


def test_a_restarted_mediator_places_nothing_during_its_grace() -> None:
    state = ClusterState(LEASE, TIMEOUT, 100.0)
    registered = state.register("s1", "h:1", 100.0)
    state.ping_sent(registered.holder, 100.0)
    state.ping_answered(registered.holder, 100.0)
    assert state.route(FileKey("", "a"), 100.0 + BOUND - 0.01) is Wait.GRACE
    assert state.route(FileKey("", "a"), 100.0 + BOUND) == registered.holder


@pytest.mark.parametrize("released", [True, False])
def test_join_hands_keys_off_only_after_release_or_lease_expiry(released: bool) -> None:
    state = live_state("s1")
    s1 = state.live()[0]
    keys = [FileKey("p", f"f{i}") for i in range(200)]
    for key in keys:
        state.route(key, 0.0)
    s2 = state.register("s2", "h:2", 1.0).holder
    state.ping_sent(s2, 1.0)
    plans = state.ping_answered(s2, 1.0)
    assert plans is not None and len(plans) == 1 and plans[0].source == s1 and plans[0].target == s2
    moving = set(plans[0].keys)
    assert moving == {k for k in keys if place(k, ["s1", "s2"]) == "s2"}
    assert 60 < len(moving) < 140
    for key in keys:
        assert state.route(key, 1.0) == (Wait.HANDOFF if key in moving else s1)
    state.ping_sent(s1, 1.0)
    state.handoff_done(plans[0], released=released, now=1.0)
    some = next(iter(moving))
    if released:
        assert state.route(some, 1.0) == s2
        assert state.live() == [s1, s2]
    else:  # the old owner did not answer: it is removed and its keys wait for its lease to lapse
        assert state.live() == [s2]
        assert state.route(some, 1.0 + BOUND - 0.01) is Wait.FENCED
        assert state.route(some, 1.0 + BOUND) == s2


def test_a_restarted_mediator_keeps_reported_keys_with_their_holder_and_waits_for_the_rest() -> None:
    state = ClusterState(LEASE, TIMEOUT, 100.0)  # in its start-up grace
    s1 = state.register("s1", "h:1", 100.0).holder
    s2 = state.register("s2", "h:2", 100.0).holder
    held = next(k for k in (FileKey("app", f"h{i}") for i in range(100)) if place(k, ["s1", "s2"]) == "s1")
    other = FileKey("app", "other")
    state.ping_sent(s1, 100.0)
    state.ping_answered(s1, 100.0, held=[held])
    state.ping_sent(s2, 100.0)
    state.ping_answered(s2, 100.0, held=[held])  # a second claim cannot take it away
    assert state.route(held, 100.0) == s1  # at once: nobody else can be writing it
    assert state.route(other, 100.0) is Wait.GRACE  # its writer may not have come back yet
    assert isinstance(state.route(other, 100.0 + BOUND), Holder)


def test_reports_after_the_grace_change_nothing() -> None:
    state = ClusterState(LEASE, TIMEOUT, 100.0)
    s1 = state.register("s1", "h:1", 100.0 + BOUND).holder
    state.ping_sent(s1, 100.0 + BOUND)
    state.ping_answered(s1, 100.0 + BOUND, held=[FileKey("app", "k")])
    assert state.ownership.owner == {}


def test_with_the_ledger_the_grace_ends_when_every_previous_streamer_said_its_lease_is_over() -> None:
    state = ClusterState(LEASE, TIMEOUT, 100.0)  # grace until 100 + BOUND
    s1, s2 = Holder("s1", "h:1"), Holder("s2", "h:2")
    state.expect([s1, s2])
    for holder, answered_at, lease_left_s in ((s1, 100.1, 0.5), (s2, 100.2, 0.0)):
        state.register(holder.id, holder.addr, answered_at)
        state.ping_sent(holder, answered_at)
        assert state.route(FileKey("app", "new"), answered_at) is Wait.GRACE  # s2 not heard from yet
        state.ping_answered(holder, answered_at, held_lease_s=lease_left_s)
    # s1's previous lease may run 0.5s on its clock (10% slower than ours at worst).
    assert state.route(FileKey("app", "new"), 100.1 + 0.5 * 1.1 - 0.01) is Wait.GRACE
    assert isinstance(state.route(FileKey("app", "new"), 100.1 + 0.5 * 1.1), Holder)
    assert 100.1 + 0.5 * 1.1 < 100.0 + BOUND


def test_a_previous_streamer_that_never_answers_keeps_the_whole_grace() -> None:
    state = ClusterState(LEASE, TIMEOUT, 100.0)
    s1 = Holder("s1", "h:1")
    state.expect([s1, Holder("s2", "h:2")])  # s2 is gone (or partitioned, lease still running)
    state.register("s1", "h:1", 100.0)
    state.ping_sent(s1, 100.0)
    state.ping_answered(s1, 100.0, held_lease_s=0.0)
    assert state.route(FileKey("app", "new"), 100.0 + BOUND - 0.01) is Wait.GRACE


IDLE = 10.0


def never_busy(holder: Holder, key: FileKey) -> bool:
    return False


def test_an_idle_key_is_forgotten_only_once_its_owner_reported_it_closed() -> None:
    state = live_state("s1")
    s1 = state.live()[0]
    key = FileKey("p", "a")
    assert state.route(key, 0.0) == s1
    state.ownership.active(key, 1.0)  # a forward of it ended
    assert state.forget_idle(11.5, IDLE, never_busy) == []  # idle, but nothing reported yet
    state.ping_sent(s1, 11.5)
    state.ping_answered(s1, 11.5, closed_before=1.0)  # not *after* its last forward: maybe open
    assert state.forget_idle(11.5, IDLE, never_busy) == []
    state.ping_answered(s1, 12.0, closed_before=1.5)
    assert state.forget_idle(10.9, IDLE, never_busy) == []  # reported closed, not idle long enough
    assert state.forget_idle(11.5, IDLE, never_busy) == [key]
    assert key not in state.ownership.owner and key not in state.ownership.last_active


def test_a_key_with_a_forward_pending_is_never_forgotten() -> None:
    state = live_state("s1")
    s1 = state.live()[0]
    key, other = FileKey("p", "a"), FileKey("p", "b")
    state.route(key, 0.0)
    state.route(other, 0.0)
    state.ping_answered(s1, 50.0, closed_before=50.0)
    assert state.forget_idle(50.0, IDLE, lambda holder, k: k == key) == [other]
    assert state.ownership.owner[key] == s1


def test_activity_keeps_a_key_and_a_forgotten_key_is_placed_again_like_a_new_one() -> None:
    state = live_state("s1", "s2")
    key = FileKey("p", "a")
    owner = state.route(key, 0.0)
    assert isinstance(owner, Holder)
    state.ownership.active(key, 30.0)
    for holder in state.live():
        state.ping_answered(holder, 35.0, closed_before=35.0)
    assert state.forget_idle(35.0, IDLE, never_busy) == []  # written 5s ago
    assert state.forget_idle(40.5, IDLE, never_busy) == [key]
    assert state.route(key, 41.0) == owner  # rendezvous again, same live set: same owner


def test_a_removed_owners_report_is_dropped_and_expired_fences_are_forgotten() -> None:
    state = live_state("s1", "s2")
    s1 = state.live()[0]
    key = key_on(state, "s1")
    state.route(key, 0.0)
    state.ping_answered(s1, 1.0, closed_before=1.0)
    state.failed(s1)
    assert s1 not in state.ownership.closed_before
    assert state.forget_idle(1.0, IDLE, never_busy) == []  # fenced: its lease may still run
    assert state.forget_idle(BOUND + 0.01, IDLE, never_busy) == [key]
    assert state.ownership.size() == 0


def test_a_full_table_refuses_new_keys_but_routes_known_ones() -> None:
    state = ClusterState(LEASE, TIMEOUT, 0.0, restart_grace_s=0.0, max_keys=2)
    registered = state.register("s1", "h:1", 0.0)
    state.ping_sent(registered.holder, 0.0)
    state.ping_answered(registered.holder, 0.0)
    a, b, c = FileKey("", "a"), FileKey("", "b"), FileKey("", "c")
    assert state.route(a, 0.0) == registered.holder
    assert state.route(b, 0.0) == registered.holder
    assert state.route(c, 0.0) is TableFull.FULL
    assert state.route(a, 0.0) == registered.holder
    state.ping_answered(registered.holder, 20.0, closed_before=20.0)
    assert state.forget_idle(20.0, IDLE, never_busy) == [a, b]
    assert state.route(c, 20.0) == registered.holder


def test_asking_whether_a_lease_surely_expired_changes_nothing() -> None:
    """`surely_expired` is a question: asking it (as `route` and `forget_idle` do) must not drop
    the bookkeeping it answers from; `forget_expired` is the command that does."""
    state = live_state("s1", "s2")
    s1 = next(h for h in state.live() if h.id == "s1")
    state.ping_sent(s1, 10.0)
    state.failed(s1)
    membership = state.membership
    after = 10.0 + BOUND
    before = dict(membership.last_ping_sent)
    assert membership.surely_expired(s1, after) and membership.surely_expired(s1, after)
    assert membership.last_ping_sent == before, "a question deleted data"
    assert s1 in state.may_hold_leases(10.0 + BOUND - 1e-6) and s1 not in state.may_hold_leases(after)
    assert membership.forget_expired(after - 1e-6) == 0
    assert membership.forget_expired(after) == 1 and s1 not in membership.last_ping_sent
    assert membership.surely_expired(s1, after), "forgotten bookkeeping still reads as expired"


def test_forgetting_idle_keys_also_forgets_expired_lease_bookkeeping() -> None:
    state = live_state("s1", "s2")
    s1 = next(h for h in state.live() if h.id == "s1")
    state.ping_sent(s1, 10.0)
    state.failed(s1)
    state.forget_idle(10.0 + BOUND - 1e-6, 3600.0, lambda holder, key: False)
    assert s1 in state.membership.last_ping_sent  # its lease may still run: kept
    state.forget_idle(10.0 + BOUND, 3600.0, lambda holder, key: False)
    assert s1 not in state.membership.last_ping_sent
    live = set(state.live())
    assert live <= set(state.membership.last_ping_sent), "a live streamer's bookkeeping was dropped"


@pytest.mark.parametrize("module", ["router", "link", "pinger", "handoff", "status", "health", "metrics", "server",
                                    "service"])
def test_the_io_side_reaches_the_state_only_through_its_facade(module: str) -> None:
    """`ClusterState` is the one door: no module doing I/O reaches into its membership or
    ownership (where a write would skip the facade's bookkeeping)."""
    source = Path(logstream.mediator.__file__).with_name(f"{module}.py").read_text()
    reached = sorted({f"{node.attr} (line {node.lineno})" for node in ast.walk(ast.parse(source))
                      if isinstance(node, ast.Attribute) and node.attr in ("membership", "ownership")})
    assert reached == []


def test_a_streamer_that_leaves_frees_its_keys_once_its_files_are_closed() -> None:
    state = live_state("s1", "s2", now=0.0)
    key = key_on(state, "s1")
    s1 = next(h for h in state.live() if h.id == "s1")
    assert state.route(key, 0.1) == s1
    assert state.leaving(s1) == [key]  # step 1: no more routes to it; its key waits
    assert state.route(key, 0.2) is Wait.FENCED
    assert [h.id for h in state.live()] == ["s2"]
    assert state.left(s1) == [key]  # step 2: its files are closed: free at once, long before BOUND
    moved = state.route(key, 0.3)
    assert isinstance(moved, Holder) and moved.id == "s2"
    assert state.left(s1) == []  # a repeated step 2 frees nothing more


def test_leaving_without_the_first_step_still_removes_it_first() -> None:
    state = live_state("s1", "s2", now=0.0)
    key = key_on(state, "s1")
    s1 = next(h for h in state.live() if h.id == "s1")
    assert state.route(key, 0.1) == s1
    assert state.left(s1) == [key]  # e.g. a mediator restarted between the two steps
    assert [h.id for h in state.live()] == ["s2"]
    assert state.route(key, 0.2) != s1
    assert state.leaving(Holder("s9", "h:9")) is None  # not a member: nothing to do
