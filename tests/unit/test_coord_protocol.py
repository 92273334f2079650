"""etcd mode's pure protocol (logstream/coord/protocol.py): key names, the validity clock, holdings."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from logstream.coord.protocol import (
    Admit,
    Blocked,
    Compare,
    Delete,
    Get,
    Holdings,
    LeaseClock,
    NotOwner,
    Owned,
    Put,
    Record,
    Target,
    TxnResult,
    create_if_absent,
    delete_if_mine,
    member_key,
    owner_key,
    parse_owner_key,
)

segment = st.text(st.characters(blacklist_characters="/\0", blacklist_categories=("Cs",)), min_size=1, max_size=8)


@given(path=st.lists(segment, max_size=3).map("/".join), filename=segment)
def test_an_owner_key_names_its_path_and_filename_back(path: str, filename: str) -> None:
    assert parse_owner_key("c1", owner_key("c1", path, filename)) == (path, filename)


def test_keys_live_under_the_cluster_prefix() -> None:
    assert owner_key("prod", "app/web", "access") == "/logstream/prod/owners/app/web/access"
    assert owner_key("prod", "", "root") == "/logstream/prod/owners/root"
    assert member_key("prod", "s1") == "/logstream/prod/members/s1"
    with pytest.raises(ValueError):
        parse_owner_key("prod", "/logstream/other/owners/x")
    with pytest.raises(ValueError):
        owner_key("a/b", "", "x")


def test_the_transactions_are_create_if_absent_and_delete_only_my_record() -> None:
    assert create_if_absent("k", "s1", 7).compare == (Compare("k", Target.CREATE, 0),)
    assert create_if_absent("k", "s1", 7).success == (Put("k", "s1", 7),)
    assert create_if_absent("k", "s1", 7).failure == (Get("k"),)
    guarded = delete_if_mine("k", 7, 42)
    assert guarded.compare == (Compare("k", Target.LEASE, 7), Compare("k", Target.CREATE, 42))
    assert guarded.success == (Delete("k"),)


def test_the_lease_is_proven_from_the_send_time_less_the_drift_bound() -> None:
    clock = LeaseClock(drift=0.1, margin_s=0.5)
    assert not clock.valid(0.0)
    clock.renewed(sent_at=100.0, ttl_s=10.0)
    assert clock.until == pytest.approx(100.0 + 9.0 - 0.5)
    assert clock.valid(108.4) and not clock.valid(108.5)
    clock.renewed(sent_at=99.0, ttl_s=10.0)  # an older answer never shortens it
    assert clock.until == pytest.approx(108.5)


def test_a_lost_lease_never_comes_back() -> None:
    clock = LeaseClock(drift=0.1)
    clock.renewed(0.0, 10.0)
    clock.renewed(1.0, 0)  # TTL 0: etcd has no such lease
    clock.renewed(2.0, 10.0)  # a late answer from before the loss
    assert clock.lost and not clock.valid(2.0)


def holdings(valid_until: float = 100.0) -> Holdings:
    clock = LeaseClock(drift=0.0)
    clock.renewed(valid_until - 10.0, 10.0)
    return Holdings("c", "s1", lease=7, clock=clock)


def test_a_key_is_written_only_once_claimed_and_while_the_lease_is_proven() -> None:
    h = holdings()
    key = h.key("app", "f")
    assert h.admit(key, 0.0) is Admit.CLAIM
    h.claim(key)
    assert h.admit(key, 0.0) is Admit.WAIT_CLAIM and not h.may_write(key, 0.0)
    assert h.claimed(key, TxnResult(True, revision=5)) == Owned(5)
    assert h.admit(key, 0.0) is Admit.WRITE and h.may_write(key, 99.9)
    assert h.admit(key, 100.0) is Admit.NO_LEASE and not h.may_write(key, 100.0)


def test_a_claim_that_finds_another_owner_names_it() -> None:
    h = holdings()
    key = h.key("", "f")
    h.claim(key)
    assert h.claimed(key, TxnResult(False, Record("s2", 9, 3))) == NotOwner("s2")
    h.claim(key)
    assert h.claimed(key, TxnResult(False, Record("s1", 6, 3))) == NotOwner("s1", same_id_other_lease=True)
    assert not h.may_write(key, 0.0)


def test_an_own_record_is_taken_back_unless_a_delete_of_it_is_unresolved() -> None:
    h = holdings()
    key = h.key("", "f")
    h.claim(key)
    h.claim_unknown(key)  # the answer was lost; it had created the record at revision 4
    h.claim(key)
    assert h.claimed(key, TxnResult(False, Record("s1", 7, 4))) == Owned(4)
    delete = h.release(key)
    assert delete == delete_if_mine(key, 7, 4) and not h.may_write(key, 0.0)
    h.claim(key)  # sent back before the delete was answered: that delete may still land
    assert h.claimed(key, TxnResult(False, Record("s1", 7, 4))) == Blocked(4)
    assert h.redo_release(key) == [delete]
    h.released(key, 4)
    assert h.redo_release(key) == [] and h.release(key) is None


def test_a_gone_lease_drops_every_key() -> None:
    h = holdings()
    key = h.key("", "f")
    h.claim(key)
    h.claimed(key, TxnResult(True, revision=2))
    assert h.lease_gone() == [key]
    assert not h.may_write(key, 0.0) and h.admit(key, 0.0) is Admit.NO_LEASE
