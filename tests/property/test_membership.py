"""Membership's lease bookkeeping: its questions change nothing, and forgetting changes no answer."""

from __future__ import annotations

import copy

from hypothesis import example, given
from hypothesis import strategies as st

from logstream.mediator.membership import Holder, Membership

HOLDERS = [Holder("s0", "h:1"), Holder("s1", "h:2"), Holder("s0", "h:3")]
# Applied in order, each after a pause (seconds): a removed holder's bound (2.15 s) is often reached.
EVENTS = st.lists(st.tuples(st.sampled_from(["register", "ping_sent", "ping_ok", "remove"]),
                            st.sampled_from(HOLDERS), st.sampled_from([0.0, 0.5, 1.0, 3.0])), max_size=20)
LATER = st.sampled_from([0.0, 1.0, 2.0, 5.0])
# Registered, pinged, removed: its bookkeeping stays until its lease has surely expired.
REMOVED = [("register", HOLDERS[0], 0.0), ("ping_sent", HOLDERS[0], 0.0), ("remove", HOLDERS[0], 0.0)]


def build(events: list[tuple[str, Holder, float]]) -> tuple[Membership, float]:
    membership, now = Membership(lease_s=1.5, ping_timeout_s=0.5), 0.0
    for kind, holder, pause in events:
        now += pause
        if kind == "register":
            membership.register(holder.id, holder.addr, now)
        elif kind == "ping_sent":
            membership.ping_sent(holder, now)
        elif kind == "ping_ok":
            membership.ping_ok(holder, now)
        else:
            membership.remove(holder)
    return membership, now


@given(EVENTS, LATER)
@example(REMOVED, 5.0)
def test_asking_changes_nothing(events: list[tuple[str, Holder, float]], later: float) -> None:
    membership, now = build(events)
    before = copy.deepcopy(membership)
    answers = [(membership.surely_expired(h, now + later), membership.surely_expired_at(h)) for h in HOLDERS]
    assert membership == before
    assert answers == [(membership.surely_expired(h, now + later), membership.surely_expired_at(h)) for h in HOLDERS]


@given(EVENTS, LATER, LATER)
@example(REMOVED + [("register", HOLDERS[2], 0.0), ("ping_sent", HOLDERS[2], 0.0)], 5.0, 0.0)
def test_forgetting_expired_bookkeeping_changes_no_answer_from_then_on(
        events: list[tuple[str, Holder, float]], wait: float, later: float) -> None:
    membership, now = build(events)
    now += wait
    expected = [membership.surely_expired(h, now + later) for h in HOLDERS]
    kept = {h for h in membership.last_ping_sent if membership.member(h) is not None or h in membership.candidates}
    membership.forget_expired(now)
    assert [membership.surely_expired(h, now + later) for h in HOLDERS] == expected
    assert kept <= set(membership.last_ping_sent), "a member's or candidate's bookkeeping was dropped"
